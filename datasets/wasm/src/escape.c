/* escape: tries to leave its sandbox and reports what happened, one line per attempt.
   Run it with an input directory mapped at /data. Every attempt must fail (or stay inside). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void try_open(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    printf("fopen(%s, %s): %s\n", path, mode, f ? "OPENED" : strerror(errno));
    if (f) fclose(f);
}

int main(void) {
    try_open("/etc/passwd", "r");
    try_open("/tmp/../etc/passwd", "r");
    try_open("/data/../../etc/passwd", "r");
    try_open("/proc/self/environ", "r");
    try_open("/data/injected.txt", "w");
    try_open("/tmp/scratch.txt", "w");
    DIR *d = opendir("/");
    printf("opendir(/): %s\n", d ? "OPENED" : strerror(errno));
    if (d) closedir(d);
    printf("rename(/data/x, /tmp/x): %s\n", rename("/data/x", "/tmp/x") ? strerror(errno) : "OK");
    printf("symlink: %s\n", symlink("/etc/passwd", "/tmp/link") ? strerror(errno) : "OK");
    int n = 0;
    for (char **e = environ; e && *e; e++) n++;
    printf("environ: %d variables, HOME=%s\n", n, getenv("HOME") ? getenv("HOME") : "(unset)");
    return 0;
}
