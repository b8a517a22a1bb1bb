/* bench/profile.c — where one training step of a single rank goes: the step of
 * model/gpt_pass.c and the trainer (zero the gradients, forward, loss, backward, gradient norm,
 * AdamW) replayed kernel by kernel with the same library calls on the same shapes, each call
 * timed and filed under a kind (GEMM, attention, LayerNorm, GELU, bias, residual, loss,
 * embedding, optimizer, copies and zeroing). Each kind is reported as its share of the step and
 * as GFLOP/s against the measured FMA peak (compute-bound kinds) or GB/s against the measured
 * memory bandwidth (memory-bound kinds; bytes are the compulsory traffic of the kernel: every
 * operand read once, every result written once).
 *
 *   build/bench/bench_profile [--layers L --d-model D --heads H --seq-len T --vocab V
 *                              --ffn F --batch B --threads N --steps S] [--unfused]
 *                             [--gemm-split]
 *   defaults: the bench model (6L/384/6h/T256, byte vocab, batch 8), 2 threads, 8 steps
 *   GPT-2 124M at T 1024: --layers 12 --d-model 768 --heads 12 --seq-len 1024 --vocab 50257 --batch 1
 *
 * The figures are the median over the steps of each kind's time (after one untimed warm-up
 * step), and the spread (min..max) of the step total. Single rank: communication waits of
 * tp/dp layouts are in the trainer's log (`comm` of the end line; bench/parallel.sh).
 * --unfused replays the step as it was before the fused kernels of core/kernels_fused.h (bias
 * in the GEMM's C preload, GELU backward into a zeroed buffer, residual then LayerNorm), for a
 * side-by-side ratio (run both, one after the other). --cpu-time (with --threads 1) times
 * with the process's CPU time instead of wall time, readable on a loaded machine; --peak G
 * gives the FMA peak (GFLOP/s) to compare with instead of measuring it (a wall-time probe that
 * load lowers). --gemm-split splits each GEMM into one
 * block per thread instead of the library's own threading (core/kernels.h).
 * FLOPs are model FLOPs as MFU counts them
 * (the attention's causal half not discounted): the GEMM and attention FLOPs sum to the step's
 * model FLOPs. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/adamw.h"
#include "core/attention.h"
#include "core/kernels.h"
#include "core/kernels_fused.h"
#include "core/peak.h"

enum { K_GEMM, K_ATTN, K_LN, K_GELU, K_BIAS, K_RESID, K_LOSS, K_EMBED, K_OPT, K_COPY, NK };
static const char *const kname_[NK] = {"GEMM",     "attention", "LayerNorm", "GELU",
                                       "bias",     "residual",  "loss",      "embedding",
                                       "optimizer", "copies/zeroing"};
static const int compute_[NK] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0};

static double t_[NK], flops_[NK], bytes_[NK];

/* --cpu-time (one thread only): times are the process's CPU time, which other processes
 * taking the core do not inflate; otherwise wall time */
static int cpu_time_;
static double clock_(void) {
    if (!cpu_time_) return omp_get_wtime();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* runs `call`, adding its time, FLOPs and bytes to kind k */
#define RUN_(k, fl, by, call)                                                                 \
    do {                                                                                      \
        double t0_ = clock_();                                                                \
        call;                                                                                 \
        t_[k] += clock_() - t0_;                                                              \
        flops_[k] += (double)(fl);                                                            \
        bytes_[k] += (double)(by);                                                            \
    } while (0)

typedef struct {
    int L, D, H, T, V, Vp, F, B, threads, unfused;
    size_t N;
    /* parameters, gradients, AdamW moments: one block each, same offsets */
    float *p, *g, *m, *v;
    size_t np;
    /* per layer: offsets into p/g */
    size_t *off;
    size_t wte, wpe, lnfw, lnfb;
    /* activations, per layer (L of each) */
    float *enc, *ln1, *m1, *r1, *qkv, *atty, *lse, *res2, *ln2, *m2, *r2, *fch, *fchg, *res3;
    float *lnf, *mf, *rf, *logits, *losses;
    /* work */
    float *dres, *dtmp, *dqkv, *dfcg, *dfc, *flash;
    int32_t *inp, *tgt;
} prof_t;

enum { P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_APW, P_APB, P_LN2W, P_LN2B, P_FCW, P_FCB, P_FPW, P_FPB,
       NP_ };

static float *alloc_(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "bench_profile: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = 0.02f * (float)((i * 2654435761u) % 1000) / 1000.0f - 0.01f;
    return p;
}

static void setup_(prof_t *s) {
    size_t D = (size_t)s->D, F = (size_t)s->F, N = s->N, L = (size_t)s->L;
    size_t sizes[NP_] = {D, D, D * 3 * D, 3 * D, D * D, D, D, D, D * F, F, F * D, D};
    s->off = malloc(L * NP_ * sizeof *s->off);
    size_t o = 0;
    s->wte = o, o += (size_t)s->Vp * D;
    s->wpe = o, o += (size_t)s->T * D;
    for (size_t l = 0; l < L; l++)
        for (int k = 0; k < NP_; k++) s->off[l * NP_ + k] = o, o += sizes[k];
    s->lnfw = o, o += D;
    s->lnfb = o, o += D;
    s->np = o;
    s->p = alloc_(o), s->g = alloc_(o), s->m = alloc_(o), s->v = alloc_(o);
    for (size_t i = 0; i < o; i++) s->v[i] = 1e-4f; /* positive second moments */
    s->enc = alloc_(N * D);
    s->ln1 = alloc_(L * N * D), s->m1 = alloc_(L * N), s->r1 = alloc_(L * N);
    s->qkv = alloc_(L * N * 3 * D), s->atty = alloc_(L * N * D), s->lse = alloc_(L * N * s->H);
    s->res2 = alloc_(L * N * D), s->ln2 = alloc_(L * N * D), s->m2 = alloc_(L * N);
    s->r2 = alloc_(L * N), s->fch = alloc_(L * N * F), s->fchg = alloc_(L * N * F);
    s->res3 = alloc_(L * N * D), s->lnf = alloc_(N * D), s->mf = alloc_(N), s->rf = alloc_(N);
    s->logits = alloc_(N * (size_t)s->Vp), s->losses = alloc_(N);
    s->dres = alloc_(N * D), s->dtmp = alloc_(N * D), s->dqkv = alloc_(N * 3 * D);
    s->dfcg = alloc_(N * F), s->dfc = alloc_(N * F);
    s->flash = alloc_(mpt_flash_workspace(s->B, s->T, s->D, s->H, s->threads));
    s->inp = malloc(N * sizeof *s->inp), s->tgt = malloc(N * sizeof *s->tgt);
    for (size_t i = 0; i < N; i++) {
        s->inp[i] = (int32_t)((i * 7919u) % (unsigned)s->V);
        s->tgt[i] = (int32_t)((i * 104729u + 1) % (unsigned)s->V);
    }
}

#define PW_(s, l, k) ((s)->p + (s)->off[(size_t)(l) * NP_ + (k)])
#define PG_(s, l, k) ((s)->g + (s)->off[(size_t)(l) * NP_ + (k)])
#define ACT_(s, buf, l, n) ((s)->buf + (size_t)(l) * (n))

/* GEMM flops of y(N,OC) = x(N,C) W(C,OC): forward 2 N C OC, backward twice that */
static double mm_(size_t N, size_t C, size_t OC) { return 2.0 * (double)N * C * OC; }

static void forward_(prof_t *s) {
    size_t D = (size_t)s->D, F = (size_t)s->F, N = s->N, ND = N * D, NF = N * F;
    int B = s->B, T = s->T, H = s->H;
    double attf = 4.0 * B * (double)T * T * D;
    RUN_(K_EMBED, 0, 12.0 * ND, mpt_encoder_forward(s->enc, s->inp, s->p + s->wte, s->p + s->wpe,
                                                     B, T, s->D));
    for (int l = 0; l < s->L; l++) {
        float *in = l == 0 ? s->enc : ACT_(s, res3, l - 1, ND);
        float *ln1 = ACT_(s, ln1, l, ND), *qkv = ACT_(s, qkv, l, 3 * ND);
        float *atty = ACT_(s, atty, l, ND), *res2 = ACT_(s, res2, l, ND);
        float *ln2 = ACT_(s, ln2, l, ND), *fch = ACT_(s, fch, l, NF);
        float *fchg = ACT_(s, fchg, l, NF), *res3 = ACT_(s, res3, l, ND);
        RUN_(K_LN, 0, 8.0 * ND, mpt_layernorm_forward(ln1, ACT_(s, m1, l, N), ACT_(s, r1, l, N),
                                                      in, PW_(s, l, P_LN1W), PW_(s, l, P_LN1B),
                                                      N, s->D));
        RUN_(K_GEMM, mm_(N, D, 3 * D), 0,
             mpt_matmul_forward(qkv, ln1, PW_(s, l, P_QKVW), PW_(s, l, P_QKVB), N, s->D, 3 * s->D));
        RUN_(K_ATTN, attf, 0,
             mpt_flash_forward(atty, ACT_(s, lse, l, N * H), qkv, B, T, s->D, H));
        if (s->unfused) {
            RUN_(K_GEMM, mm_(N, D, D), 0,
                 mpt_matmul_forward(s->dtmp, atty, PW_(s, l, P_APW), PW_(s, l, P_APB), N, s->D,
                                    s->D));
            RUN_(K_RESID, 0, 12.0 * ND, mpt_residual_forward(res2, in, s->dtmp, ND));
            RUN_(K_LN, 0, 8.0 * ND,
                 mpt_layernorm_forward(ln2, ACT_(s, m2, l, N), ACT_(s, r2, l, N), res2,
                                       PW_(s, l, P_LN2W), PW_(s, l, P_LN2B), N, s->D));
            RUN_(K_GEMM, mm_(N, D, F), 0,
                 mpt_matmul_forward(fch, ln2, PW_(s, l, P_FCW), PW_(s, l, P_FCB), N, s->D, s->F));
            RUN_(K_GELU, 0, 8.0 * NF, mpt_gelu_forward(fchg, fch, NF));
            RUN_(K_GEMM, mm_(N, F, D), 0,
                 mpt_matmul_forward(s->dtmp, fchg, PW_(s, l, P_FPW), PW_(s, l, P_FPB), N, s->F,
                                    s->D));
            RUN_(K_RESID, 0, 12.0 * ND, mpt_residual_forward(res3, res2, s->dtmp, ND));
            continue;
        }
        /* fused: GEMMs without bias; the bias rides in the pass that follows */
        RUN_(K_GEMM, mm_(N, D, D), 0,
             mpt_matmul_forward(s->dtmp, atty, PW_(s, l, P_APW), NULL, N, s->D, s->D));
        RUN_(K_LN, 0, 16.0 * ND,
             mpt_residual_layernorm_forward(res2, ln2, ACT_(s, m2, l, N), ACT_(s, r2, l, N), in,
                                            s->dtmp, PW_(s, l, P_APB), PW_(s, l, P_LN2W),
                                            PW_(s, l, P_LN2B), N, s->D));
        /* the c_fc GEMM and its bias + GELU (one region with --gemm-split): timed under GEMM */
        RUN_(K_GEMM, mm_(N, D, F), 0,
             mpt_matmul_bias_gelu_forward(fchg, fch, ln2, PW_(s, l, P_FCW), PW_(s, l, P_FCB), N,
                                          s->D, s->F));
        RUN_(K_GEMM, mm_(N, F, D), 0,
             mpt_matmul_forward(s->dtmp, fchg, PW_(s, l, P_FPW), NULL, N, s->F, s->D));
        RUN_(K_RESID, 0, 12.0 * ND,
             mpt_bias_residual_forward(res3, res2, s->dtmp, PW_(s, l, P_FPB), N, s->D));
    }
    RUN_(K_LN, 0, 8.0 * ND, mpt_layernorm_forward(s->lnf, s->mf, s->rf, ACT_(s, res3, s->L - 1, ND),
                                                  s->p + s->lnfw, s->p + s->lnfb, N, s->D));
    RUN_(K_GEMM, mm_(N, D, (size_t)s->V), 0,
         mpt_lmhead_forward(s->logits, s->lnf, s->p + s->wte, N, s->D, s->V, s->Vp));
    RUN_(K_LOSS, 0, 8.0 * N * (double)s->Vp,
         mpt_crossentropy_fused(s->logits, s->losses, s->tgt, N, s->V, s->Vp, 1.0f / (float)N));
    double sum = 0.0;
    RUN_(K_LOSS, 0, 4.0 * N, for (size_t i = 0; i < N; i++) sum += s->losses[i]);
    if (sum != sum) fprintf(stderr, "bench_profile: the loss is not a number\n");
}

/* the block's input-gradient GEMMs: accumulate into a zeroed buffer (unfused) or overwrite */
#define MMB_(s) ((s)->unfused ? mpt_matmul_backward : mpt_matmul_backward_set)
/* fused: the bias gradient is summed inside mpt_matmul_backward (in the GEMMs' region with
 * --gemm-split), timed under GEMM; unfused: on its own, under bias */
#define BIAS_(s, l, k) ((s)->unfused ? NULL : PG_(s, l, k))

static void backward_(prof_t *s) {
    size_t D = (size_t)s->D, F = (size_t)s->F, N = s->N, ND = N * D, NF = N * F;
    int B = s->B, T = s->T, H = s->H;
    double attb = 8.0 * B * (double)T * T * D;
    /* fused: the input-gradient GEMMs overwrite (beta = 0) instead of zeroing first */
    if (s->unfused) RUN_(K_COPY, 0, 4.0 * ND, memset(s->dtmp, 0, ND * sizeof(float)));
    RUN_(K_GEMM, 2 * mm_(N, D, (size_t)s->V), 0,
         (s->unfused ? mpt_lmhead_backward : mpt_lmhead_backward_set)(
             s->dtmp, s->g + s->wte, s->logits, s->lnf, s->p + s->wte, N, s->D,
                             s->V, s->Vp));
    RUN_(K_COPY, 0, 4.0 * ND, memset(s->dres, 0, ND * sizeof(float)));
    RUN_(K_LN, 0, 16.0 * ND, mpt_layernorm_backward(s->dres, s->g + s->lnfw, s->g + s->lnfb,
                                                    s->dtmp, ACT_(s, res3, s->L - 1, ND),
                                                    s->p + s->lnfw, s->mf, s->rf, N, s->D));
    for (int l = s->L - 1; l >= 0; l--) {
        float *in = l == 0 ? s->enc : ACT_(s, res3, l - 1, ND);
        if (s->unfused) RUN_(K_COPY, 0, 4.0 * NF, memset(s->dfcg, 0, NF * sizeof(float)));
        RUN_(K_GEMM, 2 * mm_(N, F, D), 0,
             MMB_(s)(s->dfcg, PG_(s, l, P_FPW), BIAS_(s, l, P_FPB), s->dres, ACT_(s, fchg, l, NF),
                                 PW_(s, l, P_FPW), N, s->F, s->D));
        if (s->unfused)
            RUN_(K_BIAS, 0, 4.0 * ND, mpt_bias_backward(PG_(s, l, P_FPB), s->dres, N, s->D));
        if (s->unfused) {
            RUN_(K_COPY, 0, 4.0 * NF, memset(s->dfc, 0, NF * sizeof(float)));
            RUN_(K_GELU, 0, 16.0 * NF, mpt_gelu_backward(s->dfc, ACT_(s, fch, l, NF), s->dfcg, NF));
            RUN_(K_BIAS, 0, 4.0 * NF, mpt_bias_backward(PG_(s, l, P_FCB), s->dfc, N, s->F));
        } else {
            RUN_(K_GELU, 0, 12.0 * NF,
                 mpt_gelu_backward_bias(s->dfc, PG_(s, l, P_FCB), ACT_(s, fch, l, NF), s->dfcg, N,
                                        s->F));
        }
        if (s->unfused) RUN_(K_COPY, 0, 4.0 * ND, memset(s->dtmp, 0, ND * sizeof(float)));
        RUN_(K_GEMM, 2 * mm_(N, D, F), 0,
             MMB_(s)(s->dtmp, PG_(s, l, P_FCW), NULL, s->dfc, ACT_(s, ln2, l, ND),
                                 PW_(s, l, P_FCW), N, s->D, s->F));
        /* fused: attn.c_proj's bias gradient in ln_2's backward pass, as the model does */
        RUN_(K_LN, 0, 16.0 * ND,
             mpt_layernorm_backward_colsum(s->dres, PG_(s, l, P_LN2W), PG_(s, l, P_LN2B),
                                           BIAS_(s, l, P_APB), s->dtmp, ACT_(s, res2, l, ND),
                                           PW_(s, l, P_LN2W), ACT_(s, m2, l, N),
                                           ACT_(s, r2, l, N), N, s->D));
        if (s->unfused) RUN_(K_COPY, 0, 4.0 * ND, memset(s->dtmp, 0, ND * sizeof(float)));
        RUN_(K_GEMM, 2 * mm_(N, D, D), 0,
             MMB_(s)(s->dtmp, PG_(s, l, P_APW), NULL, s->dres, ACT_(s, atty, l, ND),
                     PW_(s, l, P_APW), N, s->D, s->D));
        if (s->unfused)
            RUN_(K_BIAS, 0, 4.0 * ND, mpt_bias_backward(PG_(s, l, P_APB), s->dres, N, s->D));
        if (s->unfused) { /* zeroed, then accumulated into */
            RUN_(K_COPY, 0, 12.0 * ND, memset(s->dqkv, 0, 3 * ND * sizeof(float)));
            RUN_(K_ATTN, attb, 0,
                 mpt_flash_backward(s->dqkv, s->dtmp, ACT_(s, atty, l, ND),
                                    ACT_(s, lse, l, N * H), ACT_(s, qkv, l, 3 * ND), B, T, s->D,
                                    H, s->flash, s->threads));
        } else { /* overwritten, as the model does: the zeroing inside the kernel's region */
            RUN_(K_ATTN, attb, 0,
                 mpt_flash_backward_set(s->dqkv, s->dtmp, ACT_(s, atty, l, ND),
                                        ACT_(s, lse, l, N * H), ACT_(s, qkv, l, 3 * ND), B, T,
                                        s->D, H, s->flash, s->threads));
        }
        if (s->unfused) RUN_(K_COPY, 0, 4.0 * ND, memset(s->dtmp, 0, ND * sizeof(float)));
        RUN_(K_GEMM, 2 * mm_(N, D, 3 * D), 0,
             MMB_(s)(s->dtmp, PG_(s, l, P_QKVW), BIAS_(s, l, P_QKVB), s->dqkv, ACT_(s, ln1, l, ND),
                                 PW_(s, l, P_QKVW), N, s->D, 3 * s->D));
        if (s->unfused)
            RUN_(K_BIAS, 0, 12.0 * ND, mpt_bias_backward(PG_(s, l, P_QKVB), s->dqkv, N, 3 * s->D));
        RUN_(K_LN, 0, 16.0 * ND,
             mpt_layernorm_backward(s->dres, PG_(s, l, P_LN1W), PG_(s, l, P_LN1B), s->dtmp, in,
                                    PW_(s, l, P_LN1W), ACT_(s, m1, l, N), ACT_(s, r1, l, N), N,
                                    s->D));
    }
    RUN_(K_EMBED, 0, 12.0 * ND, mpt_encoder_backward(s->g + s->wte, s->g + s->wpe, s->dres,
                                                      s->inp, B, T, s->D));
}

static void step_(prof_t *s, const mpt_adamw *opt, long t) {
    RUN_(K_COPY, 0, 4.0 * s->np, memset(s->g, 0, s->np * sizeof(float)));
    forward_(s);
    backward_(s);
    double ss = 0.0;
    RUN_(K_OPT, 0, 4.0 * s->np, ss = mpt_sum_squares(s->g, s->np));
    float clip = mpt_clip_factor(opt, ss > 0 ? __builtin_sqrt(ss) : 0.0);
    RUN_(K_OPT, 0, 28.0 * s->np,
         mpt_adamw_update(opt, s->p, s->g, s->m, s->v, s->np, 1e-4f, 0.1f, clip, t));
}

static int cmp_d_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median_(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d_);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int arg_(int argc, char **argv, int *i, const char *name, int *val) {
    if (strcmp(argv[*i], name) != 0 || *i + 1 >= argc) return 0;
    *val = atoi(argv[++*i]);
    return 1;
}

int main(int argc, char **argv) {
    prof_t s = {.L = 6, .D = 384, .H = 6, .T = 256, .V = 256, .F = 0, .B = 8, .threads = 2};
    int steps = 8;
    double peak_given = 0.0;
    for (int i = 1; i < argc; i++) {
        if (arg_(argc, argv, &i, "--layers", &s.L) || arg_(argc, argv, &i, "--d-model", &s.D) ||
            arg_(argc, argv, &i, "--heads", &s.H) || arg_(argc, argv, &i, "--seq-len", &s.T) ||
            arg_(argc, argv, &i, "--vocab", &s.V) || arg_(argc, argv, &i, "--ffn", &s.F) ||
            arg_(argc, argv, &i, "--batch", &s.B) || arg_(argc, argv, &i, "--threads", &s.threads) ||
            arg_(argc, argv, &i, "--steps", &steps))
            continue;
        if (strcmp(argv[i], "--unfused") == 0) {
            s.unfused = 1;
            continue;
        }
        if (strcmp(argv[i], "--gemm-split") == 0) {
            mpt_kernels_set_gemm_threading(MPT_GEMM_SPLIT);
            continue;
        }
        if (strcmp(argv[i], "--cpu-time") == 0) {
            cpu_time_ = 1;
            continue;
        }
        if (strcmp(argv[i], "--peak") == 0 && i + 1 < argc) {
            peak_given = atof(argv[++i]) * 1e9;
            continue;
        }
        fprintf(stderr, "usage: bench_profile [--layers L --d-model D --heads H --seq-len T "
                        "--vocab V --ffn F --batch B --threads N --steps S] [--unfused] "
                        "[--gemm-split] [--cpu-time] [--peak GFLOPS]\n");
        return 2;
    }
    if (s.F <= 0) s.F = 4 * s.D;
    if (s.L < 1 || s.D < 1 || s.H < 1 || s.D % s.H || s.T < 1 || s.V < 1 || s.B < 1 ||
        s.threads < 1 || steps < 1 || steps > 1000 || (cpu_time_ && s.threads != 1)) {
        fprintf(stderr, "bench_profile: sizes must be positive, heads must divide d-model, "
                        "--cpu-time needs --threads 1\n");
        return 2;
    }
    s.Vp = (s.V + 63) / 64 * 64;
    s.N = (size_t)s.B * s.T;
    omp_set_num_threads(s.threads);
    setup_(&s);

    double peak = peak_given > 0.0 ? peak_given : mpt_measure_peak_flops(s.threads, 0.5);
    double bw = mpt_measure_bandwidth(s.threads, 0.5);
    mpt_adamw opt;
    mpt_adamw_defaults(&opt);
    double kt[NK][1000], tot[1000], fl[NK], by[NK];
    step_(&s, &opt, 1); /* warm-up: first touch, library set-up */
    for (int st = 0; st < steps; st++) {
        memset(t_, 0, sizeof t_), memset(flops_, 0, sizeof flops_), memset(bytes_, 0, sizeof bytes_);
        double t0 = clock_();
        step_(&s, &opt, st + 2);
        tot[st] = clock_() - t0;
        for (int k = 0; k < NK; k++) kt[k][st] = t_[k];
    }
    memcpy(fl, flops_, sizeof fl), memcpy(by, bytes_, sizeof by);
    double med[NK], sum = 0.0, allfl = 0.0;
    for (int k = 0; k < NK; k++) med[k] = median_(kt[k], steps), sum += med[k], allfl += fl[k];
    double lo = tot[0], hi = tot[0];
    for (int st = 0; st < steps; st++) lo = tot[st] < lo ? tot[st] : lo, hi = tot[st] > hi ? tot[st] : hi;
    double step = median_(tot, steps);
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1.0;
        fclose(f);
    }

    printf("bench_profile: L%d D%d H%d T%d V%d F%d, batch %d, %d threads, %s kernels, GEMMs %s; "
           "median of %d steps (%s); load average %.2f\n",
           s.L, s.D, s.H, s.T, s.V, s.F, s.B, s.threads, s.unfused ? "unfused" : "fused",
           mpt_kernels_gemm_threading() == MPT_GEMM_TEAM ? "team" : "split", steps,
           cpu_time_ ? "CPU time" : "wall time", load);
    printf("%s FMA peak %.1f GFLOP/s, memory bandwidth (triad) %.1f GB/s\n",
           peak_given > 0.0 ? "given" : "measured", peak / 1e9, bw / 1e9);
    printf("\n  %-15s %9s %7s %10s %7s %9s %7s\n", "kind", "ms/step", "share", "GFLOP/s",
           "%peak", "GB/s", "%bw");
    for (int k = 0; k < NK; k++) {
        double tk = med[k] > 0 ? med[k] : 1e-30;
        printf("  %-15s %9.2f %6.1f%%", kname_[k], 1e3 * med[k], 100.0 * med[k] / sum);
        if (compute_[k]) printf(" %10.1f %6.1f%%", fl[k] / tk / 1e9, 100.0 * fl[k] / tk / peak);
        else printf(" %10s %7s", "", "");
        if (!compute_[k]) printf(" %9.1f %6.1f%%", by[k] / tk / 1e9, 100.0 * by[k] / tk / bw);
        printf("\n");
    }
    printf("  %-15s %9.2f %6.1f%%\n", "sum of kinds", 1e3 * sum, 100.0);
    printf("\nstep %.2f ms (median; min %.2f, max %.2f), %.0f tokens/s, MFU %.1f%% "
           "(%.2f GFLOP model FLOPs per step)\n",
           1e3 * step, 1e3 * lo, 1e3 * hi, (double)s.N / step, 100.0 * allfl / step / peak,
           allfl / 1e9);
    return 0;
}
