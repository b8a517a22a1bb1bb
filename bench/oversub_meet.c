/* oversub_meet.c — what a blocking pair meeting costs when a node runs more ranks than cores
 * (issue 13 item 5: the oversubscribed tp rows). R ranks (every rank this mpirun started) form
 * pairs (0,1), (2,3), ... as tp 2 groups do; each rank computes a fixed amount of work, then
 * meets its partner in a blocking all-reduce of `BYTES` through the runtime's own comm layer
 * (mpt_iallreduce_sum + mpt_wait, as the tensor-parallel layers post and wait: comm_wait.c
 * polls MPI_Test for a 5 us spin, then naps from 1 us doubling to 1 ms; `train` sets a 50 ms
 * spin when every rank has a core, and so does this with R <= C), and again, M times. On C
 * cores with perfect time-sharing a meeting interval takes max(1, R/C) x work of wall time;
 * without gang scheduling a rank that reaches the meeting first naps until its partner has
 * been scheduled again and arrives, and wakes up to a nap's length late; while both ranks of a
 * core nap, the core idles.
 *
 * Work: two dependent 8-wide FMA chains in registers (no memory traffic, so cache and memory
 * sharing do not enter), its length set so that one rank alone takes `g` ms of CPU (measured
 * on every rank before the timed part, median of 5, the slowest rank's rate).
 * Printed per granularity g (rank 0, one line each):
 *   meet            wall seconds per work piece with its meeting (median of ROUNDS rounds)
 *   nomeet          the same work without the meetings (rounds interleaved with the meeting
 *                   ones): the time-shared baseline as this machine delivers it (under load
 *                   the other jobs' share included); gap and waste are taken against it
 *   ideal           max(1, R/C) x the solo work (C = cores this process may run on)
 *   gap             meet - nomeet: the meetings' extra wall time per meeting
 *   waste           gap x min(R, C) / R: core-seconds lost per rank per meeting (the cores
 *                   idle or polling while a rank waits for a partner who is off its core)
 *   poll_cpu        each rank's CPU seconds outside its work per meeting, the mean over the
 *                   ranks (polling and the all-reduce's own copies)
 * Run: mpirun --oversubscribe --bind-to none --mca btl self,vader -np 4 build/bench/bench_oversub_meet
 *      (and -np 2); arguments: granularities in ms (default 0.1 0.3 1 3 10), or --json (below). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "plan/cluster.h"

enum { ROUNDS = 5, BYTES = 65536 };

static double wall_(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double cpu_(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}
static double median_(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_);
    return v[n / 2];
}

/* One round of M meetings after n iterations of work each: this rank's CPU seconds outside the
 * work per meeting (polling and the all-reduce's own copies). */
/* One meeting: the runtime's all-reduce request and its wait (comm/comm_wait.c: MPI_Test in a
 * short spin, then naps backing off from 1 us to 1 ms), as the tp layers wait. */
static void meet_(mpt_comm *pair, float *buf) {
    mpt_req q;
    mpt_error err;
    if (mpt_iallreduce_sum(pair, buf, BYTES / sizeof(float), &q, &err) != MPT_OK ||
        mpt_wait(&q, &err) != MPT_OK) {
        fprintf(stderr, "oversub_meet: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* One round of M work pieces of n iterations, each followed by a meeting when `meet`: the wall
 * seconds per piece, the slowest rank's (the rounds start together). */
static double round_(mpt_comm *pair, float *buf, long n, int M, int meet) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = wall_();
    for (int k = 0; k < M; k++) {
        mpt_cluster_fma_work(n);
        if (meet) meet_(pair, buf);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return (wall_() - t0) / M;
}

/* --json: the calibration's figures (bench/plan_vs_measured.sh runs this with 2 x cores ranks
 * beside the ping-pong): meet_waste at 1 and 8 ms of work (plan/calib_meet.c's names): per
 * pair of rounds (with and without the meetings, back to back, the order alternating) the
 * wall difference per meeting x cores / ranks, the median of 3 pairs (0 when negative);
 * about 0.02 s of work per rank and round (about 1 CPU-s in all with mpirun's start). Wall seconds: the cores left idle while ranks nap
 * are the loss; under load the other jobs' share inflates it (an idle machine's figure). */
static void json_(mpt_comm *pair, float *buf, double ips, int rank, int R, int C) {
    const double gs[2] = {1e-3, 8e-3};
    double out[2];
    for (int gi = 0; gi < 2; gi++) {
        double d[3];
        int M = (int)(0.02 / gs[gi]) + 2;
        long n = (long)(gs[gi] * ips);
        for (int k = 0; k < 3; k++) {
            double a = round_(pair, buf, n, M, k % 2), b = round_(pair, buf, n, M, !(k % 2));
            d[k] = (k % 2 ? a - b : b - a) * (R < C ? R : C) / R;
        }
        out[gi] = median_(d, 3);
        if (out[gi] < 0) out[gi] = 0;
    }
    if (rank == 0) printf("{\"meet_waste_1ms\": %.6g, \"meet_waste_8ms\": %.6g}\n", out[0], out[1]);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, R;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    cpu_set_t cs;
    int C = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : 1;
    MPI_Allreduce(MPI_IN_PLACE, &C, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    mpt_comm world, pair;
    mpt_error err;
    if (mpt_comm_world(&world, &err) != MPT_OK ||
        mpt_comm_split(&world, rank / 2, rank, "tp", &pair, &err) != MPT_OK) {
        fprintf(stderr, "oversub_meet: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (R <= C) mpt_comm_set_spin(0.05); /* as `train` sets it with a core per rank */
    float *buf = calloc(BYTES / sizeof(float), sizeof(float));
    /* iterations per second of work_, on this rank's CPU time (median of 5 samples) */
    double rate[5];
    long n0 = 200000;
    for (int i = 0; i < 5; i++) {
        double t0 = cpu_();
        mpt_cluster_fma_work(n0);
        rate[i] = (double)n0 / (cpu_() - t0);
    }
    double ips = median_(rate, 5);
    MPI_Allreduce(MPI_IN_PLACE, &ips, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    if (argc > 1 && strcmp(argv[1], "--json") == 0) {
        json_(&pair, buf, ips, rank, R, C);
        free(buf);
        mpt_comm_free(&pair);
        MPI_Finalize();
        return 0;
    }
    double gms_def[] = {0.1, 0.3, 1, 3, 10};
    int ng = argc > 1 ? argc - 1 : 5;
    if (rank == 0) printf("ranks %d, cores %d, pairs meeting in %d-byte all-reduces\n", R, C, BYTES);
    if (rank == 0)
        printf("%8s %8s %12s %12s %12s %12s %12s %12s\n", "g_ms", "meets", "meet_ms", "nomeet_ms",
               "ideal_ms", "gap_ms", "waste_ms", "poll_cpu_ms");
    for (int gi = 0; gi < ng; gi++) {
        double g = (argc > 1 ? atof(argv[gi + 1]) : gms_def[gi]) * 1e-3;
        long n = (long)(g * ips);
        int M = (int)(0.3 / (g * (R > C ? (double)R / C : 1))) + 4; /* ~0.3 s a round */
        double w[ROUNDS], w0[ROUNDS], cw[ROUNDS];
        for (int r = 0; r < 2 * ROUNDS; r++) { /* meeting and baseline rounds alternate */
            int meet = (r + gi) % 2 == 0;
            double c0 = cpu_();
            double t = round_(&pair, buf, n, M, meet);
            double c = (cpu_() - c0) / M - g; /* CPU seconds outside the work per piece */
            MPI_Allreduce(MPI_IN_PLACE, &c, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            if (meet) w[r / 2] = t, cw[r / 2] = c / R;
            else w0[r / 2] = t;
        }
        double wm = median_(w, ROUNDS), wb = median_(w0, ROUNDS), cm = median_(cw, ROUNDS);
        double ideal = (R > C ? (double)R / C : 1) * g;
        double gap = wm - wb, waste = gap * (R < C ? R : C) / R;
        if (rank == 0)
            printf("%8.2f %8d %12.3f %12.3f %12.3f %12.3f %12.3f %12.3f\n", g * 1e3, M, wm * 1e3,
                   wb * 1e3, ideal * 1e3, gap * 1e3, waste * 1e3, cm * 1e3);
    }
    free(buf);
    mpt_comm_free(&pair);
    MPI_Finalize();
    return 0;
}
