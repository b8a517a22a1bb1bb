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
 *                             [--gemm-split] [--cpu-time]
 *                             [--peak GFLOPS] [--scaling] [--ab-pair] [--pair]
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
 * load lowers). --scaling alternates steps on 1 thread and on --threads N and prints, per
 * call site, the 1-thread CPU time against the team's wall and CPU time: where the team loses
 * its share (see scaling_); --ab-pair adds steps with the backward pairs toggled. --pair runs a linear
 * layer's backward GEMMs side by side, one thread each (mpt_kernels_set_backward_pair). --gemm-split splits each GEMM into one
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
static double wall_(void) { return omp_get_wtime(); }
static double cpu_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double clock_(void) { return cpu_time_ ? cpu_() : wall_(); }

/* Call sites (--scaling): every RUN_ in the source is one site; a step sums each site's wall
 * and CPU time over its calls (the per-layer sites run L times a step). */
#define MAX_SITES_ 64
#define MAX_STEPS_ 1000
typedef struct {
    char call[52]; /* the call's text, shortened: which kernel on which buffers */
    int line, kind, calls;
    double flop, w, c;              /* this step: FLOPs, wall and CPU seconds */
    double u, crit;                 /* this step: the team's busy seconds, summed over its
                                     * threads, and per call the busiest thread's, summed */
    double t1[MAX_STEPS_];          /* per step, 1 thread: CPU seconds */
    double w2[MAX_STEPS_], c2[MAX_STEPS_]; /* per step, the team: wall and CPU seconds */
    double u2[MAX_STEPS_], k2[MAX_STEPS_]; /* per step, the team: u and crit */
    double k3[MAX_STEPS_];          /* --ab-pair: crit with the backward pairs toggled */
} site_t;
static site_t sites_[MAX_SITES_];
static int nsites_;

/* Busy time per thread of the team (--scaling): each thread's CPU clock read in a region of
 * its own before and after a call. With OMP_WAIT_POLICY=passive a waiting thread sleeps, so
 * the difference is the work that thread did in the call; other processes on the cores do
 * not inflate it (much), unlike the wall time. */
#define MAX_TEAM_ 64
static int probe_team_; /* threads to read, 0: off */
static double probe_t0_[MAX_TEAM_];
static void probe_read_(double *t) {
#pragma omp parallel num_threads(probe_team_)
    {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        t[omp_get_thread_num()] = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
}
static void probe_end_(int site) {
    double t1[MAX_TEAM_], mx = 0.0, sum = 0.0;
    probe_read_(t1);
    for (int i = 0; i < probe_team_; i++) {
        double d = t1[i] - probe_t0_[i];
        sum += d, mx = d > mx ? d : mx;
    }
    if (site >= 0) sites_[site].u += sum, sites_[site].crit += mx;
}

static int site_new_(int kind, const char *call, int line) {
    if (nsites_ == MAX_SITES_) return -1;
    site_t *x = &sites_[nsites_];
    size_t n = 0;
    for (const char *c = call; *c && n + 1 < sizeof x->call; c++) /* whitespace collapsed */
        if (!(*c == ' ' && n && x->call[n - 1] == ' ') && *c != '\n') x->call[n++] = *c;
    x->call[n] = 0, x->line = line, x->kind = kind;
    return nsites_++;
}

/* runs `call`, adding its time, FLOPs and bytes to kind k and to its call site */
#define RUN_(k, fl, by, call)                                                                 \
    do {                                                                                      \
        static int site_ = -2;                                                                \
        if (site_ == -2) site_ = site_new_(k, #call, __LINE__);                               \
        if (probe_team_) probe_read_(probe_t0_);                                              \
        double w0_ = wall_(), c0_ = cpu_();                                                   \
        call;                                                                                 \
        double w1_ = wall_(), c1_ = cpu_();                                                   \
        if (probe_team_) probe_end_(site_);                                                   \
        t_[k] += cpu_time_ ? c1_ - c0_ : w1_ - w0_;                                           \
        flops_[k] += (double)(fl);                                                            \
        bytes_[k] += (double)(by);                                                            \
        if (site_ >= 0) {                                                                     \
            sites_[site_].w += w1_ - w0_, sites_[site_].c += c1_ - c0_;                      \
            sites_[site_].flop += (double)(fl), sites_[site_].calls++;                          \
        }                                                                                     \
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
        if (s->unfused) {
            RUN_(K_GEMM, 2 * mm_(N, F, D), 0,
                 MMB_(s)(s->dfcg, PG_(s, l, P_FPW), BIAS_(s, l, P_FPB), s->dres,
                         ACT_(s, fchg, l, NF), PW_(s, l, P_FPW), N, s->F, s->D));
            RUN_(K_BIAS, 0, 4.0 * ND, mpt_bias_backward(PG_(s, l, P_FPB), s->dres, N, s->D));
            RUN_(K_COPY, 0, 4.0 * NF, memset(s->dfc, 0, NF * sizeof(float)));
            RUN_(K_GELU, 0, 16.0 * NF, mpt_gelu_backward(s->dfc, ACT_(s, fch, l, NF), s->dfcg, NF));
            RUN_(K_BIAS, 0, 4.0 * NF, mpt_bias_backward(PG_(s, l, P_FCB), s->dfc, N, s->F));
        } else { /* as the model does: the weight and bias gradients, then the input gradient
                  * and the GELU backward by row chunks (core/kernels_fused.h), filed under GEMM */
            RUN_(K_GEMM, mm_(N, F, D), 0,
                 MMB_(s)(NULL, PG_(s, l, P_FPW), BIAS_(s, l, P_FPB), s->dres,
                         ACT_(s, fchg, l, NF), PW_(s, l, P_FPW), N, s->F, s->D));
            RUN_(K_GEMM, mm_(N, F, D), 0,
                 mpt_matmul_backward_gelu_set(s->dfc, NULL, NULL, PG_(s, l, P_FCB),
                                              ACT_(s, fch, l, NF), s->dres, ACT_(s, fchg, l, NF),
                                              PW_(s, l, P_FPW), N, s->F, s->D));
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
    RUN_(K_COPY, 0, 4.0 * s->np, mpt_zero(s->g, s->np)); /* threaded, as dp.c */
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

static void sites_reset_(void) {
    for (int i = 0; i < nsites_; i++) sites_[i].w = sites_[i].c = sites_[i].flop = 0.0, sites_[i].calls = 0,
                                    sites_[i].u = sites_[i].crit = 0.0;
}

/* --scaling: three steps per round, in an order that rotates from round to round: on 1
 * thread, on the team (s->threads), and on the team with its threads' busy time read around
 * every call (probe_read_). Per call site, medians over the rounds of: t1, the 1-thread CPU
 * time; w2 and c2, the team's wall and CPU time; u2, the team's busy time summed over its
 * threads, and k2, the busiest thread's (summed per call). On an idle machine t1 / w2 is the
 * site's speed-up (ideal: the team size). On a loaded one w2 and c2 are inflated by the other
 * processes (a spinning thread waits for a descheduled one), while u2 / t1 (the work the team
 * adds: other kernels, packing twice, a shared L3) and k2 / (u2 / team) (imbalance) still
 * read: t1 / k2 is then the speed-up the site would reach on free cores, fork-join aside.
 * u2 and k2 need OMP_WAIT_POLICY=passive (waiting threads sleep instead of spinning).
 * ab_pair (--ab-pair): a fourth step per round, as the third with the backward pairs
 * (kernels.h) toggled, for k2 of both in the same interleaved rounds. */
static void scaling_(prof_t *s, const mpt_adamw *opt, int steps, int ab_pair) {
    static double t1[MAX_STEPS_], w2[MAX_STEPS_], c2[MAX_STEPS_], tmp[MAX_STEPS_];
    int nt = s->threads > MAX_TEAM_ ? MAX_TEAM_ : s->threads;
    const char *wp = getenv("OMP_WAIT_POLICY");
    omp_set_num_threads(1);
    step_(s, opt, 1); /* warm-up of both configurations */
    omp_set_num_threads(nt);
    step_(s, opt, 2);
    int nmodes = ab_pair ? 4 : 3, pair = mpt_kernels_backward_pair();
    static double wp2[MAX_STEPS_], wp3[MAX_STEPS_]; /* wall of the probed steps */
    for (int st = 0; st < steps; st++)
        for (int j = 0; j < nmodes; j++) {
            /* 0: 1 thread, 1: team, 2: team with busy probes, 3: as 2, pairs off */
            int mode = (j + st) % nmodes;
            omp_set_num_threads(mode ? nt : 1);
            probe_team_ = mode >= 2 ? nt : 0;
            mpt_kernels_set_backward_pair(mode == 3 ? !pair : pair);
            sites_reset_();
            double w0 = wall_(), c0 = cpu_();
            step_(s, opt, 3 + 3 * st + j);
            double w1 = wall_(), c1 = cpu_();
            probe_team_ = 0;
            mpt_kernels_set_backward_pair(pair);
            if (mode == 2) wp2[st] = w1 - w0;
            if (mode == 3) wp3[st] = w1 - w0;
            if (mode == 1) w2[st] = w1 - w0, c2[st] = c1 - c0;
            else if (mode == 0) t1[st] = c1 - c0;
            for (int i = 0; i < nsites_; i++) {
                site_t *x = &sites_[i];
                if (mode == 1) x->w2[st] = x->w, x->c2[st] = x->c;
                else if (mode == 2) x->u2[st] = x->u, x->k2[st] = x->crit;
                else if (mode == 3) x->k3[st] = x->crit;
                else x->t1[st] = x->c;
            }
        }
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1.0;
        fclose(f);
    }
#define MED_(a) (memcpy(tmp, (a), (size_t)steps * sizeof *tmp), median_(tmp, steps))
    double T1 = MED_(t1), W2 = MED_(w2), C2 = MED_(c2);
    printf("bench_profile --scaling: L%d D%d H%d T%d V%d F%d, batch %d, 1 thread vs %d, %s "
           "kernels, GEMMs %s%s; medians of %d rounds; load average %.2f; OMP_WAIT_POLICY %s\n"
           "t1: CPU ms on 1 thread; on %d threads w2, c2: wall, CPU ms; u2: busy ms summed over "
           "the threads, k2: the busiest thread's; t1/k2: speed-up on free cores (ideal %d)\n\n",
           s->L, s->D, s->H, s->T, s->V, s->F, s->B, nt, s->unfused ? "unfused" : "fused",
           mpt_kernels_gemm_threading() == MPT_GEMM_TEAM ? "team" : "split",
           mpt_kernels_backward_pair() ? ", backward pairs" : "", steps, load, wp ? wp : "unset (u2, k2 count spinning)", nt, nt);
    printf("  %-4s %-48s %-9s %3s %8s %8s %8s %8s %8s %6s %6s %6s %6s %7s %7s", "line", "call",
           "kind", "n", "t1", "w2", "c2", "u2", "k2", "t1/w2", "u2/t1", "imbal", "t1/k2",
           "GF/s t1", "GF/s k2");
    printf(ab_pair ? "  %8s %6s\n" : "\n", pair ? "k2 nopair" : "k2 pair", "k2/that");
    double su = 0.0, sk = 0.0, sk3 = 0.0;
    for (int i = 0; i < nsites_; i++) {
        site_t *x = &sites_[i];
        double a = MED_(x->t1), b = MED_(x->w2), c = MED_(x->c2), u = MED_(x->u2), k = MED_(x->k2);
        su += u, sk += k;
        printf("  %-4d %-48.48s %-9.9s %3d %8.2f %8.2f %8.2f %8.2f %8.2f %6.2f %6.2f %6.2f %6.2f",
               x->line, x->call, kname_[x->kind], x->calls, 1e3 * a, 1e3 * b, 1e3 * c, 1e3 * u,
               1e3 * k, b > 0 ? a / b : 0.0, a > 0 ? u / a : 0.0, u > 0 ? k * nt / u : 0.0,
               k > 0 ? a / k : 0.0);
        if (x->flop > 0 && a > 0 && k > 0) printf(" %7.1f %7.1f", x->flop / a / 1e9, x->flop / k / 1e9);
        else printf(" %7s %7s", "", "");
        if (ab_pair) {
            double k3 = MED_(x->k3);
            printf("  %8.2f %6.3f", 1e3 * k3, k3 > 0 ? k / k3 : 0.0);
            sk3 += k3;
        }
        printf("\n");
    }
    printf("\nstep: t1 %.1f ms; on %d threads w2 %.1f ms (speed-up %.2f), c2 %.1f ms; sums over "
           "the sites: u2 %.1f ms (u2/t1 %.3f), k2 %.1f ms (t1/k2 %.2f)\n",
           1e3 * T1, nt, 1e3 * W2, T1 / W2, 1e3 * C2, 1e3 * su, su / T1, 1e3 * sk, T1 / sk);
    if (ab_pair)
        printf("--ab-pair: k2 with the backward pairs %s %.1f ms (t1/k2 %.2f); k2 ratio %.3f; "
               "wall of the probed steps %.1f vs %.1f ms (ratio %.3f; idle only); the same "
               "rounds, interleaved\n", pair ? "off" : "on", 1e3 * sk3, T1 / sk3, sk / sk3,
               1e3 * MED_(wp2), 1e3 * MED_(wp3), MED_(wp2) / MED_(wp3));
#undef MED_
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
    int scaling = 0, ab_pair = 0;
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
        if (strcmp(argv[i], "--pair") == 0) {
            mpt_kernels_set_backward_pair(1);
            continue;
        }
        if (strcmp(argv[i], "--ab-pair") == 0) {
            scaling = ab_pair = 1;
            continue;
        }
        if (strcmp(argv[i], "--scaling") == 0) {
            scaling = 1;
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
                        "[--gemm-split] [--cpu-time] [--peak GFLOPS] [--scaling] [--ab-pair] [--pair]\n");
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
    mpt_adamw opt;
    mpt_adamw_defaults(&opt);
    if (scaling) {
        scaling_(&s, &opt, steps, ab_pair);
        return 0;
    }

    double peak = peak_given > 0.0 ? peak_given : mpt_measure_peak_flops(s.threads, 0.5);
    double bw = mpt_measure_bandwidth(s.threads, 0.5);
    double kt[NK][MAX_STEPS_], tot[MAX_STEPS_], fl[NK], by[NK];
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
