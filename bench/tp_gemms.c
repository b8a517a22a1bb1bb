/* bench/tp_gemms.c — the GEMMs of one training step on one rank of tp 2 (no sp) against half of
 * the same GEMMs on one rank, at one thread, timed by the process's CPU time (readable under
 * load): how much CPU a tp rank's smaller GEMMs cost beyond their half of the FLOPs. The calls
 * are the ones model/gpt_pass.c makes, with the tp path's row chunks (parallel/tp_overlap.c,
 * model/gpt_tp.c: mpt_tp_overlap_chunks row chunks for the row-parallel forwards, the
 * column-parallel layers' input and weight gradients and the head), per layer:
 *   forward   c_attn x W (N, D -> 3D/tp) | attn.c_proj (N/k, D/tp -> D) x k |
 *             c_fc (N, D -> F/tp) | mlp.c_proj (N/k, F/tp -> D) x k
 *   backward  mlp.c_proj dX, dW (N, F/tp <- D) | c_fc dX in k row chunks, then dW in k |
 *             attn.c_proj dX, dW (N, D/tp <- D) | c_attn dX in k row chunks, then dW in k
 * and the head (V/tp columns of the tied wte: forward and backward by the same row chunks).
 *   build/bench/bench_tp_gemms [--layers L --d-model D --seq-len T --vocab V --batch B
 *                               --tp P --rounds R --dw-chunks K] [--compare-dw]
 *   defaults: the bench model (6L/384, T256, byte vocab 256, batch 8), tp 2, 5 rounds
 * --compare-dw: only the column-parallel layers' backward, dW in k, k/2 and 1 row chunks and
 * half of one rank's, alternated call by call (finer interleaving, for a loaded machine).
 * --dw-chunks K: the column-parallel layers' weight gradients in K row chunks instead of the
 * input gradient's (1: one GEMM over all N rows), a what-if for the backward's chunking.
 * Prints per site the CPU ms of the tp rank's calls against half of one rank's, medians over R
 * interleaved rounds. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kernels.h"
#include "parallel/tp.h"

enum { S_QKV, S_ATTPROJ, S_FC, S_FCPROJ, S_HEAD, NS_ };
static const char *const sname_[NS_] = {"c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "head"};

static double cpu_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *buf_(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

static size_t dw_chunks_; /* --dw-chunks K: the weight gradients in K row chunks (0: as dX) */

typedef struct bufs_ {
    float *x, *y, *dx, *dy, *w, *dw, *db;
} bufs_;

/* one linear layer (N rows, C -> OC): forward in kf row chunks; backward dX and dW in kb row
 * chunks (kb = 0: one unchunked backward_set call, dX and dW together) */
static void linear_(const bufs_ *b, size_t N, int C, int OC, size_t kf, size_t kb, double *tf,
                    double *tb) {
    double t0 = cpu_();
    for (size_t c = 0; c < kf; c++) {
        size_t r0 = N * c / kf, r1 = N * (c + 1) / kf;
        mpt_matmul_forward(b->y + r0 * (size_t)OC, b->x + r0 * (size_t)C, b->w, NULL, r1 - r0, C,
                           OC);
    }
    double t1 = cpu_();
    if (!kb) {
        mpt_matmul_backward_set(b->dx, b->dw, b->db, b->dy, b->x, b->w, N, C, OC);
    } else {
        size_t kw = dw_chunks_ ? dw_chunks_ : kb; /* the weight gradient's row chunks */
        for (size_t c = 0; c < kb; c++) {
            size_t r0 = N * c / kb, n = N * (c + 1) / kb - r0;
            mpt_matmul_backward_set(b->dx + r0 * (size_t)C, NULL, NULL, b->dy + r0 * (size_t)OC,
                                    NULL, b->w, n, C, OC);
        }
        for (size_t c = 0; c < kw; c++) {
            size_t r0 = N * c / kw, n = N * (c + 1) / kw - r0;
            mpt_matmul_backward(NULL, b->dw, b->db, b->dy + r0 * (size_t)OC,
                                b->x + r0 * (size_t)C, NULL, n, C, OC);
        }
    }
    *tf += t1 - t0;
    *tb += cpu_() - t1;
}

static void head_(const bufs_ *b, size_t N, int C, int V, size_t k, double *tf, double *tb) {
    double t0 = cpu_();
    for (size_t c = 0; c < k; c++) {
        size_t r0 = N * c / k, n = N * (c + 1) / k - r0;
        mpt_lmhead_forward(b->y + r0 * (size_t)V, b->x + r0 * (size_t)C, b->w, n, C, V, V);
    }
    double t1 = cpu_();
    for (size_t c = 0; c < k; c++) {
        size_t r0 = N * c / k, n = N * (c + 1) / k - r0;
        mpt_lmhead_backward_set(b->dx + r0 * (size_t)C, b->dw, b->dy + r0 * (size_t)V,
                                b->x + r0 * (size_t)C, b->w, n, C, V, V);
    }
    *tf += t1 - t0;
    *tb += cpu_() - t1;
}

/* one step's GEMMs at tp width P (P = 1: one rank, no chunks): CPU seconds per site */
static void step_(const bufs_ *b, int L, size_t N, int D, int V, int P, double t[NS_][2]) {
    int Dl = D / P, Fl = 4 * D / P, Vl = V / P;
    size_t kD = P > 1 ? mpt_tp_overlap_chunks(N, D) : 1, kb = P > 1 ? kD : 0;
    size_t kV = P > 1 ? mpt_tp_overlap_chunks(N, Vl) : 1;
    for (int l = 0; l < L; l++) {
        linear_(b, N, D, 3 * Dl, 1, kb, &t[S_QKV][0], &t[S_QKV][1]);
        linear_(b, N, Dl, D, kD, 0, &t[S_ATTPROJ][0], &t[S_ATTPROJ][1]);
        linear_(b, N, D, Fl, 1, kb, &t[S_FC][0], &t[S_FC][1]);
        linear_(b, N, Fl, D, kD, 0, &t[S_FCPROJ][0], &t[S_FCPROJ][1]);
    }
    head_(b, N, D, Vl, P > 1 ? kV : 1, &t[S_HEAD][0], &t[S_HEAD][1]);
}


static int cmp_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --compare-dw: the column-parallel layers' backward (dX in k row chunks, dW in k, 2 or 1
 * row chunks) and half of one rank's, alternated call by call R times: finer interleaving
 * than whole steps, for a loaded machine */
static void compare_dw_(const bufs_ *b, size_t N, int D, int P, int R) {
    size_t k = mpt_tp_overlap_chunks(N, D), kws[3] = {k, (k + 1) / 2, 1};
    int C[2] = {D, D}, OC[2] = {3 * D / P, 4 * D / P};
    const char *nm[2] = {"c_attn", "c_fc"};
    printf("backward of the column-parallel layers, CPU ms per call (median of %d), dX in %zu row chunks\n", R, k);
    for (int s = 0; s < 2; s++) {
        double v[4][64];
        for (int r = 0; r < R; r++) {
            double f = 0, t1 = 0;
            dw_chunks_ = 0;
            linear_(b, N, C[s], OC[s] * P, 1, 0, &f, &t1); /* one rank, unchunked */
            v[3][r] = t1 / P;
            for (int i = 0; i < 3; i++) {
                double tb = 0;
                dw_chunks_ = kws[i];
                linear_(b, N, C[s], OC[s], 1, k, &f, &tb);
                v[i][r] = tb;
            }
        }
        for (int i = 0; i < 4; i++) qsort(v[i], (size_t)R, sizeof v[i][0], cmp_);
        printf("%-8s half of one rank %.2f | dW in %zu chunks %.2f (%.3f) | in %zu %.2f (%.3f) | in %zu %.2f (%.3f)\n",
               nm[s], 1e3 * v[3][R / 2], kws[0], 1e3 * v[0][R / 2], v[0][R / 2] / v[3][R / 2],
               kws[1], 1e3 * v[1][R / 2], v[1][R / 2] / v[3][R / 2], kws[2], 1e3 * v[2][R / 2],
               v[2][R / 2] / v[3][R / 2]);
    }
}

int main(int argc, char **argv) {
    int L = 6, D = 384, T = 256, V = 256, B = 8, P = 2, R = 5;
    int cmp_dw = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--compare-dw")) {
            cmp_dw = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", argv[i]);
            return 2;
        }
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) L = v;
        else if (!strcmp(argv[i], "--d-model")) D = v;
        else if (!strcmp(argv[i], "--seq-len")) T = v;
        else if (!strcmp(argv[i], "--vocab")) V = v;
        else if (!strcmp(argv[i], "--batch")) B = v;
        else if (!strcmp(argv[i], "--tp")) P = v;
        else if (!strcmp(argv[i], "--rounds")) R = v;
        else if (!strcmp(argv[i], "--dw-chunks")) dw_chunks_ = (size_t)(v > 0 ? v : 0);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (L < 1 || D < 1 || T < 1 || V < 1 || B < 1 || P < 2 || R < 1 || R > 64 || D % P || V % P) {
        fprintf(stderr, "bad sizes (tp must divide d-model and vocab; rounds 1..64)\n");
        return 2;
    }
    omp_set_num_threads(1);
    size_t N = (size_t)B * T, F = 4 * (size_t)D, big = N * (F > (size_t)V ? F : (size_t)V);
    bufs_ b = {buf_(big), buf_(big), buf_(big), buf_(big), buf_(F * F), buf_(F * F), buf_(F)};
    double (*one)[NS_][2] = calloc((size_t)R, sizeof *one), (*tp)[NS_][2] = calloc((size_t)R, sizeof *tp);
    if (!one || !tp) return 1;
    if (cmp_dw) {
        compare_dw_(&b, N, D, P, R);
        free(b.x), free(b.y), free(b.dx), free(b.dy), free(b.w), free(b.dw), free(b.db);
        free(one), free(tp);
        return 0;
    }
    double warm[NS_][2] = {{0}};
    step_(&b, 1, N, D, V, 1, warm);
    step_(&b, 1, N, D, V, P, warm);
    for (int r = 0; r < R; r++) { /* interleaved: drift hits both alike */
        step_(&b, L, N, D, V, 1, one[r]);
        step_(&b, L, N, D, V, P, tp[r]);
    }
    printf("GEMMs of one step, L%d D%d T%d V%d batch %d, 1 thread, CPU ms (median of %d rounds)\n",
           L, D, T, V, B, R);
    printf("%-12s %8s %10s %10s %8s\n", "site", "pass", "one/tp", "tp rank", "ratio");
    double sum1 = 0, sumt = 0, v[64];
    for (int s = 0; s < NS_; s++) {
        for (int p = 0; p < 2; p++) {
            for (int r = 0; r < R; r++) v[r] = one[r][s][p];
            qsort(v, (size_t)R, sizeof *v, cmp_);
            double a = v[R / 2] / P;
            for (int r = 0; r < R; r++) v[r] = tp[r][s][p];
            qsort(v, (size_t)R, sizeof *v, cmp_);
            double t = v[R / 2];
            sum1 += a;
            sumt += t;
            printf("%-12s %8s %10.1f %10.1f %8.3f\n", sname_[s], p ? "backward" : "forward",
                   1e3 * a, 1e3 * t, t / a);
        }
    }
    printf("%-12s %8s %10.1f %10.1f %8.3f   (tp rank's GEMMs against 1/%d of one rank's)\n",
           "all", "", 1e3 * sum1, 1e3 * sumt, sumt / sum1, P);
    free(b.x), free(b.y), free(b.dx), free(b.dy), free(b.w), free(b.dw), free(b.db);
    free(one), free(tp);
    return 0;
}
