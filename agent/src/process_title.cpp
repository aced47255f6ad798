// process_title.cpp: see process_title.hpp.
#include "process_title.hpp"

#include <sys/prctl.h>

#include <cstring>

namespace mirrord::agent {

namespace {
char* g_args_start = nullptr;
std::size_t g_args_size = 0;  // argv[0] .. end of the last argument, contiguous as the kernel laid them out
}  // namespace

void remember_process_args(int argc, char** argv) noexcept {
    if (argc <= 0 || argv == nullptr || argv[0] == nullptr) {
        return;
    }
    char* end = argv[0] + std::strlen(argv[0]) + 1;
    for (int i = 1; i < argc && argv[i] == end; ++i) {
        end = argv[i] + std::strlen(argv[i]) + 1;
    }
    g_args_start = argv[0];
    g_args_size = static_cast<std::size_t>(end - argv[0]);
}

void set_process_title(const char* title) noexcept {
    ::prctl(PR_SET_NAME, title, 0, 0, 0);  // comm: 15 characters kept
    if (g_args_start == nullptr || g_args_size == 0) {
        return;
    }
    std::size_t n = std::strlen(title);
    if (n >= g_args_size) {
        n = g_args_size - 1;
    }
    std::memset(g_args_start, 0, g_args_size);
    std::memcpy(g_args_start, title, n);
}

}  // namespace mirrord::agent
