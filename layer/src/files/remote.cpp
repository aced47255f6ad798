// remote.cpp: the files module's requests to the intproxy, and open() of a remote path:
//  - read-only opens fetch the whole file (FileReadWhole, up to kWholeCap) straight into a sealed
//    memfd the app gets as its fd: read/pread/mmap/lseek/dup/fork/stdio then need no hooks.
//    Cap: max(8 MiB, feature.fs.readonly_file_buffer), at most 15 MiB (the agent's cap, under
//    the 16 MiB frame cap). The memfd's fstat is answered with the remote stat.
//  - larger files, non-regular files, and opens with write intent get a remote fd (FileOpen)
//    and an empty memfd as the app's placeholder fd; read/write/lseek/fstat/... hooks forward.
//  - directories (O_DIRECTORY, or EISDIR from FileReadWhole) get a placeholder memfd marked
//    remote_dir with the remote path (fdopendir / getdents64 / *at() relative paths use it).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

extern "C" {
#include <pb_decode.h>
#include <pb_encode.h>
}

#include "files/files.hpp"

namespace mirrord::layer::files {

namespace {

constexpr std::uint64_t kMinWholeCap = 8u << 20;
constexpr std::uint64_t kMaxWholeCap = 15u << 20;
constexpr std::uint32_t kMaxChunk = 1u << 20;  // the agent's per-read maximum

std::uint64_t whole_cap() {
    return std::min<std::uint64_t>(kMaxWholeCap, std::max<std::uint64_t>(kMinWholeCap, settings().readonly_file_buffer));
}

bool copy_path(char* dst, size_t cap, const std::string& src) {
    if (src.size() >= cap) return false;
    std::memcpy(dst, src.c_str(), src.size() + 1);
    return true;
}

int make_memfd(bool cloexec, bool sealing) {
    unsigned flags = (cloexec ? MFD_CLOEXEC : 0u) | (sealing ? MFD_ALLOW_SEALING : 0u);
    return static_cast<int>(::syscall(SYS_memfd_create, "mirrord", flags));
}

std::uint64_t ino_of(int fd) {
    struct stat st {};
    return REAL(fstat)(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// FileWhole.data -> the memfd, in chunks straight from the socket.
struct MemfdSink {
    int fd;
    bool failed = false;
};

bool data_to_memfd(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* sink = static_cast<MemfdSink*>(*arg);
    char buf[65536];
    while (stream->bytes_left > 0) {
        size_t n = std::min(sizeof buf, stream->bytes_left);
        if (!pb_read(stream, reinterpret_cast<pb_byte_t*>(buf), n)) return false;
        const char* p = buf;
        while (n > 0 && !sink->failed) {
            ssize_t w = REAL(write)(sink->fd, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                sink->failed = true;  // keep draining the stream
                break;
            }
            p += w;
            n -= static_cast<size_t>(w);
        }
    }
    return true;
}

bool route_whole(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_file_whole_tag) {
        auto* w = static_cast<mirrord_v1_FileWhole*>(field->pData);
        w->data.funcs.decode = &data_to_memfd;
        w->data.arg = *arg;
    }
    return true;
}

bool route_data(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_file_data_tag) {
        auto* d = static_cast<mirrord_v1_FileData*>(field->pData);
        d->data.funcs.decode = &decode_bytes_into;
        d->data.arg = *arg;
    }
    return true;
}

struct ConstBytes {
    const void* p;
    size_t n;
};

bool encode_bytes(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* b = static_cast<const ConstBytes*>(*arg);
    return pb_encode_tag_for_field(stream, field) &&
           pb_encode_string(stream, static_cast<const pb_byte_t*>(b->p), b->n);
}

int as_errno(int rc) { return rc > 0 ? rc : EIO; }

// A request's errno as the app should see it: a lost channel is EIO.
int app_errno(int rc) { return rc == ECONNRESET || rc == ENOTCONN ? EIO : as_errno(rc); }

// request() whose reply must be the body `tag`: 0, or the errno for the app (EIO for another body).
int request_for(mirrord_v1_LayerMessage& msg, mirrord_v1_ProxyMessage& reply, pb_size_t tag) {
    int rc = request(msg, reply);
    if (rc != 0) return app_errno(rc);
    return reply.which_body == tag ? 0 : EIO;
}

// The placeholder fd for a remote object (an empty memfd), with the app's O_CLOEXEC.
int placeholder(int flags) { return make_memfd((flags & O_CLOEXEC) != 0, false); }

int open_dir_placeholder(const std::string& path, int flags, int& fd) {
    mirrord_v1_FileStat st{};
    int rc = remote_stat(path, 0, true, st);
    if (rc != 0) return rc;
    if (!S_ISDIR(st.mode)) return ENOTDIR;
    if ((flags & O_ACCMODE) != O_RDONLY) return EISDIR;
    int pfd = placeholder(flags);
    if (pfd < 0) return errno;
    auto o = std::make_shared<RemoteObject>();
    o->kind = FdKind::remote_dir;
    o->path = path;
    o->stat = st;
    o->open_flags = flags;
    o->local_ino = ino_of(pfd);
    table_put(pfd, std::move(o));
    fd = pfd;
    return 0;
}

int open_remote_fd(const std::string& path, int flags, mode_t mode, int& fd) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_open_tag;
    if (!copy_path(msg.body.file_open.path, sizeof msg.body.file_open.path, path)) return ENAMETOOLONG;
    msg.body.file_open.flags = flags & ~O_CLOEXEC;
    msg.body.file_open.mode = mode;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if (int rc = request_for(msg, reply, mirrord_v1_ProxyMessage_file_opened_tag); rc != 0) return rc;
    std::uint64_t rfd = reply.body.file_opened.fd;
    if (reply.body.file_opened.has_stat && S_ISDIR(reply.body.file_opened.stat.mode)) {
        remote_close_file(rfd);
        return open_dir_placeholder(path, flags, fd);
    }
    int pfd = placeholder(flags);
    if (pfd < 0) {
        int e = errno;
        remote_close_file(rfd);
        return e;
    }
    auto o = std::make_shared<RemoteObject>();
    o->kind = FdKind::remote_file;
    o->path = path;
    o->remote_fd = rfd;
    o->stat = reply.body.file_opened.stat;
    o->open_flags = flags;
    o->local_ino = ino_of(pfd);
    table_put(pfd, std::move(o));
    fd = pfd;
    return 0;
}

}  // namespace

int dir_placeholder(const std::string& path, int flags) {
    int pfd = placeholder(flags);
    if (pfd < 0) return -1;
    auto o = std::make_shared<RemoteObject>();
    o->kind = FdKind::remote_dir;
    o->path = path;  // stat fetched on first fstat (mode 0 = unknown)
    o->open_flags = flags;
    o->local_ino = ino_of(pfd);
    table_put(pfd, std::move(o));
    return pfd;
}

int open_remote(const std::string& path, int flags, mode_t mode, int& fd) {
    if ((flags & O_DIRECTORY) != 0) {
        return open_dir_placeholder(path, flags, fd);
    }
    if (write_intent(flags) || (flags & O_PATH) != 0) {
        return open_remote_fd(path, flags, mode, fd);
    }
    int mfd = make_memfd(true, true);
    if (mfd < 0) return errno;
    MemfdSink sink{mfd};
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_read_whole_tag;
    if (!copy_path(msg.body.file_read_whole.path, sizeof msg.body.file_read_whole.path, path)) {
        REAL(close)(mfd);
        return ENAMETOOLONG;
    }
    msg.body.file_read_whole.max_size = whole_cap();
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    reply.cb_body.funcs.decode = &route_whole;
    reply.cb_body.arg = &sink;
    int rc = request(msg, reply);
    if (rc == EISDIR) {
        REAL(close)(mfd);
        return open_dir_placeholder(path, flags, fd);
    }
    if (rc != 0 || reply.which_body != mirrord_v1_ProxyMessage_file_whole_tag) {
        REAL(close)(mfd);
        return rc != 0 ? app_errno(rc) : EIO;
    }
    if (reply.body.file_whole.too_large) {
        REAL(close)(mfd);
        return open_remote_fd(path, flags, mode, fd);
    }
    if (sink.failed) {
        REAL(close)(mfd);
        return ENOMEM;
    }
    // Read-only like the file the app opened (writes: EPERM), offset 0, the app's fd flags.
    REAL(fcntl)(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    REAL(lseek)(mfd, 0, SEEK_SET);
    if ((flags & O_CLOEXEC) == 0) REAL(fcntl)(mfd, F_SETFD, 0);
    if ((flags & O_NONBLOCK) != 0) REAL(fcntl)(mfd, F_SETFL, O_NONBLOCK);
    auto o = std::make_shared<RemoteObject>();
    o->kind = FdKind::memfd_file;
    o->path = path;
    o->stat = reply.body.file_whole.stat;
    o->open_flags = flags;
    o->local_ino = ino_of(mfd);
    table_put(mfd, std::move(o));
    fd = mfd;
    return 0;
}

int remote_stat(const std::string& path, std::uint64_t remote_fd, bool follow, mirrord_v1_FileStat& out) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_stat_tag;
    if (remote_fd == 0 && !copy_path(msg.body.file_stat.path, sizeof msg.body.file_stat.path, path)) return ENAMETOOLONG;
    msg.body.file_stat.fd = remote_fd;
    msg.body.file_stat.follow_symlinks = follow;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if (int rc = request_for(msg, reply, mirrord_v1_ProxyMessage_file_stat_tag); rc != 0) return rc;
    out = reply.body.file_stat;
    return 0;
}

int remote_statfs(const std::string& path, std::uint64_t remote_fd, mirrord_v1_FsStat& out) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_fs_stat_tag;
    if (remote_fd == 0 && !copy_path(msg.body.fs_stat.path, sizeof msg.body.fs_stat.path, path)) return ENAMETOOLONG;
    msg.body.fs_stat.fd = remote_fd;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if (int rc = request_for(msg, reply, mirrord_v1_ProxyMessage_fs_stat_tag); rc != 0) return rc;
    out = reply.body.fs_stat;
    return 0;
}

int remote_access(const std::string& path, int mode) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_access_tag;
    if (!copy_path(msg.body.file_access.path, sizeof msg.body.file_access.path, path)) return ENAMETOOLONG;
    msg.body.file_access.mode = mode;
    return remote_simple(msg);
}

int remote_readlink(const std::string& path, std::string& out) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_read_link_tag;
    if (!copy_path(msg.body.read_link.path, sizeof msg.body.read_link.path, path)) return ENAMETOOLONG;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if (int rc = request_for(msg, reply, mirrord_v1_ProxyMessage_link_target_tag); rc != 0) return rc;
    out = reply.body.link_target.target;
    return 0;
}

int remote_simple(mirrord_v1_LayerMessage& msg) {
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    int rc = request(msg, reply);
    return rc != 0 ? app_errno(rc) : 0;
}

int remote_close_file(std::uint64_t remote_fd) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_close_tag;
    msg.body.file_close.fd = remote_fd;
    return notify(msg);
}

ssize_t remote_read(const RemoteObject& o, void* buf, size_t n, bool at, off_t off, int& err) {
    if (n == 0) return 0;
    std::uint32_t want = static_cast<std::uint32_t>(std::min<size_t>(n, kMaxChunk));
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    if (at) {
        msg.which_body = mirrord_v1_LayerMessage_file_read_at_tag;
        msg.body.file_read_at.fd = o.remote_fd;
        msg.body.file_read_at.size = want;
        msg.body.file_read_at.offset = static_cast<std::uint64_t>(off);
    } else {
        msg.which_body = mirrord_v1_LayerMessage_file_read_tag;
        msg.body.file_read.fd = o.remote_fd;
        msg.body.file_read.size = want;
    }
    BytesSink b{static_cast<char*>(buf), want};
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    reply.cb_body.funcs.decode = &route_data;
    reply.cb_body.arg = &b;
    int rc = request(msg, reply);
    if (rc != 0) {
        err = app_errno(rc);
        return -1;
    }
    return static_cast<ssize_t>(b.got);
}

ssize_t remote_write(const RemoteObject& o, const void* buf, size_t n, bool at, off_t off, int& err) {
    size_t chunk = std::min<size_t>(n, 8u << 20);
    ConstBytes bytes{buf, chunk};
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    if (at) {
        msg.which_body = mirrord_v1_LayerMessage_file_write_at_tag;
        msg.body.file_write_at.fd = o.remote_fd;
        msg.body.file_write_at.offset = static_cast<std::uint64_t>(off);
        msg.body.file_write_at.data.funcs.encode = &encode_bytes;
        msg.body.file_write_at.data.arg = &bytes;
    } else {
        msg.which_body = mirrord_v1_LayerMessage_file_write_tag;
        msg.body.file_write.fd = o.remote_fd;
        msg.body.file_write.data.funcs.encode = &encode_bytes;
        msg.body.file_write.data.arg = &bytes;
    }
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if ((err = request_for(msg, reply, mirrord_v1_ProxyMessage_file_written_tag)) != 0) return -1;
    return static_cast<ssize_t>(reply.body.file_written.written);
}

off_t remote_seek(const RemoteObject& o, off_t off, int whence, int& err) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_seek_tag;
    msg.body.file_seek.fd = o.remote_fd;
    msg.body.file_seek.offset = off;
    msg.body.file_seek.whence = whence;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    if ((err = request_for(msg, reply, mirrord_v1_ProxyMessage_file_offset_tag)) != 0) return -1;
    return static_cast<off_t>(reply.body.file_offset.offset);
}

int remote_ftruncate(const RemoteObject& o, off_t len) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_ftruncate_tag;
    msg.body.ftruncate.fd = o.remote_fd;
    msg.body.ftruncate.length = len;
    return remote_simple(msg);
}

}  // namespace mirrord::layer::files
