/* tp_epilogue.c — one row-parallel site of a tp block forward, two ways side by side: the
 * overlapped GEMM + sum (parallel/tp_overlap.c) followed by its epilogue on all rows (way 0,
 * what the model did before the epilogue moved into the GEMM), against the epilogue run chunk
 * by chunk as each chunk's sum arrives (way 1, mpt_tp_row_parallel_matmul's epi). The site is
 * attn.c_proj of the bench model at tp 2: out (N, D) = sum over tp of atty (N, D/tp) W (D/tp,
 * D), then res = in + out + bias and ln = LayerNorm(res) (model/gpt_tp.h, res_ln). The two
 * ways compute the same bits (checked on rank 0 each round).
 * Rounds alternate which way goes first; each round times REPS calls of each way; prints per
 * way the median over rounds of the wall and CPU microseconds per call (rank 0; CPU holds the
 * waits' polling) and the median and range of the per-round ratio epi / after.
 * Chunks: mpt_tp_overlap_chunks (MPT_TP_OVERLAP_MAX_CHUNKS, a build-time setting, tp.h).
 * Run: OMP_NUM_THREADS=1 mpirun -np 2 build/bench/bench_tp_epilogue [ROUNDS] [REPS] [N] [D] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "model/gpt_tp.h"
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

static double median_(const double *v0, int n) {
    double v[100];
    memcpy(v, v0, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *fill_(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = 1e-2f * (float)((i * 2654435761u + seed) % 201) - 1.0f;
    return p;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rounds = argc > 1 ? atoi(argv[1]) : 10, reps = argc > 2 ? atoi(argv[2]) : 20;
    size_t N = argc > 3 ? (size_t)atol(argv[3]) : 2048;
    int D = argc > 4 ? atoi(argv[4]) : 384;
    mpt_comm c;
    mpt_error err;
    if (mpt_comm_world(&c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rounds < 1 || rounds > 100 || reps < 1 || N < 1 || D < c.size || D % c.size) {
        fprintf(stderr, "usage: bench_tp_epilogue [ROUNDS 1-100] [REPS] [N] [D, a multiple of "
                        "the ranks]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    mpt_comm_set_spin(0.05); /* as the CLI sets it for a rank with a core */
    int C = D / c.size;
    float *inp = fill_(N * (size_t)C, 1u + (unsigned)c.rank), *w = fill_((size_t)C * D, 7u);
    float *a = fill_(N * (size_t)D, 3u), *bias = fill_((size_t)D, 5u);
    float *lw = fill_((size_t)D, 9u), *lb = fill_((size_t)D, 11u);
    float *y = malloc(N * (size_t)D * sizeof *y), *res[2], *ln[2], *mean[2], *rstd[2];
    for (int k = 0; k < 2; k++) {
        res[k] = malloc(N * (size_t)D * sizeof(float));
        ln[k] = malloc(N * (size_t)D * sizeof(float));
        mean[k] = malloc(N * sizeof(float));
        rstd[k] = malloc(N * sizeof(float));
    }
    double wall[2][100], cpu[2][100], ratio[100];
    int same = 1;
    for (int r = 0; r < rounds; r++) {
        for (int o = 0; o < 2; o++) {
            int way = (r + o) % 2;
            mpt_gpt_tp_epi e = {.res = res[way], .out = ln[way], .mean = mean[way],
                                .rstd = rstd[way], .a = a, .y = y, .bias = bias, .w = lw,
                                .b = lb, .C = D};
            MPI_Barrier(MPI_COMM_WORLD);
            double w0 = clock_(CLOCK_MONOTONIC), c0 = clock_(CLOCK_PROCESS_CPUTIME_ID);
            for (int i = 0; i < reps; i++) {
                mpt_status st = mpt_tp_row_parallel_matmul(
                    &c, y, inp, w, N, C, D, way ? mpt_gpt_tp_epi_res_ln : NULL, &e, &err);
                if (st) {
                    fprintf(stderr, "%s\n", err.msg);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
                if (!way) mpt_gpt_tp_epi_res_ln(&e, 0, N);
            }
            wall[way][r] = (clock_(CLOCK_MONOTONIC) - w0) / reps * 1e6;
            cpu[way][r] = (clock_(CLOCK_PROCESS_CPUTIME_ID) - c0) / reps * 1e6;
        }
        ratio[r] = wall[1][r] / wall[0][r];
        same &= !memcmp(ln[0], ln[1], N * (size_t)D * sizeof(float)) &&
                !memcmp(res[0], res[1], N * (size_t)D * sizeof(float));
    }
    if (c.rank == 0) {
        printf("%d ranks, N %zu, D %d (K %d per rank), %zu chunks, %d rounds x %d calls; the "
               "two ways' bits %s\n",
               c.size, N, D, C, mpt_tp_overlap_chunks(N, D), rounds, reps,
               same ? "equal" : "DIFFER");
        static const char *names[2] = {"epilogue after", "epilogue in"};
        for (int k = 0; k < 2; k++) {
            double lo = wall[k][0], hi = wall[k][0];
            for (int r = 1; r < rounds; r++) {
                if (wall[k][r] < lo) lo = wall[k][r];
                if (wall[k][r] > hi) hi = wall[k][r];
            }
            printf("%-15s wall us/call median %8.1f (%.1f..%.1f)  CPU us/call median %8.1f\n",
                   names[k], median_(wall[k], rounds), lo, hi, median_(cpu[k], rounds));
        }
        double lo = ratio[0], hi = ratio[0];
        for (int r = 1; r < rounds; r++) {
            if (ratio[r] < lo) lo = ratio[r];
            if (ratio[r] > hi) hi = ratio[r];
        }
        printf("in / after wall, median of rounds: %.3f (rounds %.3f..%.3f)\n",
               median_(ratio, rounds), lo, hi);
    }
    free(inp), free(w), free(a), free(bias), free(lw), free(lb), free(y);
    for (int k = 0; k < 2; k++) free(res[k]), free(ln[k]), free(mean[k]), free(rstd[k]);
    mpt_comm_free(&c);
    MPI_Finalize();
    return !same;
}
