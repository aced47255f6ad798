// core.hpp: what the layer's core offers its feature modules (files/, net/): the real libc
// functions, the re-entrancy guard, the digested configuration, the channel to the intproxy, the
// per-fd kind table, and the hooks modules implement for close/dup/fork/exec.
//
// Rules for every hook (see layer/README.md):
//   - start with `HookScope scope; if (!scope.active()) return REAL(name)(args...);` so calls made
//     by the layer itself, before init or in skipped processes, go straight to libc;
//   - decide "local" with no syscall and no lock where possible (fd_kind(), settings());
//   - never throw out of a hook (catch at the boundary), never abort; failures set errno as libc.
//   - no namespace-scope object with a dynamic initialiser (std::string, std::map, std::regex...):
//     the layer's constructor, and hooks called from other libraries' constructors, may run before
//     it is built. Use constant-initialised globals (constinit, pointers, atomics, PODs) or
//     function-local statics / heap objects created on first use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" {
#include "mirrord.npb.h"
}

#include "core/settings.hpp"

// Every hook definition may be written `MIRRORD_HOOK int open(const char* path, int flags, ...)`.
// What is exported is decided by layer/layer.map (a hook's name must be listed there); the macro
// also marks it default-visible so it stays exported under -fvisibility=hidden.
#define MIRRORD_HOOK extern "C" __attribute__((visibility("default")))

namespace mirrord::layer {

// ---------------------------------------------------------------- logging
// Raw write(2) to stderr, no allocation, safe in any hook.
// MIRRORD_LAYER_LOG=debug|info|warn (default warn). Lines: "mirrord[pid]: ..." for debug/info,
// "mirrord: ..." for warnings.
enum class LogLevel : int { debug = 0, info = 1, warn = 2, off = 3 };
void log_init_from_env() noexcept;
bool log_enabled(LogLevel level) noexcept;
void log_write(LogLevel level, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));
#define MLOG_DEBUG(...)                                                              \
    do {                                                                             \
        if (::mirrord::layer::log_enabled(::mirrord::layer::LogLevel::debug))       \
            ::mirrord::layer::log_write(::mirrord::layer::LogLevel::debug, __VA_ARGS__); \
    } while (0)
#define MLOG_WARN(...) ::mirrord::layer::log_write(::mirrord::layer::LogLevel::warn, __VA_ARGS__)

// ---------------------------------------------------------------- real functions

// The next definition of `name` after the layer (dlsym(RTLD_NEXT)), resolved once and cached.
// Use REAL(open)(path, flags, mode); the type comes from the libc declaration of the name.
void* resolve_real(const char* name) noexcept;

#define REAL(name)                                                                         \
    ([]() noexcept {                                                                       \
        static auto fn = reinterpret_cast<decltype(&::name)>(::mirrord::layer::resolve_real(#name)); \
        return fn;                                                                         \
    }())

// `name` resolved as REAL does, as a T; `fallback` when libc has no such name (the *64 aliases
// and old-ABI names, which a libc may lack). Callers keep the result in a function-local static.
template <typename T>
T real_named(const char* name, T fallback = nullptr) noexcept {
    auto fn = reinterpret_cast<T>(resolve_real(name));
    return fn != nullptr ? fn : fallback;
}

// ---------------------------------------------------------------- guard

// True once the layer is initialised and hooks are on for this process (not skipped).
bool layer_active() noexcept;

// Re-entrancy guard: the first HookScope on a thread marks the thread "inside the layer"; nested
// scopes (libc calling back into a hooked symbol, or the layer's own I/O) see active() == false.
class HookScope {
public:
    HookScope() noexcept;
    ~HookScope();
    HookScope(const HookScope&) = delete;
    HookScope& operator=(const HookScope&) = delete;
    // The hook should act (layer active, not re-entered, not mid-fork).
    bool active() const noexcept { return active_; }

private:
    bool active_;
    bool entered_;
};

// ---------------------------------------------------------------- configuration

// The digested MIRRORD_RESOLVED_CONFIG (see settings.hpp), valid while layer_active().
const Settings& settings() noexcept;

// ---------------------------------------------------------------- channel to the intproxy

// One request/reply exchange with the intproxy, thread safe (one in flight per process; the
// channel mutex is held across send+receive). `msg.request_id` is assigned here. `reply` must be
// initialised by the caller (mirrord_v1_ProxyMessage_init_zero, plus cb_body for data replies).
// Returns 0 when a reply arrived that is not an Error; the Error's code (errno, or negative EAI_*)
// when the intproxy answered Error; or a positive errno (EIO / ECONNRESET / ENOTCONN) when the
// channel failed (the layer then stays up; later requests reconnect or fail the same way).
int request(mirrord_v1_LayerMessage& msg, mirrord_v1_ProxyMessage& reply) noexcept;

// A bytes field of a reply decoded into a caller's buffer: set the field's decode callback to
// decode_bytes_into and its arg to a BytesSink. Several chunks append; more than `cap` in all
// fails the decode.
struct BytesSink {
    char* p;
    std::size_t cap;
    std::size_t got = 0;
};
bool decode_bytes_into(pb_istream_t* stream, const pb_field_t* field, void** arg);

// A message that has no reply (request_id 0): FileClose, DirClose, LayerConnectionClose...
// Returns 0 or a positive errno; callers usually ignore failures.
int notify(mirrord_v1_LayerMessage& msg) noexcept;

// This process's session id at the intproxy (0 before the first connection).
std::uint64_t session_id() noexcept;

// ---------------------------------------------------------------- fd kinds

// What the layer knows about an fd number. Looked up on every close/dup/read... so it is a flat
// array for fds < kFdTableSize (one relaxed atomic load) and a locked map above.
enum class FdKind : std::uint8_t {
    none = 0,       // not ours: every hook passes it straight to libc
    socket = 1,     // a managed socket (net/)
    remote_file = 2,  // a placeholder fd standing for a remote file fd (files/)
    remote_dir = 3,   // an fd standing for a remote directory (files/)
    memfd_file = 4,   // a memfd holding a remote file's bytes: real fd, tracked only for paths
};
inline constexpr int kFdTableSize = 65536;
FdKind fd_kind(int fd) noexcept;
void set_fd_kind(int fd, FdKind kind) noexcept;

// ---------------------------------------------------------------- module events
// Implemented by the modules (files/module_events.cpp, net/module_events.cpp); called by the
// core's close/dup*/fcntl(F_DUPFD*)/fork/exec hooks, outside the HookScope of the app's call.
// (The calling thread is marked inside the layer while they run, so libc calls they make go
// straight to libc. The core updates the fd-kind table itself: before on_close the closed fd is
// already FdKind::none; before on_dup the new fd already has `kind`.)

// Once, in the constructor, after settings() is filled and before the app runs.
void files_on_init() noexcept;
// `fd` is being closed: called just BEFORE the real close (or close_range), while the app still
// holds the number, so no other thread's new fd can be mistaken for it. kind = its kind before.
void files_on_close(int fd, FdKind kind) noexcept;
void net_on_close(int fd, FdKind kind) noexcept;
// `newfd` is now a duplicate of `oldfd` (dup/dup2/dup3/fcntl F_DUPFD*); if newfd was ours before
// (dup2 over it), the on_close of its old kind ran first.
void files_on_dup(int oldfd, int newfd, FdKind kind) noexcept;
void net_on_dup(int oldfd, int newfd, FdKind kind) noexcept;
// Text (no NUL, no '\n') describing the module's fd table, carried across execve in
// MIRRORD_LAYER_STATE, and its reader in the new image (entries whose fd is no longer open or no
// longer the same object are dropped by the module).
std::string net_state_for_exec() noexcept;
void net_restore_after_exec(const std::string& state) noexcept;
// The same for the files module (remote fds and directories the new image inherits).
std::string files_state_for_exec() noexcept;
void files_restore_after_exec(const std::string& state) noexcept;

// ---------------------------------------------------------------- core services for hooks

// The core's close() with its bookkeeping (fd-kind table, module events, the intproxy
// connection kept), for hooks that already hold a HookScope — e.g. syscall(SYS_close, fd).
int close_fd(int fd) noexcept;

}  // namespace mirrord::layer
