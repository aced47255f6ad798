// internal.hpp: what the core's own files share with each other (not for the feature modules,
// which use core.hpp): the raw logger, init state, the channel's lifecycle across fork/exec, and
// small helpers that must not go through hooked symbols.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/core.hpp"

namespace mirrord::layer {

// ---------------------------------------------------------------- init / guard
void set_layer_active(bool on) noexcept;
// Marks this thread "inside the layer" for the core's own work done outside any hook (init).
bool thread_in_layer() noexcept;
void set_thread_in_layer(bool on) noexcept;

// Parses MIRRORD_RESOLVED_CONFIG (base64 JSON). Returns false (with `why`) when absent/invalid.
bool load_settings(const char* encoded, std::string& why) noexcept;
Settings& mutable_settings() noexcept;
// skip_processes / skip_build_tools / skip_extra_build_tools, from the raw JSON.
bool process_is_skipped(const std::string& exe_name, const std::string& argv0_name) noexcept;

// ---------------------------------------------------------------- channel
// Connects to MIRRORD_LAYER_INTPROXY_ADDR and says LayerHello. parent_session: 0 for a fresh
// process. Returns 0 or a positive errno.
int channel_connect(std::uint64_t parent_session) noexcept;
// Adopts an inherited connection (execve): fd must still be the socket with inode `ino`.
bool channel_adopt(int fd, std::uint64_t ino, std::uint64_t session) noexcept;
int channel_fd() noexcept;                 // -1 when not connected
std::uint64_t channel_ino() noexcept;
// Fork support: lock before the real fork (no request in flight), unlock in the parent; the child
// calls channel_after_fork_child() which reinitialises the lock, drops the parent's connection
// and opens its own with parent_session_id.
void channel_lock_for_fork() noexcept;
void channel_unlock_after_fork_parent() noexcept;
void channel_after_fork_child() noexcept;
// The app is about to close / dup2 over `fd`: if it is the channel's fd, move the channel to
// another number first. Returns true when `fd` was (and no longer is) the channel's fd.
bool channel_evacuate_fd(int fd) noexcept;
// Set argv for LayerHello (from the constructor's arguments).
void channel_set_process_info(int argc, char** argv) noexcept;

// Remote env (feature.env.load_from_process): GetEnv and setenv each; then unset.
void env_apply_at_init() noexcept;

// pthread_atfork handlers keeping the fd table's lock consistent in a forked child.
void fd_table_register_atfork() noexcept;

// The real errno-preserving helpers for core code.
std::uint64_t fd_inode(int fd) noexcept;  // 0 when fd is not open

}  // namespace mirrord::layer
