/* calib_poll.c — cpu-here's poll_share (cluster.h): the share of a core that a rank waiting
 * for a message takes from a rank computing on the same core, when a layout has more ranks
 * than cores. OpenMPI run oversubscribed (mpirun --oversubscribe) polls for progress while a
 * rank waits and calls sched_yield between polls (mpi_yield_when_idle); the scheduler keeps
 * giving the yielding rank short turns, each a context switch and a disturbance of the
 * computing rank's caches, so a pipeline rank that waits in the bubble does not leave its
 * core wholly to the others.
 *
 * Measured with two threads of this process pinned to the core the calibration runs on: one
 * runs the runtime's sgemm (mpt_matmul_forward, 768 x 256 x 768) for at least SAMPLE_S_
 * seconds of its CPU time, the other loops on sched_yield meanwhile (a waiting rank's poll
 * loop without MPI); poll_share = the yielder's CPU seconds / the pair's, the share of the
 * core the pair got that the poller took (the other jobs of a shared machine take from the
 * pair, not from this ratio), the median of ROUNDS_ rounds. Left 0 (not measured: the
 * simulator then gives a waiting rank no share) when a thread cannot be pinned. About 0.2 s.
 * Call from one thread, outside a parallel region. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "plan/cluster.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "core/kernels.h"

enum { ROUNDS_ = 5, GM_ = 768, GK_ = 256 };
static const double SAMPLE_S_ = 0.025;

static double thread_cpu_(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return 0;
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Thread CPU seconds of `runs` sgemms back to back on this thread. */
static double gemm_cpu_(float *y, const float *x, const float *w, int runs) {
    double t0 = thread_cpu_();
    for (int i = 0; i < runs; i++) mpt_matmul_forward(y, x, w, NULL, GM_, GK_, GM_);
    return thread_cpu_() - t0;
}

/* The sgemm runs on thread 0 while thread 1 loops on sched_yield, both pinned to `cpu`: the
 * share of the pair's CPU seconds the yielder took, or -1 when a thread could not be pinned. */
static double yielder_share_(float *y, const float *x, const float *w, int runs, int cpu) {
    volatile int stop = 0;
    double g = 0, yl = 0;
    int pinned = 1;
#pragma omp parallel num_threads(2) shared(stop, g, yl, pinned)
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
            if (pinned) g = gemm_cpu_(y, x, w, runs);
#pragma omp atomic write
            stop = 1;
        } else {
            double t0 = thread_cpu_();
            int s = 0;
            while (!s) {
                sched_yield();
#pragma omp atomic read
                s = stop;
            }
            yl = thread_cpu_() - t0;
        }
        if (had) sched_setaffinity(0, sizeof mine, &mine); /* the pool's thread as it was */
    }
    return pinned && g > 0 ? yl / (g + yl) : -1;
}

void mpt_cluster_measure_poll(mpt_cluster *c) {
    c->poll_share = 0;
    int cpu = sched_getcpu();
    size_t big = (size_t)GM_ * GM_;
    float *x = calloc(big, sizeof *x), *w = calloc(big, sizeof *w), *y = calloc(big, sizeof *y);
    int levels = omp_get_max_active_levels(), threads = omp_get_max_threads();
    omp_set_max_active_levels(1); /* the sgemm single-threaded inside the pair */
    omp_set_num_threads(1);
    if (x && w && y && cpu >= 0) {
        for (size_t i = 0; i < big; i++) x[i] = 1e-3f * (float)(i % 97), w[i] = 1e-3f * (float)(i % 89);
        double one_run = gemm_cpu_(y, x, w, 1); /* warm-up, and the length of one run */
        int runs = one_run > 0 ? (int)(SAMPLE_S_ / one_run) + 1 : 1;
        if (runs > 256) runs = 256;
        double r[ROUNDS_];
        int ok = 1;
        for (int i = 0; i < ROUNDS_ && ok; i++) {
            r[i] = yielder_share_(y, x, w, runs, cpu);
            ok = r[i] >= 0;
        }
        if (ok) {
            double s = mpt_cluster_median_(r, ROUNDS_);
            c->poll_share = s > 1 ? 1 : s;
        }
    }
    omp_set_max_active_levels(levels);
    omp_set_num_threads(threads);
    free(x);
    free(w);
    free(y);
}
