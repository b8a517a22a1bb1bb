/* calib_poll.c — cpu-here's poll_share (cluster.h): the share of a core that a rank waiting
 * for a message takes from a rank computing on the same core, when a layout has more ranks
 * than cores. OpenMPI run oversubscribed (mpirun --oversubscribe) polls for progress while a
 * rank waits and calls sched_yield between polls (mpi_yield_when_idle); the scheduler keeps
 * giving the yielding rank short turns, each a context switch and a disturbance of the
 * computing rank's caches, so a pipeline rank that waits in the bubble does not leave its
 * core wholly to the others.
 *
 * Measured with two threads of this process pinned to the core the calibration runs on: one
 * runs the runtime's sgemm (mpt_matmul_forward, 768 x 256 x 768), the other loops on
 * sched_yield (a waiting rank's poll loop without MPI); poll_share = 1 - (the sgemm's rate
 * with the yielder / its rate alone), in wall time (what is measured is the time the core is
 * taken away, which the thread's CPU time would not show), the median of ROUNDS_ paired rounds
 * of samples of at least SAMPLE_S_ seconds (the order alternating), clamped to [0, 1]. The
 * other jobs of a shared machine slow both halves of a pair alike. Left 0 (not measured: the
 * simulator then gives a waiting rank no share) when the thread cannot be pinned. About 0.4 s
 * of wall time. Call from one thread, outside a parallel region. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "plan/cluster.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>

#include "core/kernels.h"

enum { ROUNDS_ = 5, GM_ = 768, GK_ = 256 };
static const double SAMPLE_S_ = 0.025;

/* Seconds of wall time per sgemm over runs back to back on this thread. */
static double gemm_wall_(float *y, const float *x, const float *w, int runs) {
    double t0 = omp_get_wtime();
    for (int i = 0; i < runs; i++) mpt_matmul_forward(y, x, w, NULL, GM_, GK_, GM_);
    return (omp_get_wtime() - t0) / runs;
}

/* The sgemm on thread 0 while thread 1 loops on sched_yield, both pinned to `cpu`; seconds per
 * run, or -1 when a thread could not be pinned. */
static double with_yielder_(float *y, const float *x, const float *w, int runs, int cpu) {
    volatile int stop = 0;
    double t = -1;
    int pinned = 1;
#pragma omp parallel num_threads(2) shared(stop, t, pinned)
    {
        cpu_set_t one, mine;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        int had = sched_getaffinity(0, sizeof mine, &mine) == 0;
        if (!had || sched_setaffinity(0, sizeof one, &one) != 0) {
#pragma omp atomic write
            pinned = 0;
        }
#pragma omp barrier
        if (omp_get_thread_num() == 0) {
            if (pinned) t = gemm_wall_(y, x, w, runs);
#pragma omp atomic write
            stop = 1;
        } else {
            int s = 0;
            while (!s) {
                sched_yield();
#pragma omp atomic read
                s = stop;
            }
        }
        if (had) sched_setaffinity(0, sizeof mine, &mine); /* the pool's thread as it was */
    }
    return t;
}

void mpt_cluster_measure_poll(mpt_cluster *c) {
    c->poll_share = 0;
    int cpu = sched_getcpu();
    cpu_set_t saved;
    if (cpu < 0 || sched_getaffinity(0, sizeof saved, &saved) != 0) return;
    size_t big = (size_t)GM_ * GM_;
    float *x = calloc(big, sizeof *x), *w = calloc(big, sizeof *w), *y = calloc(big, sizeof *y);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int levels = omp_get_max_active_levels(), threads = omp_get_max_threads();
    omp_set_max_active_levels(1); /* the sgemm single-threaded inside the pair */
    omp_set_num_threads(1);
    if (x && w && y && sched_setaffinity(0, sizeof one, &one) == 0) {
        for (size_t i = 0; i < big; i++) x[i] = 1e-3f * (float)(i % 97), w[i] = 1e-3f * (float)(i % 89);
        double one_run = gemm_wall_(y, x, w, 1); /* warm-up, and the length of one run */
        int runs = one_run > 0 ? (int)(SAMPLE_S_ / one_run) + 1 : 1;
        if (runs > 256) runs = 256;
        double r[ROUNDS_];
        int ok = 1;
        for (int i = 0; i < ROUNDS_ && ok; i++) {
            double alone = 0, shared = 0;
            if (i % 2) shared = with_yielder_(y, x, w, runs, cpu);
            alone = gemm_wall_(y, x, w, runs);
            if (!(i % 2)) shared = with_yielder_(y, x, w, runs, cpu);
            ok = shared > 0 && alone > 0;
            r[i] = ok ? 1.0 - alone / shared : 0;
        }
        if (ok) {
            double s = mpt_cluster_median_(r, ROUNDS_);
            c->poll_share = s < 0 ? 0 : s > 1 ? 1 : s;
        }
    }
    sched_setaffinity(0, sizeof saved, &saved);
    omp_set_max_active_levels(levels);
    omp_set_num_threads(threads);
    free(x);
    free(w);
    free(y);
}
