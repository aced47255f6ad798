// guard.cpp: the re-entrancy guard (HookScope) and the "layer is on" flag. A thread-local flag
// marks a thread as inside the layer; the first HookScope on a thread takes it, nested ones (libc
// calling a hooked symbol, the layer's own I/O) see active() == false and go straight to libc.
#include <atomic>

#include "core/internal.hpp"

namespace mirrord::layer {

namespace {

std::atomic<bool> g_active{false};
// initial-exec: the layer is loaded at start-up (LD_PRELOAD), so its TLS is static and the flag
// costs one %fs-relative load.
__attribute__((tls_model("initial-exec"))) thread_local bool t_in_layer = false;

}  // namespace

bool layer_active() noexcept { return g_active.load(std::memory_order_acquire); }
void set_layer_active(bool on) noexcept { g_active.store(on, std::memory_order_release); }
bool thread_in_layer() noexcept { return t_in_layer; }
void set_thread_in_layer(bool on) noexcept { t_in_layer = on; }

HookScope::HookScope() noexcept : active_(false), entered_(false) {
    if (t_in_layer) {
        return;
    }
    t_in_layer = true;
    entered_ = true;
    active_ = g_active.load(std::memory_order_acquire);
}

HookScope::~HookScope() {
    if (entered_) {
        t_in_layer = false;
    }
}

}  // namespace mirrord::layer
