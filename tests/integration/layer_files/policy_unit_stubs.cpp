// policy_unit_stubs.cpp: stand-ins for the parts of the layer policy.cpp and settings.cpp call
// that policy_unit_test does not build (the fd tables, the guard's "active" flag).
#include "core/internal.hpp"
#include "files/files.hpp"

namespace mirrord::layer {
bool layer_active() noexcept { return true; }
FdKind fd_kind(int) noexcept { return FdKind::none; }
}  // namespace mirrord::layer

namespace mirrord::layer::files {
ObjectPtr table_get(int) { return nullptr; }
void table_lock_for_fork() {}
void table_unlock_after_fork() {}
void dirs_lock_for_fork() {}
void dirs_unlock_after_fork() {}
RemoteObject::~RemoteObject() = default;
}  // namespace mirrord::layer::files
