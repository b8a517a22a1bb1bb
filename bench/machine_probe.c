/* machine_probe.c — the machine-state probe of plan/probe.h as a program, for
 * bench/plan_vs_measured.sh to run right before and right after every measured run (issue 13
 * item 5): the FMA loop of cpu-here's peak (core/peak.h), one thread alone, then one thread per
 * core at once, rates in each thread's CPU seconds. About 0.1 s on an idle machine.
 * Prints one JSON line (GFLOP/s per thread):
 *   probe_solo       one thread alone
 *   probe_pair       every core's thread at once, the mean per thread
 *   probe_pair_min   the slowest of them
 *   probe_pair_wall  per thread over wall seconds (other jobs' share of the cores included)
 *   probe_s          wall seconds the probe took
 * Usage: bench_machine_probe [SECONDS_PER_PHASE]   (default 0.04)
 *        bench_machine_probe --watch N [SECONDS]   N probes back to back, one line each, with
 *                                                  the wall clock and /proc/stat's steal ticks
 *                                                  (the hyperthread check of src/plan/README.md) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plan/probe.h"

/* /proc/stat's steal ticks (the aggregate cpu line's 8th value), -1 when unreadable */
static long long steal_(void) {
    FILE *f = fopen("/proc/stat", "r");
    long long v[8] = {0};
    int n = f ? fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
                       &v[3], &v[4], &v[5], &v[6], &v[7])
              : 0;
    if (f) fclose(f);
    return n == 8 ? v[7] : -1;
}

static void print_(const mpt_probe *p, int watch) {
    if (watch) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        printf("{\"t\": %.3f, \"steal_ticks\": %lld, ", (double)t.tv_sec + 1e-9 * t.tv_nsec,
               steal_());
    } else {
        printf("{");
    }
    printf("\"probe_solo\": %.2f, \"probe_pair\": %.2f, \"probe_pair_min\": %.2f, "
           "\"probe_pair_wall\": %.2f, \"probe_s\": %.3f}\n",
           1e-9 * p->solo, 1e-9 * p->pair, 1e-9 * p->pair_min, 1e-9 * p->pair_wall, p->wall_s);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int watch = 0, a = 1;
    if (argc > 2 && strcmp(argv[1], "--watch") == 0) {
        watch = atoi(argv[2]);
        a = 3;
        if (watch < 1) {
            fprintf(stderr, "machine_probe: --watch needs a count of at least 1\n");
            return 2;
        }
    }
    double s = argc > a ? atof(argv[a]) : 0.04;
    if (!(s > 0 && s <= 10)) {
        fprintf(stderr, "machine_probe: seconds per phase must be in (0, 10], got '%s'\n",
                argc > a ? argv[a] : "");
        return 2;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    mpt_probe p;
    for (int i = 0; i < (watch ? watch : 1); i++) {
        mpt_probe_fma(&p, cores > 0 ? (int)cores : 1, s);
        print_(&p, watch);
    }
    return p.solo > 0 ? 0 : 1;
}
