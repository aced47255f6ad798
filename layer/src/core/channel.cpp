// channel.cpp: the process's one connection ("session") to the intproxy — TCP loopback to
// MIRRORD_LAYER_INTPROXY_ADDR, TCP_NODELAY, moved to a high fd number with FD_CLOEXEC, opened with
// LayerHello/LayerHelloAck — and request()/notify() over it with nanopb's stream helpers. One
// request in flight (a mutex held across send + receive). A broken channel never aborts the app:
// requests fail with ECONNRESET and the next one tries to connect again (a new session). Before
// each use the fd is checked to still be our socket (apps close fds they never opened).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" {
#include <pb_decode.h>
#include <pb_encode.h>

#include "layer_stream.h"
}

#include "core/internal.hpp"

namespace mirrord::layer {

namespace {

constexpr size_t kMaxFrame = 16u << 20;

struct Channel {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int fd = -1;
    std::uint64_t ino = 0;
    std::uint64_t session = 0;
    std::uint64_t next_id = 1;
    mirrord_stream stream{};
    std::uint8_t ahead[4096] = {};
    int argc = 0;
    char** argv = nullptr;
};

// Constant-initialised (no dynamic initialiser): the constructor may run before this file's.
constinit Channel g_ch{};

ssize_t sock_read(void* ctx, void* buf, size_t len) {
    int fd = *static_cast<int*>(ctx);
    ssize_t r = REAL(recvfrom)(fd, buf, len, 0, nullptr, nullptr);
    return r < 0 ? -errno : r;
}

ssize_t sock_write(void* ctx, const void* buf, size_t len) {
    int fd = *static_cast<int*>(ctx);
    ssize_t r = REAL(sendto)(fd, buf, len, MSG_NOSIGNAL, nullptr, 0);
    return r < 0 ? -errno : r;
}

bool encode_argv(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const Channel* ch = static_cast<const Channel*>(*arg);
    for (int i = 0; i < ch->argc && ch->argv != nullptr && ch->argv[i] != nullptr; ++i) {
        const char* a = ch->argv[i];
        if (!pb_encode_tag_for_field(stream, field) ||
            !pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(a), std::strlen(a))) {
            return false;
        }
    }
    return true;
}

// "127.0.0.1:PORT" or "[::1]:PORT".
bool parse_addr(const char* text, sockaddr_storage& ss, socklen_t& len) {
    std::memset(&ss, 0, sizeof ss);
    const char* colon = std::strrchr(text, ':');
    if (colon == nullptr) {
        return false;
    }
    long port = std::strtol(colon + 1, nullptr, 10);
    if (port <= 0 || port > 65535) {
        return false;
    }
    char host[64];
    size_t hlen = static_cast<size_t>(colon - text);
    if (text[0] == '[' && hlen >= 2 && text[hlen - 1] == ']') {
        hlen -= 2;
        if (hlen >= sizeof host) return false;
        std::memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) return false;
        len = sizeof(sockaddr_in6);
        return true;
    }
    if (hlen >= sizeof host) return false;
    std::memcpy(host, text, hlen);
    host[hlen] = '\0';
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) return false;
    len = sizeof(sockaddr_in);
    return true;
}

// A high fd number for our socket, out of the way of apps that expect small numbers.
int move_high(int fd) {
    rlimit rl{};
    long top = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        static_cast<long>(rl.rlim_cur) < top) {
        top = static_cast<long>(rl.rlim_cur);
    }
    for (long base : {top - 24, top / 2, 100L}) {
        if (base <= fd) continue;
        int nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, static_cast<int>(base));
        if (nfd >= 0) {
            REAL(close)(fd);
            return nfd;
        }
    }
    return fd;
}

void drop_locked(bool close_it) {
    if (g_ch.fd >= 0 && close_it) {
        REAL(close)(g_ch.fd);
    }
    g_ch.fd = -1;
    g_ch.ino = 0;
}

void init_stream_locked() {
    mirrord_stream_init(&g_ch.stream, &sock_read, &sock_write, &g_ch.fd, g_ch.ahead, sizeof g_ch.ahead);
}

int connect_locked(std::uint64_t parent_session) {
    const char* addr = REAL(getenv)("MIRRORD_LAYER_INTPROXY_ADDR");
    if (addr == nullptr || *addr == '\0') {
        return ENOTCONN;
    }
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (!parse_addr(addr, ss, len)) {
        MLOG_WARN("MIRRORD_LAYER_INTPROXY_ADDR=\"%s\" is not HOST:PORT", addr);
        return EINVAL;
    }
    int fd = REAL(socket)(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    int rc;
    do {
        rc = REAL(connect)(fd, reinterpret_cast<sockaddr*>(&ss), len);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        REAL(close)(fd);
        MLOG_DEBUG("connecting to the intproxy at %s failed: %s", addr, std::strerror(e));
        return e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fd = move_high(fd);
    g_ch.fd = fd;
    g_ch.ino = fd_inode(fd);
    init_stream_locked();

    mirrord_v1_LayerMessage hello = mirrord_v1_LayerMessage_init_zero;
    hello.request_id = g_ch.next_id++;
    hello.which_body = mirrord_v1_LayerMessage_hello_tag;
    auto& h = hello.body.hello;
    h.protocol_version = mirrord_v1_ProtocolVersion_PROTOCOL_VERSION_CURRENT;
    h.pid = static_cast<std::int32_t>(getpid());
    h.parent_pid = static_cast<std::int32_t>(getppid());
    h.parent_session_id = parent_session;
    const char* name = program_invocation_short_name;
    std::strncpy(h.process_name, name != nullptr ? name : "", sizeof h.process_name - 1);
    h.argv.funcs.encode = &encode_argv;
    h.argv.arg = &g_ch;
    rc = mirrord_stream_send_layer(&g_ch.stream, &hello, kMaxFrame);
    mirrord_v1_ProxyMessage ack = mirrord_v1_ProxyMessage_init_zero;
    if (rc == 0) {
        rc = mirrord_stream_recv_proxy(&g_ch.stream, &ack, kMaxFrame);
    }
    if (rc != 0 || ack.which_body != mirrord_v1_ProxyMessage_hello_ack_tag) {
        int e = rc < 0 ? -rc : (ack.which_body == mirrord_v1_ProxyMessage_error_tag && ack.body.error.code > 0
                                     ? ack.body.error.code
                                     : EPROTO);
        MLOG_WARN("the intproxy at %s refused this process (%s)", addr,
                  rc < 0 ? mirrord_stream_detail(&g_ch.stream) : "no LayerHelloAck");
        drop_locked(true);
        return e;
    }
    g_ch.session = ack.body.hello_ack.session_id;
    MLOG_DEBUG("connected to the intproxy at %s on fd %d, session %llu (parent %llu)", addr, fd,
               static_cast<unsigned long long>(g_ch.session), static_cast<unsigned long long>(parent_session));
    return 0;
}

// The channel is usable: connected, and the fd still is our socket. Reconnects otherwise.
int ensure_locked() {
    if (g_ch.fd >= 0) {
        if (g_ch.stream.error == 0 && fd_inode(g_ch.fd) == g_ch.ino) {
            return 0;
        }
        // Broken stream: close it. Stolen fd (the app closed/replaced it): leave it alone.
        drop_locked(fd_inode(g_ch.fd) == g_ch.ino);
    }
    return connect_locked(g_ch.session);
}

// Marks the calling thread as inside the layer for the duration (hooked libc calls made by
// nanopb/libstdc++ go straight through).
struct InLayer {
    bool entered;
    InLayer() noexcept : entered(!thread_in_layer()) { set_thread_in_layer(true); }
    ~InLayer() {
        if (entered) set_thread_in_layer(false);
    }
};

}  // namespace

std::uint64_t fd_inode(int fd) noexcept {
    struct stat st {};
    if (fd < 0 || REAL(fstat)(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return 0;
    }
    return static_cast<std::uint64_t>(st.st_ino);
}

void channel_set_process_info(int argc, char** argv) noexcept {
    g_ch.argc = argc;
    g_ch.argv = argv;
}

int channel_connect(std::uint64_t parent_session) noexcept {
    InLayer guard;
    pthread_mutex_lock(&g_ch.mu);
    drop_locked(true);
    int rc = connect_locked(parent_session);
    pthread_mutex_unlock(&g_ch.mu);
    return rc;
}

bool channel_adopt(int fd, std::uint64_t ino, std::uint64_t session) noexcept {
    InLayer guard;
    if (ino == 0 || fd_inode(fd) != ino) {
        return false;
    }
    pthread_mutex_lock(&g_ch.mu);
    g_ch.fd = fd;
    g_ch.ino = ino;
    g_ch.session = session;
    REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
    init_stream_locked();
    pthread_mutex_unlock(&g_ch.mu);
    MLOG_DEBUG("kept the intproxy connection on fd %d across execve, session %llu", fd,
               static_cast<unsigned long long>(session));
    return true;
}

int channel_fd() noexcept { return g_ch.fd; }
std::uint64_t channel_ino() noexcept { return g_ch.ino; }
std::uint64_t session_id() noexcept { return g_ch.session; }

void channel_lock_for_fork() noexcept { pthread_mutex_lock(&g_ch.mu); }
void channel_unlock_after_fork_parent() noexcept { pthread_mutex_unlock(&g_ch.mu); }

void channel_after_fork_child() noexcept {
    InLayer guard;
    pthread_mutex_init(&g_ch.mu, nullptr);
    pthread_mutex_lock(&g_ch.mu);
    std::uint64_t parent = g_ch.session;
    // The parent's socket: closing our copy leaves the parent's connection intact.
    drop_locked(true);
    int rc = connect_locked(parent);
    pthread_mutex_unlock(&g_ch.mu);
    if (rc != 0) {
        MLOG_WARN("the forked child %d could not open its intproxy session: %s", static_cast<int>(getpid()),
                  std::strerror(rc));
    }
}

bool channel_evacuate_fd(int fd) noexcept {
    if (fd < 0 || fd != g_ch.fd) {
        return false;
    }
    InLayer guard;
    pthread_mutex_lock(&g_ch.mu);
    bool moved = false;
    if (fd == g_ch.fd) {
        int nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, fd + 1);
        if (nfd < 0) {
            nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
        }
        if (nfd >= 0) {
            REAL(close)(fd);
            g_ch.fd = nfd;  // the stream's ctx points at g_ch.fd: it follows
            MLOG_DEBUG("moved the intproxy connection from fd %d to %d", fd, nfd);
        } else {
            drop_locked(false);
        }
        moved = true;
    }
    pthread_mutex_unlock(&g_ch.mu);
    return moved;
}

int request(mirrord_v1_LayerMessage& msg, mirrord_v1_ProxyMessage& reply) noexcept {
    InLayer guard;
    int saved_errno = errno;
    pthread_mutex_lock(&g_ch.mu);
    int rc = ensure_locked();
    if (rc != 0) {
        pthread_mutex_unlock(&g_ch.mu);
        errno = saved_errno;
        return rc == ENOTCONN ? ENOTCONN : ECONNRESET;
    }
    std::uint64_t id = g_ch.next_id++;
    if (id == 0) id = g_ch.next_id++;
    msg.request_id = id;
    rc = mirrord_stream_send_layer(&g_ch.stream, &msg, kMaxFrame);
    while (rc == 0) {
        rc = mirrord_stream_recv_proxy(&g_ch.stream, &reply, kMaxFrame);
        if (rc == 0 && reply.request_id == id) {
            break;
        }
        if (rc == 0) {
            MLOG_DEBUG("dropping a reply to request %llu while waiting for %llu",
                       static_cast<unsigned long long>(reply.request_id), static_cast<unsigned long long>(id));
        }
    }
    int result = 0;
    if (rc != 0) {
        if (rc == -EINVAL || rc == -EMSGSIZE) {
            result = rc == -EINVAL ? EINVAL : EMSGSIZE;  // refused before sending: stream intact
        } else {
            MLOG_WARN("lost the connection to the intproxy: %s", mirrord_stream_detail(&g_ch.stream));
            drop_locked(true);
            result = ECONNRESET;
        }
    } else if (reply.which_body == mirrord_v1_ProxyMessage_error_tag) {
        result = reply.body.error.code != 0 ? reply.body.error.code : EIO;
    }
    pthread_mutex_unlock(&g_ch.mu);
    errno = saved_errno;
    return result;
}

int notify(mirrord_v1_LayerMessage& msg) noexcept {
    InLayer guard;
    int saved_errno = errno;
    pthread_mutex_lock(&g_ch.mu);
    int rc = ensure_locked();
    int result = 0;
    if (rc != 0) {
        result = ECONNRESET;
    } else {
        msg.request_id = 0;
        rc = mirrord_stream_send_layer(&g_ch.stream, &msg, kMaxFrame);
        if (rc != 0 && rc != -EINVAL && rc != -EMSGSIZE) {
            drop_locked(true);
            result = ECONNRESET;
        } else if (rc != 0) {
            result = EINVAL;
        }
    }
    pthread_mutex_unlock(&g_ch.mu);
    errno = saved_errno;
    return result;
}

bool decode_bytes_into(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* b = static_cast<BytesSink*>(*arg);
    size_t n = stream->bytes_left;
    if (n > b->cap - b->got) return false;
    if (!pb_read(stream, reinterpret_cast<pb_byte_t*>(b->p + b->got), n)) return false;
    b->got += n;
    return true;
}

}  // namespace mirrord::layer
