// target_watch.cpp: a pidfd of the target waited on in the event loop (see target_watch.hpp).
#include "target_watch.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace mirrord::agent {

namespace {

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "pidfd_open of target pid " + std::to_string(pid));
    }
    return static_cast<int>(fd);
#else
    (void)pid;
    throw std::system_error(ENOSYS, std::generic_category(), "pidfd_open");
#endif
}

}  // namespace

TargetWatch::TargetWatch(boost::asio::io_context& io, pid_t pid, std::function<void()> on_exit)
    : pidfd_(io, open_pidfd(pid)), on_exit_(std::move(on_exit)) {
    // A pidfd is readable once its process has exited (it never carries data).
    pidfd_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
        if (!ec && on_exit_) {
            auto f = std::move(on_exit_);
            on_exit_ = nullptr;
            f();
        }
    });
}

TargetWatch::~TargetWatch() {
    boost::system::error_code ignored;
    pidfd_.cancel(ignored);
    pidfd_.close(ignored);
}

}  // namespace mirrord::agent
