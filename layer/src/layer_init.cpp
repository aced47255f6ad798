// layer_init.cpp: load-time entry of libmirrord_layer.so. The hooks themselves arrive with the
// "layer + exec" issue; today the library only checks that it was loaded on purpose.
#include <cstdlib>

namespace {

// Runs when the dynamic loader maps the library into the app (LD_PRELOAD). It must never abort
// the app: with no MIRRORD_LAYER_INTPROXY_ADDR it stays dormant.
__attribute__((constructor)) void mirrord_layer_load() {
    if (std::getenv("MIRRORD_DONT_LOAD") != nullptr) {
        return;
    }
}

}  // namespace
