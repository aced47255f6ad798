/* e2e_netprobe.c: a plain C "local app" of the exec end-to-end tests (tests/integration/exec/).
 * It exercises what the layer must keep working on REAL fds, and prints `key=value` lines the
 * C++ tests check:
 *   fork   HOST PORT        connect, fork: the child uses the inherited connection and opens a
 *                           new one (and reads a pod file); the parent does the same after it
 *   dup2   HOST PORT        connect, dup2 to fd 100, close the original, echo over fd 100,
 *                           getpeername of both; F_DUPFD_CLOEXEC copy too
 *   epoll  HOST PORT BYTES  non-blocking connect (EINPROGRESS) + epoll, BYTES echoed back and
 *                           compared, SO_ERROR, getpeername, getsockname
 * HOST is resolved with getaddrinfo (so a service name works). A failing step prints
 * `error=<step>: <strerror>` and the program exits 1. SIGALRM ends it after 20 s. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void out(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    buf[n++] = '\n';
    ssize_t w = write(1, buf, (size_t)n); /* unbuffered: survives fork without duplicates */
    (void)w;
}

static int fail(const char* step) {
    out("error=%s: %s", step, strerror(errno));
    return 1;
}

static int resolve(const char* host, const char* port, struct sockaddr_storage* ss, socklen_t* len) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        out("error=getaddrinfo(%s): %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static const char* addr_text(const struct sockaddr_storage* ss, char* buf, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in* a = (const struct sockaddr_in*)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6* a = (const struct sockaddr_in6*)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    snprintf(buf, n, "%s:%d", ip, port);
    return buf;
}

static int connect_to(const struct sockaddr_storage* ss, socklen_t len) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr*)ss, len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sends msg and reads back exactly as many bytes; 0 when they match. */
static int echo_once(int fd, const char* msg) {
    size_t n = strlen(msg);
    if (write(fd, msg, n) != (ssize_t)n) return -1;
    char buf[256];
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            if (r == 0) errno = ECONNRESET;
            return -1;
        }
        got += (size_t)r;
    }
    return memcmp(buf, msg, n) == 0 ? 0 : (errno = EBADMSG, -1);
}

static void read_pod_file(const char* key) {
    char buf[256] = {0};
    int fd = open("/app/hello.txt", O_RDONLY);
    if (fd < 0) {
        out("%s=open failed: %s", key, strerror(errno));
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
    out("%s=%s", key, n >= 0 ? buf : "read failed");
}

static int cmd_fork(const char* host, const char* port) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(host, port, &ss, &len) != 0) return 1;
    int a = connect_to(&ss, len);
    if (a < 0) return fail("connect before fork");
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        out("child_inherited=%s", echo_once(a, "child over the inherited connection") == 0 ? "ok" : strerror(errno));
        int b = connect_to(&ss, len);
        if (b < 0) {
            out("child_new=connect: %s", strerror(errno));
        } else {
            out("child_new=%s", echo_once(b, "child over its own connection") == 0 ? "ok" : strerror(errno));
            close(b);
        }
        struct sockaddr_storage again;
        socklen_t again_len;
        out("child_resolve=%s", resolve(host, port, &again, &again_len) == 0 ? "ok" : "failed");
        read_pod_file("child_file");
        _exit(0);
    }
    int st = 0;
    if (waitpid(child, &st, 0) != child) return fail("waitpid");
    out("child_status=%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    out("parent_inherited=%s", echo_once(a, "parent after the fork") == 0 ? "ok" : strerror(errno));
    int c = connect_to(&ss, len);
    if (c < 0) {
        out("parent_new=connect: %s", strerror(errno));
    } else {
        out("parent_new=%s", echo_once(c, "parent over a new connection") == 0 ? "ok" : strerror(errno));
        close(c);
    }
    read_pod_file("parent_file");
    close(a);
    return 0;
}

static int cmd_dup2(const char* host, const char* port) {
    struct sockaddr_storage ss, peer;
    socklen_t len, plen = sizeof peer;
    char text[128];
    if (resolve(host, port, &ss, &len) != 0) return 1;
    int fd = connect_to(&ss, len);
    if (fd < 0) return fail("connect");
    if (getpeername(fd, (struct sockaddr*)&peer, &plen) != 0) return fail("getpeername");
    out("peer_original=%s", addr_text(&peer, text, sizeof text));
    if (dup2(fd, 100) != 100) return fail("dup2");
    close(fd);
    plen = sizeof peer;
    if (getpeername(100, (struct sockaddr*)&peer, &plen) != 0) return fail("getpeername(100)");
    out("peer_dup2=%s", addr_text(&peer, text, sizeof text));
    out("echo_dup2=%s", echo_once(100, "over the dup2 copy") == 0 ? "ok" : strerror(errno));
    int copy = fcntl(100, F_DUPFD_CLOEXEC, 200);
    if (copy < 0) return fail("F_DUPFD_CLOEXEC");
    close(100);
    plen = sizeof peer;
    if (getpeername(copy, (struct sockaddr*)&peer, &plen) != 0) return fail("getpeername(copy)");
    out("peer_fcntl=%s", addr_text(&peer, text, sizeof text));
    out("echo_fcntl=%s", echo_once(copy, "over the fcntl copy") == 0 ? "ok" : strerror(errno));
    close(copy);
    return 0;
}

static int cmd_epoll(const char* host, const char* port, size_t total) {
    struct sockaddr_storage ss, peer;
    socklen_t len, plen = sizeof peer;
    char text[128];
    if (resolve(host, port, &ss, &len) != 0) return 1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    int rc = connect(fd, (struct sockaddr*)&ss, len);
    out("connect_rc=%d", rc);
    out("connect_errno=%s", rc == 0 ? "0" : (errno == EINPROGRESS ? "EINPROGRESS" : strerror(errno)));
    if (rc != 0 && errno != EINPROGRESS) return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return fail("epoll_create1");
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return fail("epoll_ctl add");
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 5000);
    if (n != 1) {
        out("error=epoll_wait for connect: %s", n == 0 ? "timed out" : strerror(errno));
        return 1;
    }
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return fail("getsockopt SO_ERROR");
    out("so_error=%d", soerr);
    if (soerr != 0) return 1;
    if (getpeername(fd, (struct sockaddr*)&peer, &plen) != 0) return fail("getpeername");
    out("peer=%s", addr_text(&peer, text, sizeof text));
    struct sockaddr_storage self;
    socklen_t slen = sizeof self;
    if (getsockname(fd, (struct sockaddr*)&self, &slen) != 0) return fail("getsockname");
    out("sockname=%s", addr_text(&self, text, sizeof text));

    unsigned char* sent = malloc(total);
    unsigned char* recvd = malloc(total + 1);
    if (!sent || !recvd) return fail("malloc");
    unsigned x = 12345;
    for (size_t i = 0; i < total; ++i) {
        x = x * 1103515245u + 12345u;
        sent[i] = (unsigned char)(x >> 16);
    }
    size_t off_out = 0, off_in = 0;
    int shut = 0, eof = 0;
    ev.events = EPOLLIN | EPOLLOUT;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) return fail("epoll_ctl mod");
    while (!eof) {
        n = epoll_wait(ep, &got, 1, 5000);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            out("error=epoll_wait during echo: %s (sent %zu, received %zu)", n == 0 ? "timed out" : strerror(errno),
                off_out, off_in);
            return 1;
        }
        if ((got.events & EPOLLOUT) && off_out < total) {
            ssize_t w = write(fd, sent + off_out, total - off_out > 65536 ? 65536 : total - off_out);
            if (w < 0 && errno != EAGAIN) return fail("write");
            if (w > 0) off_out += (size_t)w;
        }
        if (off_out == total && !shut) {
            if (shutdown(fd, SHUT_WR) != 0) return fail("shutdown");
            shut = 1;
            ev.events = EPOLLIN;
            if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) return fail("epoll_ctl mod in");
        }
        if (got.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            for (;;) {
                ssize_t r = read(fd, recvd + off_in, total + 1 - off_in);
                if (r > 0) {
                    off_in += (size_t)r;
                    if (off_in > total) break;
                    continue;
                }
                if (r == 0) eof = 1;
                else if (errno != EAGAIN) return fail("read");
                break;
            }
            if (off_in > total) {
                out("error=received more than sent");
                return 1;
            }
        }
    }
    out("echo_bytes=%zu", off_in);
    out("echo_match=%d", off_in == total && memcmp(sent, recvd, total) == 0);
    close(ep);
    close(fd);
    free(sent);
    free(recvd);
    return 0;
}

int main(int argc, char** argv) {
    alarm(20);
    if (argc >= 4 && strcmp(argv[1], "fork") == 0) return cmd_fork(argv[2], argv[3]);
    if (argc >= 4 && strcmp(argv[1], "dup2") == 0) return cmd_dup2(argv[2], argv[3]);
    if (argc >= 5 && strcmp(argv[1], "epoll") == 0) return cmd_epoll(argv[2], argv[3], strtoul(argv[4], NULL, 10));
    fprintf(stderr, "usage: e2e_netprobe fork|dup2 HOST PORT | epoll HOST PORT BYTES\n");
    return 2;
}
