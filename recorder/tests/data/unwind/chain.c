/* A CPU burner whose time is spent under a known chain of its own functions, for the unwinding
 * tests: main -> chain_a -> chain_b -> chain_c -> chain_leaf, built -O2 -fomit-frame-pointer so
 * that only CFI can walk it. With an argument "sleep", chain_leaf blocks in nanosleep instead
 * (off-CPU stacks). Runs for argv[2] seconds (default 3). chain_mix is inlined into chain_leaf:
 * built with -g and its debug info split off, it must still show as a frame with its line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink;
static int sleeping;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Always inlined into chain_leaf: with debug info it is a frame of its own (the inline test). */
static inline __attribute__((always_inline)) unsigned long chain_mix(unsigned long x) {
    for (unsigned long i = 0; i < 2000000; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    }
    return x;
}

__attribute__((noinline)) void chain_leaf(unsigned long n) {
    if (sleeping) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        return;
    }
    sink += chain_mix(n);
}

/* Each level keeps some state on the stack and does work after the call, so the calls are
 * neither inlined nor tail calls. */
__attribute__((noinline)) void chain_c(unsigned long n) {
    volatile unsigned long pad[8] = {n};
    chain_leaf(n + pad[0]);
    sink += pad[1];
}

__attribute__((noinline)) void chain_b(unsigned long n) {
    volatile unsigned long pad[16] = {n};
    chain_c(n * 3 + pad[0]);
    sink += pad[2];
}

__attribute__((noinline)) void chain_a(unsigned long n) {
    volatile unsigned long pad[4] = {n};
    chain_b(n ^ pad[0]);
    sink += pad[3];
}

int main(int argc, char **argv) {
    sleeping = argc > 1 && strcmp(argv[1], "sleep") == 0;
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    double end = now() + seconds;
    unsigned long n = 0;
    while (now() < end) {
        chain_a(n++);
    }
    printf("%lu\n", (unsigned long)sink & 1);
    return 0;
}
