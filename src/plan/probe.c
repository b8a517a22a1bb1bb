/* probe.c — the machine-state probe (see probe.h). */
#include "plan/probe.h"

#include <omp.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/peak.h"

enum { BLOCK_ = 32 }; /* mpt_peak_fma_block iterations between clock reads: about 70 us */

static double thread_cpu_(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return omp_get_wtime();
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs blocks on the calling thread until it has run `s` CPU seconds and `s` wall seconds have
 * passed since w0, and then on until *done reaches n (the other threads of its phase are
 * through too: all keep computing to the end). Its FLOPs, CPU and wall seconds into out[3]. */
static void phase_(double w0, double s, atomic_int *done, int n, double *out) {
    double flops = 0, c0 = thread_cpu_(), cpu = 0, wall = 0;
    int counted = 0;
    for (;;) {
        double f = mpt_peak_fma_block(BLOCK_);
        if (f <= 0) break; /* no AVX2+FMA */
        flops += f;
        cpu = thread_cpu_() - c0;
        wall = omp_get_wtime() - w0;
        if (!counted && cpu >= s && wall >= s) {
            counted = 1;
            atomic_fetch_add(done, 1);
        }
        if (counted && atomic_load(done) >= n) break;
    }
    if (!counted) atomic_fetch_add(done, 1);
    out[0] = flops, out[1] = cpu, out[2] = wall;
}

double mpt_probe_fma_solo(double seconds) {
    if (!(seconds > 0)) seconds = 0.04;
    atomic_int done = 0;
    double r[3];
    phase_(omp_get_wtime(), seconds, &done, 1, r);
    return r[1] > 0 ? r[0] / r[1] : 0;
}

void mpt_probe_fma(mpt_probe *p, int threads, double seconds) {
    memset(p, 0, sizeof *p);
    if (threads < 1) threads = 1;
    if (!(seconds > 0)) seconds = 0.04;
    double t0 = omp_get_wtime();
    mpt_peak_fma_block(BLOCK_); /* warm-up: the vector units' clock state */
    p->solo = mpt_probe_fma_solo(seconds);
    atomic_int done = 0;
    double sum = 0, sum_wall = 0, lo = 0;
    int n = 0;
    atomic_store(&done, 0);
#pragma omp parallel num_threads(threads) reduction(+ : sum, sum_wall, n)
    {
        int team = omp_get_num_threads();
        double q[3];
        double w0;
#pragma omp barrier
        w0 = omp_get_wtime();
        phase_(w0, seconds, &done, team, q);
        double rc = q[1] > 0 ? q[0] / q[1] : 0, rw = q[2] > 0 ? q[0] / q[2] : 0;
        sum += rc, sum_wall += rw, n += 1;
#pragma omp critical(mpt_probe_min)
        if (lo == 0 || rc < lo) lo = rc;
    }
    p->threads = n;
    p->pair = n > 0 ? sum / n : 0;
    p->pair_wall = n > 0 ? sum_wall / n : 0;
    p->pair_min = lo;
    p->wall_s = omp_get_wtime() - t0;
}
