// layer_fake_intproxy.cpp: see layer_fake_intproxy.hpp.
#include "layer_fake_intproxy.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::bench {

namespace v1 = mirrord::v1;

namespace {

void fill(const struct stat& st, v1::FileStat& o) {
    o.set_dev(st.st_dev);
    o.set_ino(st.st_ino);
    o.set_mode(st.st_mode);
    o.set_nlink(st.st_nlink);
    o.set_uid(st.st_uid);
    o.set_gid(st.st_gid);
    o.set_rdev(st.st_rdev);
    o.set_size(st.st_size);
    o.set_blksize(st.st_blksize);
    o.set_blocks(st.st_blocks);
    o.set_atime_ns(st.st_atim.tv_sec * 1000000000LL + st.st_atim.tv_nsec);
    o.set_mtime_ns(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
    o.set_ctime_ns(st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec);
}

void error(v1::ProxyMessage& r, int code) { r.mutable_error()->set_code(code); }

bool send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

}  // namespace

FakeIntproxy::FakeIntproxy(std::string root, std::map<std::string, std::string> env)
    : root_(std::move(root)), env_(std::move(env)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        throw std::runtime_error(std::string("fake intproxy: cannot listen: ") + std::strerror(errno));
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
}

FakeIntproxy::~FakeIntproxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::vector<std::thread> workers;
    {
        std::lock_guard<std::mutex> l(mu_);
        for (int c : conns_) ::shutdown(c, SHUT_RDWR);
        workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
    for (auto& [id, fd] : fds_) ::close(fd);
}

std::string FakeIntproxy::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::uint64_t FakeIntproxy::count(const std::string& what) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = counts_.find(what);
    return it == counts_.end() ? 0 : it->second;
}

std::vector<std::uint64_t> FakeIntproxy::hello_parents() const {
    std::lock_guard<std::mutex> l(mu_);
    return parents_;
}

void FakeIntproxy::reset_counts() {
    std::lock_guard<std::mutex> l(mu_);
    counts_.clear();
}

void FakeIntproxy::accept_loop() {
    while (!stop_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::lock_guard<std::mutex> l(mu_);
        conns_.push_back(c);
        workers_.emplace_back([this, c] { serve(c); });
    }
}

void FakeIntproxy::serve(int c) {
    protocol::FrameDecoder dec;
    std::string payload;
    char buf[65536];
    auto path_of = [&](const std::string& p) { return root_ + p; };
    auto local_fd = [&](std::uint64_t id) {
        std::lock_guard<std::mutex> l(mu_);
        auto it = fds_.find(id);
        return it == fds_.end() ? -1 : it->second;
    };
    auto add_fd = [&](int fd) {
        std::lock_guard<std::mutex> l(mu_);
        std::uint64_t id = next_fd_++;
        fds_[id] = fd;
        return id;
    };
    auto drop_fd = [&](std::uint64_t id) {
        std::lock_guard<std::mutex> l(mu_);
        auto it = fds_.find(id);
        if (it != fds_.end()) {
            ::close(it->second);
            fds_.erase(it);
        }
    };
    try {
        for (;;) {
            while (!dec.next_frame(payload)) {
                ssize_t n = ::recv(c, buf, sizeof buf, 0);
                if (n <= 0) {
                    ::close(c);
                    return;
                }
                dec.feed(buf, static_cast<size_t>(n));
            }
            v1::LayerMessage m;
            if (!m.ParseFromString(payload)) break;
            const auto* field = m.GetDescriptor()->FindFieldByNumber(static_cast<int>(m.body_case()));
            {
                std::lock_guard<std::mutex> l(mu_);
                ++counts_[field != nullptr ? field->name() : "?"];
            }
            v1::ProxyMessage r;
            r.set_request_id(m.request_id());
            using L = v1::LayerMessage;
            switch (m.body_case()) {
                case L::kHello: {
                    std::lock_guard<std::mutex> l(mu_);
                    parents_.push_back(m.hello().parent_session_id());
                    r.mutable_hello_ack()->set_session_id(next_session_++);
                    r.mutable_hello_ack()->set_protocol_version(1);
                    break;
                }
                case L::kGetEnv:
                    for (const auto& [k, v] : env_) (*r.mutable_env_vars()->mutable_vars())[k] = v;
                    break;
                case L::kFileReadWhole: {
                    const auto& q = m.file_read_whole();
                    int fd = ::open(path_of(q.path()).c_str(), O_RDONLY | O_CLOEXEC);
                    struct stat st {};
                    if (fd < 0) { error(r, errno); break; }
                    ::fstat(fd, &st);
                    if (S_ISDIR(st.st_mode)) { ::close(fd); error(r, EISDIR); break; }
                    auto* w = r.mutable_file_whole();
                    fill(st, *w->mutable_stat());
                    if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > q.max_size()) {
                        w->set_too_large(true);
                    } else {
                        std::string data(static_cast<size_t>(st.st_size), '\0');
                        size_t got = 0;
                        while (got < data.size()) {
                            ssize_t n = ::read(fd, data.data() + got, data.size() - got);
                            if (n <= 0) break;
                            got += static_cast<size_t>(n);
                        }
                        data.resize(got);
                        w->set_data(std::move(data));
                    }
                    ::close(fd);
                    break;
                }
                case L::kFileOpen: {
                    const auto& q = m.file_open();
                    int fd = ::open(path_of(q.path()).c_str(), (q.flags() & ~O_CLOEXEC) | O_CLOEXEC, q.mode());
                    if (fd < 0) { error(r, errno); break; }
                    struct stat st {};
                    ::fstat(fd, &st);
                    fill(st, *r.mutable_file_opened()->mutable_stat());
                    r.mutable_file_opened()->set_fd(add_fd(fd));
                    break;
                }
                case L::kFileRead:
                case L::kFileReadAt: {
                    bool at = m.body_case() == L::kFileReadAt;
                    int fd = local_fd(at ? m.file_read_at().fd() : m.file_read().fd());
                    if (fd < 0) { error(r, EBADF); break; }
                    std::string data(std::min<std::uint32_t>(at ? m.file_read_at().size() : m.file_read().size(), 1u << 20), '\0');
                    ssize_t n = at ? ::pread(fd, data.data(), data.size(), static_cast<off_t>(m.file_read_at().offset()))
                                   : ::read(fd, data.data(), data.size());
                    if (n < 0) { error(r, errno); break; }
                    data.resize(static_cast<size_t>(n));
                    r.mutable_file_data()->set_data(std::move(data));
                    break;
                }
                case L::kFileWrite:
                case L::kFileWriteAt: {
                    bool at = m.body_case() == L::kFileWriteAt;
                    int fd = local_fd(at ? m.file_write_at().fd() : m.file_write().fd());
                    if (fd < 0) { error(r, EBADF); break; }
                    const std::string& d = at ? m.file_write_at().data() : m.file_write().data();
                    ssize_t n = at ? ::pwrite(fd, d.data(), d.size(), static_cast<off_t>(m.file_write_at().offset()))
                                   : ::write(fd, d.data(), d.size());
                    if (n < 0) { error(r, errno); break; }
                    r.mutable_file_written()->set_written(static_cast<std::uint64_t>(n));
                    break;
                }
                case L::kFileSeek: {
                    int fd = local_fd(m.file_seek().fd());
                    if (fd < 0) { error(r, EBADF); break; }
                    off_t o = ::lseek(fd, m.file_seek().offset(), m.file_seek().whence());
                    if (o < 0) { error(r, errno); break; }
                    r.mutable_file_offset()->set_offset(static_cast<std::uint64_t>(o));
                    break;
                }
                case L::kFileStat: {
                    struct stat st {};
                    int rc;
                    if (!m.file_stat().path().empty()) {
                        std::string p = path_of(m.file_stat().path());
                        rc = m.file_stat().follow_symlinks() ? ::stat(p.c_str(), &st) : ::lstat(p.c_str(), &st);
                    } else {
                        int fd = local_fd(m.file_stat().fd());
                        rc = fd < 0 ? (errno = EBADF, -1) : ::fstat(fd, &st);
                    }
                    if (rc != 0) { error(r, errno); break; }
                    fill(st, *r.mutable_file_stat());
                    break;
                }
                case L::kFsStat: {
                    struct statfs sf {};
                    if (::statfs(path_of(m.fs_stat().path()).c_str(), &sf) != 0) { error(r, errno); break; }
                    r.mutable_fs_stat()->set_type(sf.f_type);
                    r.mutable_fs_stat()->set_bsize(sf.f_bsize);
                    r.mutable_fs_stat()->set_blocks(sf.f_blocks);
                    break;
                }
                case L::kFileAccess:
                    if (::access(path_of(m.file_access().path()).c_str(), m.file_access().mode()) != 0) error(r, errno);
                    else r.mutable_ok();
                    break;
                case L::kDirOpen: {
                    int fd = ::open(path_of(m.dir_open().path()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                    if (fd < 0) { error(r, errno); break; }
                    r.mutable_dir_opened()->set_dir_id(add_fd(fd));
                    break;
                }
                case L::kDirRead: {
                    int fd = local_fd(m.dir_read().dir_id());
                    if (fd < 0) { error(r, EBADF); break; }
                    auto* out = r.mutable_dir_entries();
                    std::uint32_t want = std::min<std::uint32_t>(std::max<std::uint32_t>(m.dir_read().max_entries(), 1), 32);
                    alignas(8) char db[8192];
                    while (static_cast<std::uint32_t>(out->entries_size()) < want) {
                        long n = ::syscall(SYS_getdents64, fd, db, sizeof db);
                        if (n <= 0) { out->set_eof(true); break; }
                        for (long off = 0; off < n;) {
                            auto* d = reinterpret_cast<dirent64*>(db + off);
                            auto* e = out->add_entries();
                            e->set_name(d->d_name);
                            e->set_inode(d->d_ino);
                            e->set_type(d->d_type);
                            e->set_offset(d->d_off);
                            off += d->d_reclen;
                            if (static_cast<std::uint32_t>(out->entries_size()) == want && off < n) {
                                ::lseek(fd, d->d_off, SEEK_SET);
                                break;
                            }
                        }
                    }
                    break;
                }
                case L::kDirClose: drop_fd(m.dir_close().dir_id()); r.mutable_ok(); break;
                case L::kFileClose: drop_fd(m.file_close().fd()); r.mutable_ok(); break;
                case L::kReadLink: {
                    char t[4096];
                    ssize_t n = ::readlink(path_of(m.read_link().path()).c_str(), t, sizeof t);
                    if (n < 0) { error(r, errno); break; }
                    r.mutable_link_target()->set_target(std::string(t, static_cast<size_t>(n)));
                    break;
                }
                case L::kMakeDir:
                    if (::mkdir(path_of(m.make_dir().path()).c_str(), m.make_dir().mode()) != 0) error(r, errno);
                    else r.mutable_ok();
                    break;
                case L::kRemoveDir:
                    if (::rmdir(path_of(m.remove_dir().path()).c_str()) != 0) error(r, errno);
                    else r.mutable_ok();
                    break;
                case L::kUnlink:
                    if (::unlink(path_of(m.unlink().path()).c_str()) != 0) error(r, errno);
                    else r.mutable_ok();
                    break;
                case L::kRename:
                    if (::rename(path_of(m.rename().from()).c_str(), path_of(m.rename().to()).c_str()) != 0) error(r, errno);
                    else r.mutable_ok();
                    break;
                case L::kFtruncate: {
                    int fd = local_fd(m.ftruncate().fd());
                    if (fd < 0 || ::ftruncate(fd, m.ftruncate().length()) != 0) error(r, fd < 0 ? EBADF : errno);
                    else r.mutable_ok();
                    break;
                }
                default:
                    error(r, ENOSYS);
                    break;
            }
            if (m.request_id() == 0) continue;  // notification
            if (!send_all(c, protocol::encode_frame(r))) break;
        }
    } catch (const std::exception&) {
    }
    ::close(c);
}

}  // namespace mirrord::bench
