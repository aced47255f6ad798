/* probe.c: a plain C program run under the layer by it_layer_files. Each subcommand exercises
 * one family of libc calls on a path and prints what it saw, one "key=value" per line. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int cmd_read(const char* path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("open_errno=%d\n", errno); return 1; }
    struct stat st;
    fstat(fd, &st);
    printf("size=%lld mode=%o\n", (long long)st.st_size, st.st_mode & 07777);
    char buf[64] = {0};
    ssize_t n = pread(fd, buf, 5, 1);
    printf("pread=%.*s\n", (int)n, buf);
    int d = dup(fd);
    lseek(d, 0, SEEK_SET);
    n = read(d, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("read=%s\n", buf);
    close(fd);
    close(d);
    FILE* f = fopen(path, "r");
    if (f == NULL) { printf("fopen_errno=%d\n", errno); return 1; }
    char line[64] = {0};
    fgets(line, sizeof line, f);
    fclose(f);
    printf("fgets=%s", line);
    struct statx sx;
    if (syscall(SYS_statx, AT_FDCWD, path, 0, STATX_BASIC_STATS, &sx) == 0) printf("statx_size=%llu\n", (unsigned long long)sx.stx_size);
    printf("access=%d\n", access(path, R_OK));
    return 0;
}

static int cmd_write(const char* path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { printf("open_errno=%d\n", errno); return 1; }
    ssize_t w = write(fd, "written-by-probe\n", 17);
    printf("write=%zd\n", w);
    struct stat st;
    fstat(fd, &st);
    printf("fstat_size=%lld\n", (long long)st.st_size);
    close(fd);
    char p2[4096];
    snprintf(p2, sizeof p2, "%s.stdio", path);
    FILE* f = fopen(p2, "w");
    if (f == NULL) { printf("fopen_errno=%d\n", errno); return 1; }
    fprintf(f, "stdio %d\n", 42);
    printf("fclose=%d\n", fclose(f));
    return 0;
}

static int cmd_ls(const char* path) {
    DIR* d = opendir(path);
    if (d == NULL) { printf("opendir_errno=%d\n", errno); return 1; }
    struct dirent* e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') { printf("entry=%s\n", e->d_name); ++n; }
    }
    printf("dirfd_ok=%d\n", dirfd(d) >= 0);
    closedir(d);
    printf("count=%d\n", n);
    return 0;
}

static int cmd_tree(const char* path) {
    char p[4096];
    snprintf(p, sizeof p, "%s/newdir", path);
    printf("mkdir=%d\n", mkdir(p, 0755));
    struct stat st;
    printf("isdir=%d\n", stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    printf("rmdir=%d\n", rmdir(p));
    printf("gone=%d\n", stat(p, &st) != 0 && errno == ENOENT);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(argv[1], "read") == 0) return cmd_read(argv[2]);
    if (strcmp(argv[1], "write") == 0) return cmd_write(argv[2]);
    if (strcmp(argv[1], "ls") == 0) return cmd_ls(argv[2]);
    if (strcmp(argv[1], "tree") == 0) return cmd_tree(argv[2]);
    return 2;
}
