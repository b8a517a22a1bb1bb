/* bench/gemm_shapes.c — GFLOP/s of the block's GEMMs at the shapes a rank sees when the batch
 * is split (dp strong scaling, pipeline micro-batches) or the weights are (tp shards), against
 * the measured FMA peak, with two ways of using the threads:
 *
 *   team   one dnnl_sgemm call that threads itself (what the library does today);
 *   split  one OpenMP region whose threads each run a single-threaded dnnl_sgemm on their own
 *          block: rows of the output for the forward (x W) and input-gradient (dY W^T) GEMMs,
 *          columns of dW for the weight-gradient GEMM (X^T dY), so that no two threads write
 *          the same element and each element is summed in the same order as by one thread.
 *
 *   build/bench/bench_gemm_shapes [--d-model D --ffn F --threads N --rounds R]
 *   defaults: the bench model's D 384, F 1536; 2 threads; 5 rounds
 *
 * Per row: rows N of the GEMM (tokens of the rank's micro-batch), tp shard (1 or 2: the
 * column-parallel layers' OC and the row-parallel layers' C halved), and the FLOP-weighted rate
 * over the step's twelve block GEMMs (qkv, attention proj, fc, fc proj; forward, dinp, dW), the
 * median of R interleaved rounds (team and split alternate inside each round, so a busy moment
 * hits both). Time is wall time, so the figures are only meaningful as ratios on a loaded
 * machine. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/peak.h"

/* the four layers of a block: (C, OC) of y = x W, and whether tp splits OC (column-parallel)
 * or C (row-parallel) */
typedef struct {
    const char *name;
    int C, OC, column;
} layer_t;

static float *buf_(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_gemm_shapes: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

/* Row-major C(M,N) = op(A) op(B) + beta C through dnnl_sgemm (threads itself, or runs on one
 * thread when called inside an OpenMP region). */
static void sg_(char ta, char tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
                const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    dnnl_sgemm(ta, tb, (dnnl_dim_t)M, (dnnl_dim_t)N, (dnnl_dim_t)K, 1.0f, A, (dnnl_dim_t)lda, B,
               (dnnl_dim_t)ldb, beta, C, (dnnl_dim_t)ldc);
}

/* one layer's three GEMMs at N rows: forward y = x W, dx = dy W^T, dW += x^T dy */
static void layer_(int split, size_t N, int C, int OC, const float *x, const float *w,
                   const float *dy, float *y, float *dx, float *dw) {
    if (!split) {
        sg_('N', 'N', N, (size_t)OC, (size_t)C, x, (size_t)C, w, (size_t)OC, 0.0f, y, (size_t)OC);
        sg_('N', 'T', N, (size_t)C, (size_t)OC, dy, (size_t)OC, w, (size_t)OC, 0.0f, dx, (size_t)C);
        sg_('T', 'N', (size_t)C, (size_t)OC, N, x, (size_t)C, dy, (size_t)OC, 1.0f, dw, (size_t)OC);
        return;
    }
#pragma omp parallel
    {
        int id = omp_get_thread_num(), nth = omp_get_num_threads();
        size_t r0 = N * (size_t)id / (size_t)nth, r1 = N * (size_t)(id + 1) / (size_t)nth;
        /* columns in multiples of 16 (a cache line) */
        size_t lines = ((size_t)OC + 15) / 16;
        size_t c0 = lines * (size_t)id / (size_t)nth * 16;
        size_t c1 = lines * (size_t)(id + 1) / (size_t)nth * 16;
        if (c1 > (size_t)OC) c1 = (size_t)OC;
        if (c0 > c1) c0 = c1;
        if (r1 > r0) {
            sg_('N', 'N', r1 - r0, (size_t)OC, (size_t)C, x + r0 * C, (size_t)C, w, (size_t)OC,
                0.0f, y + r0 * OC, (size_t)OC);
            sg_('N', 'T', r1 - r0, (size_t)C, (size_t)OC, dy + r0 * OC, (size_t)OC, w, (size_t)OC,
                0.0f, dx + r0 * C, (size_t)C);
        }
        if (c1 > c0)
            sg_('T', 'N', (size_t)C, c1 - c0, N, x, (size_t)C, dy + c0, (size_t)OC, 1.0f, dw + c0,
                (size_t)OC);
    }
}

static int cmp_d_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int D = 384, F = 0, threads = 2, rounds = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--d-model")) D = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ffn")) F = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_gemm_shapes [--d-model D --ffn F --threads N "
                            "--rounds R]\n");
            return 2;
        }
    }
    if (F <= 0) F = 4 * D;
    if (D < 16 || threads < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "bench_gemm_shapes: bad sizes\n");
        return 2;
    }
    omp_set_num_threads(threads);
    const layer_t lay[4] = {{"qkv", D, 3 * D, 1}, {"attproj", D, D, 0}, {"fc", D, F, 1},
                            {"fcproj", F, D, 0}};
    const size_t rows[] = {2048, 1024, 512, 256};
    size_t maxn = 2048, maxw = (size_t)F * D;
    if ((size_t)3 * D * D > maxw) maxw = (size_t)3 * D * D;
    size_t maxact = maxn * (size_t)(F > 3 * D ? F : 3 * D);
    float *x = buf_(maxact), *dy = buf_(maxact), *y = buf_(maxact), *dx = buf_(maxact);
    float *w = buf_(maxw), *dw = buf_(maxw);
    double peak = mpt_measure_peak_flops(threads, 0.5);
    FILE *f = fopen("/proc/loadavg", "r");
    double load = -1;
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1;
        fclose(f);
    }
    printf("bench_gemm_shapes: D %d F %d, %d threads, median of %d rounds; FMA peak %.1f "
           "GFLOP/s; load average %.2f\n\n",
           D, F, threads, rounds, peak / 1e9, load);
    printf("  %6s %3s %10s %10s %8s %8s %12s\n", "rows", "tp", "team GF/s", "split GF/s",
           "team %pk", "split %pk", "split/team");
    layer_(0, 256, D, D, x, w, dy, y, dx, dw); /* warm-up */
    layer_(1, 256, D, D, x, w, dy, y, dx, dw);
    for (int tp = 1; tp <= 2; tp++)
        for (size_t ri = 0; ri < sizeof rows / sizeof *rows; ri++) {
            size_t N = rows[ri];
            double rate[2][99], flops = 0;
            for (int k = 0; k < 4; k++) {
                int C = lay[k].column ? lay[k].C : lay[k].C / tp;
                int OC = lay[k].column ? lay[k].OC / tp : lay[k].OC;
                flops += 3 * 2.0 * (double)N * C * OC;
            }
            for (int r = 0; r < rounds; r++)
                for (int s = 0; s < 2; s++) {
                    int split = (r + s) % 2; /* alternate which goes first */
                    double t0 = omp_get_wtime();
                    for (int rep = 0; rep < 3; rep++)
                        for (int k = 0; k < 4; k++) {
                            int C = lay[k].column ? lay[k].C : lay[k].C / tp;
                            int OC = lay[k].column ? lay[k].OC / tp : lay[k].OC;
                            layer_(split, N, C, OC, x, w, dy, y, dx, dw);
                        }
                    rate[split][r] = 3 * flops / (omp_get_wtime() - t0);
                }
            qsort(rate[0], (size_t)rounds, sizeof(double), cmp_d_);
            qsort(rate[1], (size_t)rounds, sizeof(double), cmp_d_);
            double tm = rate[0][rounds / 2], sm = rate[1][rounds / 2];
            printf("  %6zu %3d %10.1f %10.1f %7.1f%% %7.1f%% %12.3f\n", N, tp, tm / 1e9, sm / 1e9,
                   100 * tm / peak, 100 * sm / peak, sm / tm);
        }
    free(x), free(dy), free(y), free(dx), free(w), free(dw);
    return 0;
}
