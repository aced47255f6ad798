// real.cpp: resolve_real() — the next definition of a libc symbol after the layer, found with
// dlsym(RTLD_NEXT). REAL(name) (core.hpp) caches the result per call site.
#include <dlfcn.h>

#include "core/core.hpp"

namespace mirrord::layer {

void* resolve_real(const char* name) noexcept {
    void* fn = ::dlsym(RTLD_NEXT, name);
    if (fn == nullptr) {
        // Not expected for libc names; fall back to the global definition so the hook still works
        // when the layer is loaded some other way than LD_PRELOAD.
        fn = ::dlsym(RTLD_DEFAULT, name);
    }
    return fn;
}

}  // namespace mirrord::layer
