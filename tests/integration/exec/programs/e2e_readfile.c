/* e2e_readfile.c: the gdb exec end-to-end test's debuggee (tests/integration/exec/). Built with
 * -g -O0. It reads the file given as argv[1] (a pod path under `mirrord exec`) with stdio and
 * prints `content=<text>` so the test sees gdb's breakpoint AND the program's correct output. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "/app/hello.txt";
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        printf("error=fopen %s: %s\n", path, strerror(errno));
        return 1;
    }
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    printf("content=%.*s", (int)n, buf);
    return 0;
}
