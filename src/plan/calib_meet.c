/* calib_meet.c — cpu-here's meet_waste_* (cluster.h): the core time a blocking pair meeting
 * wastes when a node runs more ranks than cores (issue 13 item 5, the oversubscribed tp rows).
 *
 * Physics: a tensor-parallel rank that reaches a blocking collective waits for its partner.
 * With more ranks than cores the runtime's wait (comm/comm_wait.c) polls MPI_Test for 5 us,
 * then naps, from 1 us doubling up to 1 ms. The scheduler does not gang-schedule partners: a
 * rank waits until its partner has been scheduled again and arrives, then wakes up to a nap's
 * length late and may find its core taken; while both ranks of a core nap, the core idles.
 * So per meeting the node loses core time that the replay's fine time-sharing (sim.c
 * replay_ps_) gives to useful work. It depends on how long the ranks compute between meetings
 * (against the scheduler's slice and the naps).
 *
 * Measured with 2 x cores threads of this process (unpinned, like mpirun --bind-to none's
 * ranks), in pairs (0,1), (2,3), ...: each computes `g` seconds of its own CPU time (a
 * register-only FMA chain, no memory traffic), then meets its partner (a counter each; waiting
 * as comm_wait.c waits), MEETS_ times; and the same rounds without the meetings, back to back,
 * the order alternating. meet_waste at g = the wall difference per meeting x cores / threads
 * (core seconds lost per rank and meeting), the median of ROUNDS_ pairs, 0 when negative.
 * Wall seconds, unlike the other cpu-here figures: the loss is idle cores, which CPU clocks do
 * not see; on a loaded machine the other jobs' share of the cores inflates it (it is an idle
 * machine's figure). At g = 1 ms and 8 ms (cluster.h MPT_MEET_G1, _G8): about 0.5 CPU
 * seconds in all. bench/oversub_meet.c measures the same with MPI ranks and the runtime's own
 * comm layer. Left 0 (not measured: the simulator adds nothing) on one core or when a thread
 * cannot be started. Call from one thread, outside a parallel region. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "plan/cluster.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

enum { ROUNDS_ = 3, MAX_THREADS_ = 64 };
static const double MEET_G_[MPT_MEET_POINTS] = {MPT_MEET_G1, MPT_MEET_G8};
static const double ROUND_CPU_S_ = 0.02; /* work CPU seconds per thread and round */
static const double SPIN_S_ = 5e-6;       /* comm.c's default spin (more ranks than cores) */

static double thread_cpu_(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return 0;
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef float v8_ __attribute__((vector_size(32)));
static volatile float sink_;
/* n iterations of two dependent 8-wide FMA chains in registers (the asm keeps the compiler
 * from folding them) */
void mpt_cluster_fma_work(long n) {
    v8_ a = {1, 1.1f, 1.2f, 1.3f, 1.4f, 1.5f, 1.6f, 1.7f}, b = a * 0.5f;
    v8_ c = {0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f}, d = c * 1e-3f;
    for (long k = 0; k < n; k++) {
        a = a * c + d;
        b = b * c + d;
#if defined(__AVX__)
        __asm__ volatile("" : "+x"(a), "+x"(b));
#else /* no 32-byte registers (the valgrind build has no -march=native): kept in memory */
        __asm__ volatile("" : "+m"(a), "+m"(b));
#endif
    }
    v8_ s = a + b;
    sink_ = s[0] + s[7];
}

typedef struct meet_ {
    atomic_int *count;   /* per thread: meetings reached (shared by all threads) */
    atomic_int *started; /* threads running: all start together */
    int nth, id, meets, meet;
    long iters;          /* work_ iterations between meetings */
} meet_;

static double wall_(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The runtime's wait (comm/comm_wait.c with more ranks than cores): poll for SPIN_S_, then nap
 * from 1 us doubling up to 1 ms between polls, until the partner has reached meeting k. */
static void wait_(const atomic_int *partner, int k) {
    double t0 = wall_();
    long nap = 1000;
    while (atomic_load(partner) < k) {
        if (wall_() - t0 < SPIN_S_) continue;
        struct timespec ts = {0, nap};
        nanosleep(&ts, NULL);
        nap = nap * 2 > 1000000 ? 1000000 : nap * 2;
    }
}

static void *meet_thread_(void *arg) {
    meet_ *m = arg;
    atomic_fetch_add(m->started, 1);
    while (atomic_load(m->started) < m->nth) sched_yield();
    for (int k = 1; k <= m->meets; k++) {
        mpt_cluster_fma_work(m->iters);
        if (!m->meet) continue;
        atomic_store(&m->count[m->id], k);
        wait_(&m->count[m->id ^ 1], k);
    }
    return NULL;
}

/* One round of nth threads computing `meets` pieces of `iters` iterations, each followed by a
 * meeting when `meet`: wall seconds per piece (the threads start together), or -1 when a
 * thread could not be started. */
static double round_(int nth, int meets, long iters, int meet) {
    atomic_int count[MAX_THREADS_], started = 0;
    meet_ m[MAX_THREADS_];
    pthread_t th[MAX_THREADS_];
    int ok = 1, n_started = 0;
    for (int i = 0; i < nth; i++) atomic_init(&count[i], 0);
    double t0 = wall_();
    for (int i = 0; i < nth; i++) {
        m[i] = (meet_){count, &started, nth, i, meets, meet, iters};
        if (pthread_create(&th[i], NULL, meet_thread_, &m[i]) != 0) {
            ok = 0;
            break;
        }
        n_started++;
    }
    if (!ok) { /* release the started ones: no partner will come, so end their meetings */
        atomic_fetch_add(&started, nth);
        for (int i = 0; i < nth; i++) atomic_store(&count[i], meets);
    }
    for (int i = 0; i < n_started; i++) pthread_join(th[i], NULL);
    return ok ? (wall_() - t0) / meets : -1;
}

void mpt_cluster_measure_meet(mpt_cluster *c) {
    for (int i = 0; i < MPT_MEET_POINTS; i++) c->meet_waste[i] = 0;
    int nth = 2 * c->cores;
    if (c->cores < 2 || nth > MAX_THREADS_) return;
    /* work_ iterations per CPU second on this thread (median of 5 samples of ~1 ms) */
    double ips[5];
    for (int i = 0; i < 5; i++) {
        double t0 = thread_cpu_();
        mpt_cluster_fma_work(100000);
        double t = thread_cpu_() - t0;
        ips[i] = t > 0 ? 100000 / t : 0;
    }
    double rate = mpt_cluster_median_(ips, 5);
    if (!(rate > 0)) return;
    for (int gi = 0; gi < MPT_MEET_POINTS; gi++) {
        double g = MEET_G_[gi], d[ROUNDS_];
        int meets = (int)(ROUND_CPU_S_ / g) + 2;
        long iters = (long)(g * rate);
        for (int k = 0; k < ROUNDS_; k++) { /* with and without meetings, order alternating */
            double a = round_(nth, meets, iters, k % 2), b = round_(nth, meets, iters, !(k % 2));
            if (a < 0 || b < 0) return;
            d[k] = (k % 2 ? a - b : b - a) * c->cores / nth;
        }
        double w = mpt_cluster_median_(d, ROUNDS_);
        c->meet_waste[gi] = w > 0 ? w : 0;
    }
}

double mpt_cluster_meet_waste(const mpt_cluster *c, double g) {
    const double *gs = MEET_G_, *w = c->meet_waste;
    if (!(g > 0)) return 0;
    if (g <= gs[0]) return w[0];
    if (g >= gs[MPT_MEET_POINTS - 1]) return w[MPT_MEET_POINTS - 1];
    for (int i = 1; i < MPT_MEET_POINTS; i++)
        if (g <= gs[i]) { /* linear in log g between the points */
            double f = log(g / gs[i - 1]) / log(gs[i] / gs[i - 1]);
            return w[i - 1] + f * (w[i] - w[i - 1]);
        }
    return w[MPT_MEET_POINTS - 1];
}
