/* fl_gdb_server.c: the local app of the "long debugging" test (faults_link). A small HTTP/1.1
 * server on PORT (stolen from the pod under `mirrord exec --steal`) that answers ONE request and
 * exits. The answer is built in handle_request(), where the test's gdb puts its breakpoint; its
 * body is 256 KiB in which byte i is 'a' + (i % 26), after the line "held:PATH\n".
 * Prints "READY PORT" when listening and "ANSWERED BYTES" after writing the answer. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kBodyPattern = 256 * 1024 };

static char *answer;
static size_t answer_len;

/* Builds the answer to a GET of `path`. noinline + used: gdb breaks here by name. */
__attribute__((noinline, used)) void handle_request(const char *path) {
    char first[600];
    int n = snprintf(first, sizeof first, "held:%s\n", path);
    size_t body_len = (size_t)n + kBodyPattern;
    char head[200];
    int h = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
    answer_len = (size_t)h + body_len;
    answer = malloc(answer_len);
    if (answer == NULL) {
        perror("malloc");
        exit(1);
    }
    memcpy(answer, head, (size_t)h);
    memcpy(answer + h, first, (size_t)n);
    for (size_t i = 0; i < kBodyPattern; i++) answer[(size_t)h + (size_t)n + i] = (char)('a' + i % 26);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (bind(srv, (struct sockaddr *)&a, sizeof a) != 0 || listen(srv, 8) != 0) {
        perror("bind/listen");
        return 1;
    }
    printf("READY %d\n", port);
    fflush(stdout);
    int c = accept(srv, NULL, NULL);
    if (c < 0) {
        perror("accept");
        return 1;
    }
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t r = read(c, req + got, sizeof req - 1 - got);
        if (r <= 0) {
            perror("read request");
            return 1;
        }
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL) break;
    }
    char path[512] = "/";
    sscanf(req, "%*s %511s", path);
    handle_request(path);
    size_t off = 0;
    while (off < answer_len) {
        ssize_t w = write(c, answer + off, answer_len - off);
        if (w <= 0) {
            perror("write answer");
            return 1;
        }
        off += (size_t)w;
    }
    printf("ANSWERED %zu\n", answer_len);
    fflush(stdout);
    close(c);
    free(answer);
    return 0;
}
