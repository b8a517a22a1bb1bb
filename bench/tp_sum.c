/* tp_sum.c — the tensor-parallel sum alone, two ways side by side: MPI's non-blocking
 * all-reduce (libnbc, what the tp sums were) against the ring of parallel/tp_ring.c, on the
 * sizes of the bench model's row-parallel outputs (N = 2048 rows of D = 384 floats, 3 MiB) in
 * k row chunks started back to back and then waited for, as the last GEMM chunk leaves them.
 * Rounds alternate the two ways; each round times REPS sums; prints per way the median over
 * rounds of the wall and CPU microseconds per sum (rank 0; CPU is this process's, so it holds
 * the waits' polling), and the median of the per-round ratio ring / MPI.
 * (The ring is timed whatever MPT_TP_RING_SUMS selects for the model; tp.h.)
 * Run: mpirun -np 2 build/bench/bench_tp_sum [ROUNDS] [REPS] [CHUNKS] [FLOATS] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm/comm.h"
#include "parallel/tp.h"

static double clock_(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One sum of buf (n) in k chunks, by MPI (way 0) or the ring (way 1). */
static mpt_status sum_(mpt_comm *c, int way, float *buf, size_t n, size_t k, mpt_error *err) {
    mpt_status st = MPT_OK;
    if (way == 0) {
        mpt_req r[MPT_TP_OVERLAP_MAX_CHUNKS];
        for (size_t i = 0; i < k && !st; i++)
            st = mpt_iallreduce_sum(c, buf + n * i / k, n * (i + 1) / k - n * i / k, &r[i], err);
        return st ? st : mpt_waitall(r, k, err);
    }
    /* the rings themselves (whatever MPT_TP_RING_SUMS picks for the model), as tp_ring.c
     * starts them and waits for them together */
    mpt_ring g[MPT_TP_OVERLAP_MAX_CHUNKS];
    float *tmp = malloc((n / (size_t)c->size + k) * sizeof *tmp);
    size_t used = 0, started = 0;
    for (size_t i = 0; i < k && !st; i++, started++) {
        size_t m = n * (i + 1) / k - n * i / k;
        st = mpt_ring_start_any(&g[i], c, MPT_RING_ALLREDUCE, buf + n * i / k, m, tmp + used,
                                7210 + (int)i, err);
        used += (m + (size_t)c->size - 1) / (size_t)c->size;
    }
    for (size_t i = 0; i < started && !st; i++) st = mpt_ring_wait(&g[i], err);
    free(tmp);
    return st;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rounds = argc > 1 ? atoi(argv[1]) : 10, reps = argc > 2 ? atoi(argv[2]) : 50;
    size_t k = argc > 3 ? (size_t)atoi(argv[3]) : 4;
    size_t n = argc > 4 ? (size_t)atol(argv[4]) : (size_t)2048 * 384;
    if (rounds < 1 || rounds > 100 || reps < 1 || k < 1 || k > MPT_TP_OVERLAP_MAX_CHUNKS) {
        fprintf(stderr, "usage: bench_tp_sum [ROUNDS 1-100] [REPS] [CHUNKS 1-4] [FLOATS]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    mpt_comm c;
    mpt_error err;
    if (mpt_comm_world(&c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    mpt_comm_set_spin(0.05); /* as the CLI sets it for a rank with a core */
    float *buf = malloc(n * sizeof *buf);
    for (size_t i = 0; i < n; i++) buf[i] = 1e-3f * (float)(i % 1000);
    double wall[2][100], cpu[2][100], ratio[100];
    for (int r = 0; r < rounds; r++) {
        for (int o = 0; o < 2; o++) {
            int way = (r + o) % 2;
            MPI_Barrier(MPI_COMM_WORLD);
            double w0 = clock_(CLOCK_MONOTONIC), c0 = clock_(CLOCK_PROCESS_CPUTIME_ID);
            for (int i = 0; i < reps; i++)
                if (sum_(&c, way, buf, n, k, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
            wall[way][r] = (clock_(CLOCK_MONOTONIC) - w0) / reps * 1e6;
            cpu[way][r] = (clock_(CLOCK_PROCESS_CPUTIME_ID) - c0) / reps * 1e6;
        }
        ratio[r] = wall[1][r] / wall[0][r];
    }
    if (c.rank == 0) {
        printf("%d ranks, %zu floats in %zu chunks, %d rounds x %d sums\n", c.size, n, k, rounds,
               reps);
        static const char *names[2] = {"MPI iallreduce", "ring"};
        for (int w = 0; w < 2; w++) {
            double lo = wall[w][0], hi = wall[w][0];
            for (int r = 1; r < rounds; r++) {
                if (wall[w][r] < lo) lo = wall[w][r];
                if (wall[w][r] > hi) hi = wall[w][r];
            }
            printf("%-15s wall us/sum median %8.1f (%.1f..%.1f)  CPU us/sum median %8.1f\n",
                   names[w], median_(wall[w], rounds), lo, hi, median_(cpu[w], rounds));
        }
        printf("ring / MPI wall, median of rounds: %.3f\n", median_(ratio, rounds));
    }
    free(buf);
    mpt_comm_free(&c);
    MPI_Finalize();
    return 0;
}
