/* net_probe.c: a small C client run under the layer by the layer_net tests. Each sub-command does
 * one thing the way real programs do it and prints what it saw as "key=value" lines:
 *   nbconnect NAME PORT   getaddrinfo, non-blocking connect + epoll, SO_ERROR, getpeername,
 *                         getsockname, echo through the socket, dup2 + close of the original,
 *                         fork (the child talks on the inherited socket), exec of itself with the
 *                         socket kept open ("afterexec FD"): the new image still reports the remote
 *   afterexec FD          (internal) getpeername + echo on an inherited socket
 *   listen PORT           bind 0.0.0.0:PORT + listen, connect to 127.0.0.1:PORT from the same
 *                         process, accept, exchange bytes; prints getsockname of the listener
 *   serve PORT            bind [::]:PORT + listen + accept4 of one connection (delivered by the
 *                         fake intproxy): peer from accept, getpeername, getsockname, first bytes
 *   udpunspec             UDP connect to 10.1.2.9:9999 (relayed), then connect(AF_UNSPEC): the
 *                         association is gone (getpeername ENOTCONN)
 *   hostent NAME          gethostbyname + gethostbyname2_r(AF_INET6)
 *   cost N                N calls of hooked functions on an unmanaged fd, ns per call
 *   closerace IP PORT N   N x (socket, connect to IP:PORT, close) while another thread churns
 *                         socket+close: prints ok/escaped/other counts ("escaped" = ENETUNREACH,
 *                         a connect that reached the test netns's own kernel instead of the layer)
 * Exit status 0 = every step worked; otherwise the failing step is printed on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int fail(const char* what) {
    fprintf(stderr, "FAIL %s: %s\n", what, strerror(errno));
    return 1;
}

static void print_addr(const char* key, const struct sockaddr* sa) {
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in* s4 = (const struct sockaddr_in*)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6* s6 = (const struct sockaddr_in6*)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
    }
    printf("%s=%s:%u\n", key, ip, port);
    fflush(stdout);
}

static int echo_once(int fd, const char* msg) {
    size_t n = strlen(msg);
    if (write(fd, msg, n) != (ssize_t)n) return fail("write");
    char buf[256];
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r <= 0) return fail("read");
        got += (size_t)r;
    }
    if (memcmp(buf, msg, n) != 0) {
        fprintf(stderr, "FAIL echo mismatch\n");
        return 1;
    }
    return 0;
}

static int cmd_afterexec(int fd) {
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getpeername(fd, (struct sockaddr*)&ss, &l) != 0) return fail("getpeername after exec");
    print_addr("exec_peer", (struct sockaddr*)&ss);
    if (echo_once(fd, "after-exec")) return 1;
    printf("exec_echo=ok\n");
    return 0;
}

static int cmd_nbconnect(const char* self, const char* name, const char* port) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "FAIL getaddrinfo: %s\n", gai_strerror(rc));
        return 1;
    }
    print_addr("resolved", res->ai_addr);
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    printf("connect_rc=%d errno=%s\n", rc, rc == 0 ? "0" : (errno == EINPROGRESS ? "EINPROGRESS" : strerror(errno)));
    if (rc != 0 && errno != EINPROGRESS) return fail("connect");
    freeaddrinfo(res);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return fail("epoll_ctl");
    struct epoll_event out;
    if (epoll_wait(ep, &out, 1, 5000) != 1) return fail("epoll_wait");
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    printf("so_error=%d\n", soerr);
    close(ep);
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getpeername(fd, (struct sockaddr*)&ss, &l) != 0) return fail("getpeername");
    print_addr("peer", (struct sockaddr*)&ss);
    l = sizeof ss;
    if (getsockname(fd, (struct sockaddr*)&ss, &l) != 0) return fail("getsockname");
    print_addr("local", (struct sockaddr*)&ss);
    /* blocking from here on */
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (echo_once(fd, "ping")) return 1;
    printf("echo=ok\n");

    int dupfd = 100;
    if (dup2(fd, dupfd) != dupfd) return fail("dup2");
    close(fd);
    l = sizeof ss;
    if (getpeername(dupfd, (struct sockaddr*)&ss, &l) != 0) return fail("getpeername dup");
    print_addr("dup_peer", (struct sockaddr*)&ss);
    if (echo_once(dupfd, "dup")) return 1;
    printf("dup_echo=ok\n");
    fflush(stdout);

    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        l = sizeof ss;
        if (getpeername(dupfd, (struct sockaddr*)&ss, &l) != 0) _exit(fail("getpeername child"));
        print_addr("child_peer", (struct sockaddr*)&ss);
        _exit(echo_once(dupfd, "child") ? 1 : 0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child_exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    fflush(stdout);

    /* exec keeps the socket (FD_CLOEXEC cleared on the dup) */
    char fdtext[16];
    snprintf(fdtext, sizeof fdtext, "%d", dupfd);
    child = fork();
    if (child == 0) {
        execl(self, self, "afterexec", fdtext, (char*)NULL);
        _exit(fail("execl"));
    }
    waitpid(child, &st, 0);
    printf("exec_exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    close(dupfd);
    return 0;
}

static int cmd_listen(const char* port_text) {
    int port = atoi(port_text);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) return fail("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(lfd, (struct sockaddr*)&a, sizeof a) != 0) return fail("bind");
    if (listen(lfd, 8) != 0) return fail("listen");
    printf("listen=ok\n");
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    getsockname(lfd, (struct sockaddr*)&ss, &l);
    print_addr("listener", (struct sockaddr*)&ss);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c, (struct sockaddr*)&to, sizeof to) != 0) return fail("connect to own listener");
    l = sizeof ss;
    int s = accept(lfd, (struct sockaddr*)&ss, &l);
    if (s < 0) return fail("accept");
    print_addr("accepted_peer", (struct sockaddr*)&ss);
    if (write(c, "hi", 2) != 2) return fail("write");
    char buf[8];
    if (read(s, buf, sizeof buf) != 2) return fail("read");
    printf("local_listener=ok\n");
    close(s);
    close(c);
    close(lfd);
    return 0;
}

static int cmd_serve(const char* port_text) {
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) return fail("socket");
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)atoi(port_text))};
    a.sin6_addr = in6addr_any;
    if (bind(lfd, (struct sockaddr*)&a, sizeof a) != 0) return fail("bind");
    if (listen(lfd, 8) != 0) return fail("listen");
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    int s = accept4(lfd, (struct sockaddr*)&ss, &l, SOCK_CLOEXEC);
    if (s < 0) return fail("accept4");
    print_addr("accepted_peer", (struct sockaddr*)&ss);
    l = sizeof ss;
    if (getpeername(s, (struct sockaddr*)&ss, &l) != 0) return fail("getpeername");
    print_addr("peer", (struct sockaddr*)&ss);
    l = sizeof ss;
    if (getsockname(s, (struct sockaddr*)&ss, &l) != 0) return fail("getsockname");
    print_addr("local", (struct sockaddr*)&ss);
    char buf[64] = {0};
    ssize_t n = read(s, buf, sizeof buf - 1);
    printf("first_bytes=%s\n", n > 0 ? buf : "(none)");
    close(s);
    close(lfd);
    return 0;
}

static int cmd_udpunspec(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9999)};
    inet_pton(AF_INET, "10.1.2.9", &to.sin_addr);
    if (connect(fd, (struct sockaddr*)&to, sizeof to) != 0) return fail("connect");
    if (send(fd, "u", 1, 0) != 1) return fail("send");
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    printf("reply=%.*s\n", (int)(n > 0 ? n : 0), buf);
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (connect(fd, &unspec, sizeof unspec) != 0) return fail("connect AF_UNSPEC");
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    int rc = getpeername(fd, (struct sockaddr*)&ss, &l);
    printf("after_unspec=%s\n", rc == 0 ? "connected" : (errno == ENOTCONN ? "ENOTCONN" : strerror(errno)));
    fflush(stdout);
    pause_ms(200);
    close(fd);
    return 0;
}

static int cmd_hostent(const char* name) {
    struct hostent* h = gethostbyname(name);
    if (h == NULL) {
        fprintf(stderr, "FAIL gethostbyname: h_errno=%d\n", h_errno);
        return 1;
    }
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(h->h_addrtype, h->h_addr_list[0], ip, sizeof ip);
    printf("gethostbyname=%s\n", ip);
    struct hostent he, *r = NULL;
    char buf[1024];
    int herr = 0;
    int rc = gethostbyname2_r(name, AF_INET6, &he, buf, sizeof buf, &r, &herr);
    if (rc == 0 && r != NULL) {
        inet_ntop(AF_INET6, r->h_addr_list[0], ip, sizeof ip);
        printf("gethostbyname2_r=%s\n", ip);
    } else {
        printf("gethostbyname2_r=none herr=%d\n", herr);
    }
    rc = gethostbyname_r(name, &he, buf, 8, &r, &herr);
    printf("small_buffer_rc=%s\n", rc == ERANGE ? "ERANGE" : "other");
    struct hostent* none = gethostbyname("nope.fake.cluster");
    printf("notfound_h_errno=%d\n", none != NULL ? 0 : h_errno);
    return 0;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* ns per call of hooked functions on an unmanaged fd (a pipe): the fast paths. */
static int cmd_cost(const char* n_text) {
    long n = atol(n_text);
    int p[2];
    if (pipe(p) != 0) return fail("pipe");
    struct sockaddr_in a = {.sin_family = AF_INET};
    long long t0 = now_ns();
    for (long i = 0; i < n; ++i) (void)!connect(p[0], (struct sockaddr*)&a, sizeof a);
    long long t1 = now_ns();
    for (long i = 0; i < n; ++i) (void)!sendto(p[1], "", 0, MSG_DONTWAIT, (struct sockaddr*)&a, sizeof a);
    long long t2 = now_ns();
    struct sockaddr_storage ss;
    socklen_t l;
    for (long i = 0; i < n; ++i) {
        l = sizeof ss;
        (void)!getpeername(p[0], (struct sockaddr*)&ss, &l);
    }
    long long t3 = now_ns();
    printf("connect_ns=%.1f\nsendto_ns=%.1f\ngetpeername_ns=%.1f\n", (double)(t1 - t0) / n, (double)(t2 - t1) / n,
           (double)(t3 - t2) / n);
    return 0;
}

static atomic_int churn_stop;

/* Opens and closes sockets as fast as it can: each close frees a number the other thread's next
 * socket() may get at once. */
static void* churn(void* arg) {
    (void)arg;
    while (!atomic_load(&churn_stop)) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static int cmd_closerace(const char* ip, const char* port, const char* n_text) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) return fail("inet_pton");
    pthread_t t;
    if (pthread_create(&t, NULL, churn, NULL) != 0) return fail("pthread_create");
    long n = atol(n_text), ok = 0, escaped = 0, other = 0;
    for (long i = 0; i < n; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            ++other;
            continue;
        }
        if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) {
            ++ok;
        } else if (errno == ENETUNREACH) {
            ++escaped;
        } else {
            ++other;
        }
        close(fd);
    }
    atomic_store(&churn_stop, 1);
    pthread_join(t, NULL);
    printf("ok=%ld escaped=%ld other=%ld\n", ok, escaped, other);
    return 0;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "nbconnect") == 0) return cmd_nbconnect(argv[0], argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "afterexec") == 0) return cmd_afterexec(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "listen") == 0) return cmd_listen(argv[2]);
    if (argc == 3 && strcmp(argv[1], "hostent") == 0) return cmd_hostent(argv[2]);
    if (argc == 3 && strcmp(argv[1], "serve") == 0) return cmd_serve(argv[2]);
    if (argc == 2 && strcmp(argv[1], "udpunspec") == 0) return cmd_udpunspec();
    if (argc == 3 && strcmp(argv[1], "cost") == 0) return cmd_cost(argv[2]);
    if (argc == 5 && strcmp(argv[1], "closerace") == 0) return cmd_closerace(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: %s nbconnect NAME PORT | afterexec FD | listen PORT | serve PORT | udpunspec | hostent NAME | cost N\n", argv[0]);
    return 2;
}
