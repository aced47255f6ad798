/* leak_probe.c: the app of the layer_leaks test, run under `mirrord exec` inside valgrind
 * memcheck with the layer preloaded. It exercises the layer's main paths once each and exits:
 * remote file reads (open/read/close of /app/hello.txt and of /app/big.bin, fopen/fgets of
 * /app/config.txt, stat, opendir/readdir of /app/dir), DNS (getaddrinfo of the service's short
 * and full names, a missing name), outgoing TCP (an echo round trip to the service's port 7),
 * fork (the child reads a remote file through its own layer session) and, given "exec", an execve
 * of itself with "child" (the new image adopts the layer's connection).
 * Every answer is checked against what only the pod/cluster can give, so a probe that ran without
 * the layer (or with a broken one) exits non-zero: the test cannot pass on a dormant layer.
 * Prints "probe ok" and exits 0 when every step passed; "probe FAIL: <step>" and 1 otherwise.
 * Given "leak", it loses one 4096-byte block on purpose (the test's control run).
 * Usage: leak_probe [exec|child|leak]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SERVICE_IP "10.250.0.3" /* the harness's service (tests/harness/README.md) */
#define BIG_SIZE (3 * 1024 * 1024)

static int fail(const char* step) {
    printf("probe FAIL: %s\n", step);
    fflush(stdout);
    return 1;
}

/* Reads a whole file with open/read/close into buf (at most cap bytes); returns its size or -1. */
static long read_whole(const char* path, char* buf, long cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long total = 0;
    ssize_t n;
    while (total < cap && (n = read(fd, buf + total, (size_t)(cap - total))) > 0) total += n;
    close(fd);
    return total;
}

static int files(void) {
    char small[256];
    long n = read_whole("/app/hello.txt", small, (long)sizeof small - 1);
    if (n < 0) return fail("open /app/hello.txt");
    small[n] = '\0';
    if (strcmp(small, "hello from the pod\n") != 0) return fail("/app/hello.txt content");

    char* big = malloc(BIG_SIZE + 1);
    if (big == NULL) return fail("malloc");
    n = read_whole("/app/big.bin", big, BIG_SIZE + 1);
    free(big);
    if (n != BIG_SIZE) return fail("/app/big.bin size");

    FILE* f = fopen("/app/config.txt", "re");
    if (f == NULL) return fail("fopen /app/config.txt");
    char line[256];
    int ok = fgets(line, sizeof line, f) != NULL && strstr(line, "mirrord-test-pod config") != NULL;
    fclose(f);
    if (!ok) return fail("/app/config.txt content");

    struct stat st;
    if (stat("/app/big.bin", &st) != 0 || st.st_size != BIG_SIZE) return fail("stat /app/big.bin");

    DIR* d = opendir("/app/dir");
    if (d == NULL) return fail("opendir /app/dir");
    int entries = 0;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++entries;
    }
    closedir(d);
    if (entries != 4) return fail("/app/dir entries");
    return 0;
}

static int resolves_to(const char* name, const char* want) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = NULL;
    if (getaddrinfo(name, "7", &hints, &res) != 0) return 0;
    int found = 0;
    for (struct addrinfo* p = res; p != NULL; p = p->ai_next) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in*)p->ai_addr)->sin_addr, text, sizeof text);
        if (strcmp(text, want) == 0) found = 1;
    }
    freeaddrinfo(res);
    return found;
}

static int dns(void) {
    if (!resolves_to("echo", SERVICE_IP)) return fail("getaddrinfo echo");
    if (!resolves_to("echo.default.svc.cluster.local", SERVICE_IP)) return fail("getaddrinfo echo.default.svc.cluster.local");
    struct addrinfo* res = NULL;
    int rc = getaddrinfo("no-such-name.default.svc.cluster.local", "7", NULL, &res);
    if (rc == 0) freeaddrinfo(res);
    if (rc != EAI_NONAME) return fail("getaddrinfo of a missing name");
    return 0;
}

static int tcp(void) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(7);
    inet_pton(AF_INET, SERVICE_IP, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) return fail("connect to the service's echo port");
    static const char msg[] = "leak probe echo";
    char back[sizeof msg];
    size_t got = 0;
    int ok = write(fd, msg, sizeof msg) == (ssize_t)sizeof msg;
    while (ok && got < sizeof msg) {
        ssize_t n = read(fd, back + got, sizeof msg - got);
        if (n <= 0) ok = 0;
        else got += (size_t)n;
    }
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ok = ok && getpeername(fd, (struct sockaddr*)&peer, &len) == 0 && peer.sin_addr.s_addr == a.sin_addr.s_addr;
    close(fd);
    if (!ok || memcmp(back, msg, sizeof msg) != 0) return fail("echo round trip / getpeername");
    return 0;
}

static int forked(void) {
    pid_t p = fork();
    if (p < 0) return fail("fork");
    if (p == 0) {
        char small[64];
        long n = read_whole("/app/hello.txt", small, (long)sizeof small);
        _exit(n == (long)strlen("hello from the pod\n") ? 0 : 1);
    }
    int status = 0;
    if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail("forked child's remote read");
    return 0;
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "child") == 0) {
        /* The exec'd image: one remote read and one lookup through the adopted connection. */
        if (files() != 0 || dns() != 0) return 1;
        printf("probe child ok\n");
        return 0;
    }
    if (files() != 0 || dns() != 0 || tcp() != 0 || forked() != 0) return 1;
    if (strcmp(mode, "leak") == 0) {
        /* The test's control: one 4096-byte block lost on purpose (volatile: the compiler keeps it). */
        void* volatile lost = malloc(4096);
        lost = NULL;
        (void)lost;
    }
    if (strcmp(mode, "exec") == 0) {
        fflush(stdout);
        pid_t p = fork();
        if (p < 0) return fail("fork for exec");
        if (p == 0) {
            execl(argv[0], argv[0], "child", (char*)NULL); /* argv[0] is an absolute path */
            _exit(127);
        }
        int status = 0;
        if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail("exec'd child");
    }
    printf("probe ok\n");
    return 0;
}
