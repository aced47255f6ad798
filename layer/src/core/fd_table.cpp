// fd_table.cpp: the per-fd kind table. fds below kFdTableSize live in a flat array of relaxed
// atomics (one load per lookup on the hot path of close/read/...); higher fds, rare, in a map
// under a lock (an atomic count makes the common "none above the array" case lock-free).
#include <pthread.h>

#include <atomic>
#include <map>

#include "core/internal.hpp"

namespace mirrord::layer {

namespace {

std::atomic<std::uint8_t> g_small[kFdTableSize];
std::atomic<int> g_big_count{0};
pthread_mutex_t g_big_lock = PTHREAD_MUTEX_INITIALIZER;
std::map<int, FdKind>* g_big = nullptr;  // allocated on first use, never freed

void lock_big() { pthread_mutex_lock(&g_big_lock); }
void unlock_big() { pthread_mutex_unlock(&g_big_lock); }

}  // namespace

void fd_table_register_atfork() noexcept { pthread_atfork(&lock_big, &unlock_big, &unlock_big); }

FdKind fd_kind(int fd) noexcept {
    if (fd < 0) {
        return FdKind::none;
    }
    if (fd < kFdTableSize) {
        return static_cast<FdKind>(g_small[fd].load(std::memory_order_relaxed));
    }
    if (g_big_count.load(std::memory_order_relaxed) == 0) {
        return FdKind::none;
    }
    pthread_mutex_lock(&g_big_lock);
    FdKind k = FdKind::none;
    if (g_big != nullptr) {
        auto it = g_big->find(fd);
        if (it != g_big->end()) {
            k = it->second;
        }
    }
    pthread_mutex_unlock(&g_big_lock);
    return k;
}

void set_fd_kind(int fd, FdKind kind) noexcept {
    if (fd < 0) {
        return;
    }
    if (fd < kFdTableSize) {
        g_small[fd].store(static_cast<std::uint8_t>(kind), std::memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&g_big_lock);
    try {
        if (g_big == nullptr) {
            g_big = new std::map<int, FdKind>();
        }
        if (kind == FdKind::none) {
            if (g_big->erase(fd) > 0) {
                g_big_count.fetch_sub(1, std::memory_order_relaxed);
            }
        } else {
            auto [it, inserted] = g_big->insert_or_assign(fd, kind);
            (void)it;
            if (inserted) {
                g_big_count.fetch_add(1, std::memory_order_relaxed);
            }
        }
    } catch (...) {
    }
    pthread_mutex_unlock(&g_big_lock);
}

}  // namespace mirrord::layer
