// run_command.cpp: run a child and collect its output (see run_command.hpp).
#include "run_command.hpp"

#include <poll.h>
#include <unistd.h>

#include "process.hpp"

namespace mirrord::test {

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                          const std::vector<std::string>& extra_env) {
    auto env = current_environment();
    for (const auto& e : extra_env) env.push_back(e);
    auto child = spawn_with_pipes(argv, env);
    CommandResult result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int fds[2] = {child.out_fd, child.err_fd};
    std::string* sinks[2] = {&result.out, &result.err};
    while (fds[0] >= 0 || fds[1] >= 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) break;
        pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
        if (::poll(p, 2, static_cast<int>(left)) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[8192];
            ssize_t n = ::read(fds[i], buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<size_t>(n));
            } else {
                ::close(fds[i]);
                fds[i] = -1;
            }
        }
    }
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
    result.exit_code = wait_child_exit(child.pid, std::chrono::seconds(2));
    if (result.exit_code == -1) kill_and_reap(child.pid);
    return result;
}

}  // namespace mirrord::test
