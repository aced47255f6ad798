// target_watch.hpp: notices that the agent's target process exited. A pidfd (pidfd_open) of the
// target pid becomes readable when the process ends; it is waited on in the event loop, so the
// agent can tell its clients at once (main.cpp ends every session with a warning) instead of
// serving a dead pod's namespaces until someone notices.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <functional>

namespace mirrord::agent {

class TargetWatch {
public:
    // Starts watching `pid`; `on_exit` runs once in the event loop when it has exited. Throws
    // std::system_error when the kernel has no pidfd_open (before 5.3) or the pid is gone.
    TargetWatch(boost::asio::io_context& io, pid_t pid, std::function<void()> on_exit);
    ~TargetWatch();
    TargetWatch(const TargetWatch&) = delete;
    TargetWatch& operator=(const TargetWatch&) = delete;

private:
    boost::asio::posix::stream_descriptor pidfd_;
    std::function<void()> on_exit_;
};

}  // namespace mirrord::agent
