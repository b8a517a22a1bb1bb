/* probe.h — a physical reading of the machine's state, cheap enough to take right before and
 * right after every measured run (bench/plan_vs_measured.sh, issue 13 item 5): the rate of the
 * FMA loop cpu-here's peak_fp32 is measured with (core/peak.h mpt_peak_fma_block: independent
 * register-only FMA chains, no memory traffic), timed in each thread's own CPU seconds, so that
 * other jobs on the cores (which take the thread off its core) do not lower it, while a busy
 * sibling hyperthread of the host core (which shares the FMA units with a running thread)
 * does. Two phases:
 *   solo   one thread, the others idle
 *   pair   `threads` threads at once (one per core: both vCPUs of this machine), each on its
 *          own core if the scheduler gives it one; the phase lasts until every thread has run
 *          long enough, all of them computing the whole time
 * pair / solo reads about 1 when the cores are physically separate and 0.5-0.6 when the host
 * runs the two vCPUs on the two hardware threads of one core; a pair and a solo both low mean
 * someone else's work on the host siblings. Not thread-safe; call outside a parallel region. */
#ifndef MPT_PROBE_H
#define MPT_PROBE_H

typedef struct mpt_probe {
    double solo;      /* FLOP/s of one thread alone, over its thread CPU seconds */
    double pair;      /* FLOP/s per thread, the mean over the threads running at once (CPU s) */
    double pair_min;  /* the slowest of those threads' */
    double pair_wall; /* FLOP/s per thread over wall seconds: what other work on the cores took
                       * included (on an idle machine about `pair`) */
    double wall_s;    /* wall seconds the probe took */
    int threads;      /* threads the pair phase ran (OpenMP may give fewer than asked) */
} mpt_probe;

/* Fills p. Each phase lasts at least `seconds` of wall time and `seconds` of every thread's CPU
 * time (so, on a loaded machine, longer in wall time: about seconds x load / cores). threads
 * < 1 is taken as 1; seconds <= 0 as 0.04. Rates are 0 when the CPU has no AVX2+FMA. */
void mpt_probe_fma(mpt_probe *p, int threads, double seconds);
/* The solo phase alone: FLOP/s of the calling thread over its CPU seconds, running at least
 * `seconds` of CPU and of wall time (<= 0: 0.04). cpu-here's peak_fp32 (cluster.c). */
double mpt_probe_fma_solo(double seconds);

#endif
