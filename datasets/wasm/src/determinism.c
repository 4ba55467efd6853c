/* determinism: prints everything a guest could use to tell two hosts apart: clocks (before
   and after a sleep), random bytes, its argv and environment, a sorted-or-not directory
   listing, file timestamps and NaN bit patterns. Identical on every honest worker. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t bits(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static uint32_t bits32(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

int main(int argc, char **argv) {
    struct timespec rt, mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    printf("realtime %lld.%09ld\nmonotonic %lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec,
           (long long)mono.tv_sec, mono.tv_nsec);
    struct timespec nap = {0, 5000000};
    nanosleep(&nap, NULL);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    printf("after 5ms sleep %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
    printf("time() %lld\n", (long long)time(NULL));

    unsigned char r[16];
    if (getentropy(r, sizeof r) == 0) {
        printf("random ");
        for (int i = 0; i < 16; i++) printf("%02x", r[i]);
        printf("\n");
    }
    for (int i = 0; i < argc; i++) printf("argv[%d] %s\n", i, argv[i]);
    int n = 0;
    for (char **e = environ; e && *e; e++) printf("env %s\n", *e), n++;
    printf("env count %d\n", n);

    const char *names[] = {"/tmp/zeta", "/tmp/alpha", "/tmp/mid"};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(names[i], "w");
        if (f) fputs(names[i], f), fclose(f);
    }
    DIR *d = opendir("/tmp");
    struct dirent *ent;
    printf("ls /tmp:");
    while (d && (ent = readdir(d))) printf(" %s", ent->d_name);
    printf("\n");
    if (d) closedir(d);
    struct stat st;
    if (stat("/tmp/alpha", &st) == 0)
        printf("stat /tmp/alpha size %lld mtime %lld ino %llu\n", (long long)st.st_size,
               (long long)st.st_mtime, (unsigned long long)st.st_ino);

    volatile double zero = 0.0, one = 1.0, minus = -1.0;
    double payload;
    uint64_t pbits = 0x7ff4dead0000beefULL; /* a signalling NaN with a payload */
    memcpy(&payload, &pbits, sizeof payload);
    volatile double vp = payload;
    volatile float fz = 0.0f;
    printf("nan 0/0 %016llx\n", (unsigned long long)bits(zero / zero));
    printf("nan sqrt(-1) %016llx\n", (unsigned long long)bits(sqrt(minus)));
    printf("nan payload*1 %016llx\n", (unsigned long long)bits(vp * one));
    printf("nan -(0/0)+1 %016llx\n", (unsigned long long)bits(-(zero / zero) + one));
    printf("nanf 0/0 %08x\n", (unsigned)bits32(fz / fz));
    return 0;
}
