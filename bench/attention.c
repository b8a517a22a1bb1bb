/* bench/attention.c — the fused causal attention (core/attention.h) against today's kernel
 * (mpt_attention_forward/backward in core/kernels.h, which stores the (B,H,T,T) probabilities):
 * forward + backward time, tokens/s and the bytes each needs beyond the tensors both share
 * (qkv, out, dout, dqkv).
 *
 *   build/bench/bench_attention [repeats] [T ...]      defaults: 5 repeats, T 256 1024 4096
 *   BENCH_ATTN_THREADS=1 build/bench/bench_attention  one thread: its CPU time is the kernel's own
 *                                                      work even when other processes share the cores
 *
 * Shape: GPT-2 124M attention, D 768, H 12 (hs 64), B 1, on 2 OpenMP threads (BENCH_ATTN_THREADS). Each repeat runs
 * every contender once, in a rotating order, after one untimed warm-up run each; the figures are
 * the median and the spread (min..max) over the repeats, with the process's CPU time (both
 * threads, spinning included) beside them: on a shared machine, wall time far above half the CPU
 * time means the threads waited for cores. The fused kernel runs on both GEMM back
 * ends (oneDNN, the default, and OpenBLAS); today's kernel on oneDNN. The time of each includes
 * the zeroing of dqkv that its backward (+=) needs, as in a training step; "fused=" is the
 * overwriting backward (mpt_flash_backward_set: each task zeroes its own head's columns and
 * computes its rows' dout.out in the same region), which the model uses, with its tile GEMMs
 * on the AVX2 + FMA micro-kernels of core/attn_tile.h (head size 64); "fused= (library)" is
 * the same with the micro-kernels switched off (mpt_attn_tile_set(0): oneDNN's sgemm per tile),
 * the side-by-side ratio of the two in one process. BENCH_ATTN_B, BENCH_ATTN_D, BENCH_ATTN_H
 * change the shape (the bench model's attention: B 8, D 384, H 6). Not part of the tests. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/attention.h"
#include "core/attn_tile.h"
#include "core/kernels.h"

enum { FUSED_DNNL, FUSED_BLAS, TODAY, FUSED_SET, FUSED_LIB, NCONT };
static const char *const name_[NCONT] = {"fused (oneDNN)", "fused (OpenBLAS)", "today (oneDNN)",
                                         "fused= (micro)", "fused= (library)"};

static int threads_ = 2, B_ = 1, D_ = 768, H_ = 12;

typedef struct {
    int B, T, D, H, threads;
    float *qkv, *out, *dout, *dqkv, *lse, *work, *att, *datt;
    size_t nwork;
} case_t;

static double clock_(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now_(void) { return clock_(CLOCK_MONOTONIC); }

/* The 1-minute load average: how busy the shared machine was. */
static double load_(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

static void *alloc_(size_t n) {
    void *p = n ? aligned_alloc(64, (n + 15) / 16 * 64) : NULL;   /* n floats, 64-byte aligned */
    if (n && !p) {
        fprintf(stderr, "bench_attention: out of memory (%zu floats)\n", n);
        exit(1);
    }
    if (p) memset(p, 0, (n + 15) / 16 * 64);
    return p;
}

/* Wall seconds for one forward + backward of contender c; *cpu = the process's CPU seconds. */
static double run_(case_t *k, int c, double *cpu) {
    size_t n3 = (size_t)k->B * k->T * 3 * k->D;
    for (size_t i = 0; i < n3; i++) k->dqkv[i] = 1.0f; /* written by the run */
    double t0 = now_(), c0 = clock_(CLOCK_PROCESS_CPUTIME_ID);
    if (c != FUSED_SET && c != FUSED_LIB) memset(k->dqkv, 0, n3 * sizeof(float));
    mpt_attn_tile_set(c != FUSED_LIB);
    if (c == FUSED_SET || c == FUSED_LIB) {
        mpt_kernels_set_gemm(MPT_GEMM_ONEDNN);
        mpt_flash_forward(k->out, k->lse, k->qkv, k->B, k->T, k->D, k->H);
        mpt_flash_backward_set(k->dqkv, k->dout, k->out, k->lse, k->qkv, k->B, k->T, k->D, k->H,
                               k->work, k->threads);
    } else if (c == TODAY) {
        mpt_kernels_set_gemm(MPT_GEMM_ONEDNN);
        mpt_attention_forward(k->out, k->att, k->qkv, k->B, k->T, k->D, k->H);
        mpt_attention_backward(k->dqkv, k->datt, k->dout, k->qkv, k->att, k->B, k->T, k->D, k->H);
    } else {
        mpt_kernels_set_gemm(c == FUSED_DNNL ? MPT_GEMM_ONEDNN : MPT_GEMM_OPENBLAS);
        mpt_flash_forward(k->out, k->lse, k->qkv, k->B, k->T, k->D, k->H);
        mpt_flash_backward(k->dqkv, k->dout, k->out, k->lse, k->qkv, k->B, k->T, k->D, k->H,
                           k->work, k->threads);
    }
    *cpu = clock_(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return now_() - t0;
}

static int cmp_double_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_(int T, int repeats) {
    case_t k = {.B = B_, .T = T, .D = D_, .H = H_, .threads = threads_};
    size_t n3 = (size_t)k.B * T * 3 * k.D, nd = (size_t)k.B * T * k.D;
    size_t nl = (size_t)k.B * k.H * T, na = nl * (size_t)T;
    k.nwork = mpt_flash_workspace(k.B, T, k.D, k.H, k.threads);
    k.qkv = alloc_(n3), k.dqkv = alloc_(n3), k.out = alloc_(nd), k.dout = alloc_(nd);
    k.lse = alloc_(nl), k.work = alloc_(k.nwork), k.att = alloc_(na), k.datt = alloc_(na);
    srand(1);
    for (size_t i = 0; i < n3; i++) k.qkv[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < nd; i++) k.dout[i] = (float)rand() / (float)RAND_MAX - 0.5f;

    /* pair, pcpu: t and cpu unsorted, by repeat */
    double *t[NCONT], *cpu[NCONT], *pair[NCONT], *pcpu[NCONT], dummy;
    for (int c = 0; c < NCONT; c++) {
        pair[c] = calloc((size_t)repeats, sizeof(double));
        pcpu[c] = calloc((size_t)repeats, sizeof(double));
        t[c] = calloc((size_t)repeats, sizeof(double));
        cpu[c] = calloc((size_t)repeats, sizeof(double));
        run_(&k, c, &dummy);   /* warm-up: first touch of the buffers, GEMM kernel set-up */
    }
    for (int r = 0; r < repeats; r++)
        for (int i = 0; i < NCONT; i++) {
            int c = (i + r) % NCONT;
            t[c][r] = run_(&k, c, &cpu[c][r]);
            pair[c][r] = t[c][r], pcpu[c][r] = cpu[c][r];
        }
    /* bytes beyond the shared tensors: fused = lse + workspace + the per-thread score tiles on
     * the stack (two BQ×BK tiles); today = att + datt */
    size_t tiles = (size_t)k.threads * 2 * MPT_FLASH_BQ * MPT_FLASH_BK;
    double fused_bytes = 4.0 * (double)(nl + k.nwork + tiles), today_bytes = 4.0 * 2.0 * (double)na;
    double med[NCONT];
    for (int c = 0; c < NCONT; c++) {
        qsort(t[c], (size_t)repeats, sizeof(double), cmp_double_);
        qsort(cpu[c], (size_t)repeats, sizeof(double), cmp_double_);
        med[c] = t[c][repeats / 2];
        double bytes = c == TODAY ? today_bytes : fused_bytes;
        printf("T %5d  %-17s %9.2f ms (%8.2f..%8.2f)  cpu %9.2f ms  %8.0f tokens/s  %10.3f MiB\n",
               T, name_[c], 1e3 * med[c], 1e3 * t[c][0], 1e3 * t[c][repeats - 1],
               1e3 * cpu[c][repeats / 2], k.B * T / med[c], bytes / 1048576.0);
    }
    printf("T %5d  fused (oneDNN) / today: %.2fx tokens/s, %.5fx bytes; fused= / today %.2fx, "
           "CPU time fused / today %.3f, fused= / today %.3f\n", T, med[TODAY] / med[0],
           fused_bytes / today_bytes, med[TODAY] / med[FUSED_SET], cpu[0][repeats / 2] /
           cpu[TODAY][repeats / 2], cpu[FUSED_SET][repeats / 2] / cpu[TODAY][repeats / 2]);
    /* micro-kernel vs library, per repeat (the two ran next to each other in every repeat) */
    double *ratio = calloc((size_t)repeats, sizeof(double));
    for (int w = 0; w < 2; w++) { /* wall time, then CPU time */
        for (int r = 0; r < repeats; r++)
            ratio[r] = w == 0 ? pair[FUSED_LIB][r] / pair[FUSED_SET][r]
                              : pcpu[FUSED_LIB][r] / pcpu[FUSED_SET][r];
        qsort(ratio, (size_t)repeats, sizeof(double), cmp_double_);
        printf("T %5d  speed micro / library (fused=, library / micro %s time per repeat): "
               "median %.3f (%.3f..%.3f)\n", T, w == 0 ? "wall" : "CPU", ratio[repeats / 2],
               ratio[0], ratio[repeats - 1]);
    }
    free(ratio);
    for (int c = 0; c < NCONT; c++) free(pair[c]), free(pcpu[c]);
    for (int c = 0; c < NCONT; c++) free(t[c]), free(cpu[c]);
    free(k.qkv), free(k.dqkv), free(k.out), free(k.dout), free(k.lse), free(k.work);
    free(k.att), free(k.datt);
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1) repeats = 1;
    const char *env = getenv("BENCH_ATTN_THREADS");
    if (env && atoi(env) > 0) threads_ = atoi(env);
    if ((env = getenv("BENCH_ATTN_B")) && atoi(env) > 0) B_ = atoi(env);
    if ((env = getenv("BENCH_ATTN_D")) && atoi(env) > 0) D_ = atoi(env);
    if ((env = getenv("BENCH_ATTN_H")) && atoi(env) > 0) H_ = atoi(env);
    omp_set_num_threads(threads_);
    printf("attention forward + backward, B %d, D %d, H %d, %d threads, %d repeats: wall median "
           "(min..max), process CPU median; load average %.2f\n", B_, D_, H_, threads_, repeats,
           load_());
    if (argc > 2) {
        for (int i = 2; i < argc; i++) bench_(atoi(argv[i]), repeats);
    } else {
        const int Ts[] = {256, 1024, 4096};
        for (int i = 0; i < 3; i++) bench_(Ts[i], repeats);
    }
    printf("load average at the end %.2f (2 cores)\n", load_());
    return 0;
}
