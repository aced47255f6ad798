// layer_fake_intproxy.hpp: a small stand-in for `mirrord intproxy`, for the layer's tests and
// benchmark: it listens on 127.0.0.1:0, speaks the layer protocol (LayerHello, GetEnv, the file
// and directory requests) and serves "remote" paths from a local directory (remote path P is
// root + P). One thread per layer connection; remote fds and dirs are shared by all sessions
// (a forked child uses its parent's ids, as with the real intproxy). Counts requests by type.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mirrord::bench {

class FakeIntproxy {
public:
    explicit FakeIntproxy(std::string root, std::map<std::string, std::string> env = {});
    ~FakeIntproxy();
    FakeIntproxy(const FakeIntproxy&) = delete;
    FakeIntproxy& operator=(const FakeIntproxy&) = delete;

    std::string address() const;  // "127.0.0.1:PORT"
    // Requests seen, by LayerMessage body field name ("file_read_whole", "hello", ...).
    std::uint64_t count(const std::string& what) const;
    // LayerHello parent_session_id values seen, in order.
    std::vector<std::uint64_t> hello_parents() const;
    void reset_counts();

private:
    void accept_loop();
    void serve(int fd);

    std::string root_;
    std::map<std::string, std::string> env_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    mutable std::mutex mu_;
    std::vector<std::thread> workers_;
    std::vector<int> conns_;
    std::map<std::string, std::uint64_t> counts_;
    std::vector<std::uint64_t> parents_;
    std::uint64_t next_session_ = 1;
    std::map<std::uint64_t, int> fds_;  // remote fd / dir id -> local fd
    std::uint64_t next_fd_ = 1;
};

}  // namespace mirrord::bench
