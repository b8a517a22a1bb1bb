/* calib_meet.c — cpu-here's meet_waste_* (cluster.h): the core time a blocking pair meeting
 * wastes when a node runs more ranks than cores (issue 13 item 5, the oversubscribed tp rows).
 *
 * Physics: a tensor-parallel rank that reaches a blocking collective waits for its partner.
 * OpenMPI run oversubscribed polls while it waits and calls sched_yield between polls. The
 * scheduler does not gang-schedule partners: when both ranks that share a core are waiting for
 * partners that share the other core, that core only spins (sched_yield finds nobody else on
 * its run queue) until a partner arrives; the computing core meanwhile runs its own two ranks
 * in turn. So per meeting, beyond the time-shared work, a rank burns some CPU seconds polling:
 * core time the replay's fine time-sharing (sim.c replay_ps_) gives to useful work. It depends
 * on how long the ranks compute between meetings (the scheduler's slice against that time).
 *
 * Measured with 2 x cores threads of this process (unpinned, like mpirun --bind-to none's
 * ranks), in pairs (0,1), (2,3), ...: each computes `g` seconds of its own CPU time (a
 * register-only FMA chain, no memory traffic), then meets its partner (a counter each; poll the
 * partner's with sched_yield between polls, as OpenMPI's oversubscribed progress loop does),
 * MEETS_ times. meet_waste at g = each thread's CPU seconds outside the work, per meeting
 * (polling; the CPU clock of the thread, so the other jobs of a shared machine, which take the
 * cores the pollers yield, do not count), the mean over the threads, median of ROUNDS_ rounds.
 * At g = 1 ms and 8 ms (cluster.h MPT_MEET_G): about 0.7 CPU seconds in all. Left 0 (not
 * measured: the simulator adds nothing) on one core or when a thread cannot be started.
 * Call from one thread, outside a parallel region. */
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
static const double ROUND_CPU_S_ = 0.03; /* work CPU seconds per thread and round */

static double thread_cpu_(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return 0;
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef float v8_ __attribute__((vector_size(32)));
static volatile float sink_;
/* n iterations of two dependent 8-wide FMA chains in registers (the asm keeps the compiler
 * from folding them) */
static void work_(long n) {
    v8_ a = {1, 1.1f, 1.2f, 1.3f, 1.4f, 1.5f, 1.6f, 1.7f}, b = a * 0.5f;
    v8_ c = {0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f, 0.999f}, d = c * 1e-3f;
    for (long k = 0; k < n; k++) {
        a = a * c + d;
        b = b * c + d;
        __asm__ volatile("" : "+x"(a), "+x"(b));
    }
    v8_ s = a + b;
    sink_ = s[0] + s[7];
}

typedef struct meet_ {
    atomic_int *count;   /* per thread: meetings reached (shared by all threads) */
    atomic_int *started; /* threads running: all start together */
    int nth, id, meets;
    long iters;          /* work_ iterations between meetings */
    double waste;        /* out: CPU seconds outside work_ per meeting */
} meet_;

static void *meet_thread_(void *arg) {
    meet_ *m = arg;
    atomic_fetch_add(m->started, 1);
    while (atomic_load(m->started) < m->nth) sched_yield();
    int partner = m->id ^ 1;
    double t0 = thread_cpu_(), work = 0;
    for (int k = 1; k <= m->meets; k++) {
        double w0 = thread_cpu_();
        work_(m->iters);
        work += thread_cpu_() - w0;
        atomic_store(&m->count[m->id], k);
        while (atomic_load(&m->count[partner]) < k) sched_yield();
    }
    m->waste = (thread_cpu_() - t0 - work) / m->meets;
    return NULL;
}

/* One round of nth threads meeting `meets` times after `iters` iterations each: the threads'
 * mean waste per meeting, or -1 when a thread could not be started. */
static double round_(int nth, int meets, long iters) {
    atomic_int count[MAX_THREADS_], started = 0;
    meet_ m[MAX_THREADS_];
    pthread_t th[MAX_THREADS_];
    int ok = 1, n_started = 0;
    for (int i = 0; i < nth; i++) atomic_init(&count[i], 0);
    for (int i = 0; i < nth; i++) {
        m[i] = (meet_){count, &started, nth, i, meets, iters, 0};
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
    double sum = 0;
    for (int i = 0; i < n_started; i++) {
        pthread_join(th[i], NULL);
        sum += m[i].waste;
    }
    return ok ? sum / nth : -1;
}

void mpt_cluster_measure_meet(mpt_cluster *c) {
    for (int i = 0; i < MPT_MEET_POINTS; i++) c->meet_waste[i] = 0;
    int nth = 2 * c->cores;
    if (c->cores < 2 || nth > MAX_THREADS_) return;
    /* work_ iterations per CPU second on this thread (median of 5 samples of ~1 ms) */
    double ips[5];
    for (int i = 0; i < 5; i++) {
        double t0 = thread_cpu_();
        work_(100000);
        double t = thread_cpu_() - t0;
        ips[i] = t > 0 ? 100000 / t : 0;
    }
    double rate = mpt_cluster_median_(ips, 5);
    if (!(rate > 0)) return;
    for (int gi = 0; gi < MPT_MEET_POINTS; gi++) {
        double g = MEET_G_[gi], r[ROUNDS_];
        int meets = (int)(ROUND_CPU_S_ / g) + 2;
        for (int k = 0; k < ROUNDS_; k++) {
            r[k] = round_(nth, meets, (long)(g * rate));
            if (r[k] < 0) return;
        }
        double w = mpt_cluster_median_(r, ROUNDS_);
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
