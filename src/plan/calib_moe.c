/* calib_moe.c — cpu-here's Mixture-of-Experts figures (cluster.h: moe_*, par_moe): the
 * runtime's own MoE MLP (model/moe.c) timed on this machine, as plan/calib.c times its
 * attention and element-wise kernels.
 *
 * One block of the calibration's shape (N_ = 512 token rows, D 256, F 512, E 4, top-2: about
 * 256 rows per expert, bench/moe.sh's expert shape) is run whole, forward and backward
 * (mpt_moe_forward, mpt_moe_backward), and its experts' work alone through the calls moe.c
 * makes (model/moe_experts.h: (expert, row tile) tasks in one parallel region) on the same
 * row counts:
 *   forward  mpt_moe_experts_forward: c_fc GEMM, bias + GELU, c_proj GEMM (+ bias)
 *   B        mpt_moe_experts_backward: dh = dy W_proj^T, GELU backward, dx = dh W_fc^T
 *   W        mpt_moe_experts_weights: dW_proj, db_proj, dW_fc, db_fc
 * On one thread (thread CPU seconds, the median of 5 samples of >= 8 ms):
 *   moe_rate_f, moe_rate_b, moe_rate_w  the experts' FLOP/s in each part (4 S D F FLOPs each,
 *                         S = N K rows sent; the GELU's and the zeroing's time included)
 *   moe_row_f, moe_row_b  seconds per sent row element (S x D) of what the whole forward /
 *                         backward takes beyond the experts' kernels and the router's GEMMs:
 *                         moe.c's own single-threaded code (softmax and top-K, the gathers into
 *                         send order, dispatch and combine (local copies at ep 1), the sort by
 *                         expert and back, the gate-weighted sum; backward the gate gradients,
 *                         the scaled rows, the sums into dx, the router softmax backward); at
 *                         least the compulsory copy traffic of that code at the copy rate
 * On every core (one copy, the process's CPU seconds over the cores: spinning at the barriers
 * of the many small regions included, as a step's time has it):
 *   par_moe               the experts' forward + B + W on every core's thread / (cores x one
 *                         core): the team scaling of these small GEMMs (par_eff is the 768^3
 *                         sgemm's)
 *   par_moe_row           moe.c's own code (moe_row_*'s difference, taken on every core's
 *                         thread) / (cores x one core): its OpenMP loops' scaling, at least
 *                         1 / cores (never slower than one thread)
 * par_moe in 3 rounds of back-to-back pairs, the median ratio (calib.c's reasoning); moe_row_*
 * in 11 rounds of the whole pass and its kernels back to back (the order alternating), the
 * median difference. About 1 CPU second. The counts and the row count are the defaults of
 * mpt_moe_calib_opts (cluster.h); mpt_cluster_measure_moe_opts takes others (checking builds'
 * tests: fewer rows and rounds, the same calls). */
#include "plan/cluster.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kernels.h"
#include "model/moe.h"
#include "model/moe_experts.h"

enum { E_ = 4, K_ = 2, D_ = MPT_MOE_CAL_D, F_ = MPT_MOE_CAL_F,
       SAMPLES_ = 5, ROUNDS_ = 3, OWN_ROUNDS_ = 11 }; /* the defaults, and the most taken */
static const double SAMPLE_S_ = 0.008;

void mpt_moe_calib_defaults(mpt_moe_calib_opts *o) {
    *o = (mpt_moe_calib_opts){.rows = MPT_MOE_CAL_ROWS, .samples = SAMPLES_,
                              .own_rounds = OWN_ROUNDS_, .par_rounds = ROUNDS_,
                              .sample_s = SAMPLE_S_};
}

/* in's figures, those outside their range (cluster.h) at the defaults */
static mpt_moe_calib_opts clamp_opts_(const mpt_moe_calib_opts *in) {
    mpt_moe_calib_opts o;
    mpt_moe_calib_defaults(&o);
    if (!in) return o;
    o.rows = in->rows > 0 && in->rows <= (1 << 20) ? in->rows : o.rows;
    o.samples = in->samples > 0 && in->samples < SAMPLES_ ? in->samples : SAMPLES_;
    o.own_rounds = in->own_rounds > 0 && in->own_rounds < OWN_ROUNDS_ ? in->own_rounds : OWN_ROUNDS_;
    o.par_rounds = in->par_rounds > 0 && in->par_rounds < ROUNDS_ ? in->par_rounds : ROUNDS_;
    o.sample_s = in->sample_s > 0 ? in->sample_s : o.sample_s;
    return o;
}

typedef struct mb_ {
    mpt_config cfg;
    mpt_moe_block b;
    float *w[1 + 4 * E_], *g[1 + 4 * E_];
    float *x, *dy, *out, *dx, *act, *work, *lg;
    float *xr, *h, *hg, *yr, *dh, *dhg, *b3; /* the experts' kernels alone: S rows at most */
    size_t rows[E_];
    int32_t off[E_ + 1];                     /* the experts' runs in send order (moe_experts.h) */
    int F;                                   /* the experts' width */
    int N;                                   /* token rows: opts.rows x E / K */
    mpt_moe_calib_opts o;
} mb_;

static double thread_cpu_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *buf_(size_t n, unsigned *seed, float scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(*seed >> 8) / 16777216.0f - 0.5f);
    }
    return p;
}

static void free_(mb_ *m) {
    for (int i = 0; i < 1 + 4 * E_; i++) free(m->w[i]), free(m->g[i]);
    float *f[] = {m->x, m->dy, m->out, m->dx, m->act, m->work, m->lg, m->xr,
                  m->h, m->hg, m->yr,  m->dh, m->dhg, m->b3};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
}

static int init_(mb_ *m, int F, const mpt_moe_calib_opts *o) {
    memset(m, 0, sizeof *m);
    m->F = F;
    m->o = *o;
    const int N_ = m->N = o->rows * E_ / K_ > 0 ? o->rows * E_ / K_ : 1;
    mpt_config *c = &m->cfg;
    c->d_model = D_, c->ffn = F, c->experts = E_, c->top_k = K_, c->moe_every = 1;
    c->aux_loss_coef = 0.01f;
    unsigned seed = 2024u;
    int ok = 1;
    for (int i = 0; i < 1 + 4 * E_; i++) {
        size_t n = i == 0 ? (size_t)D_ * E_ : (size_t[]){(size_t)D_ * F, (size_t)F, (size_t)F * D_, D_}[(i - 1) % 4];
        m->w[i] = buf_(n, &seed, i == 0 ? 0.2f : 0.1f);
        m->g[i] = buf_(n, &seed, 0.0f);
        ok = ok && m->w[i] && m->g[i];
    }
    size_t ND = (size_t)N_ * D_, S = (size_t)N_ * K_;
    m->x = buf_(ND, &seed, 2.0f), m->dy = buf_(ND, &seed, 0.01f), m->out = buf_(ND, &seed, 0);
    m->dx = buf_(ND, &seed, 0), m->lg = buf_((size_t)N_ * E_, &seed, 0);
    m->act = buf_(mpt_moe_act_elems(c, N_, 1), &seed, 0);
    m->work = buf_(mpt_moe_work_elems(c, N_, 1, 1), &seed, 0);
    m->xr = buf_(S * D_, &seed, 1), m->h = buf_(S * m->F, &seed, 1), m->hg = buf_(S * m->F, &seed, 1);
    m->yr = buf_(S * D_, &seed, 0), m->dh = buf_(S * m->F, &seed, 0);
    m->dhg = buf_(S * m->F, &seed, 0), m->b3 = buf_(S * D_, &seed, 0);
    ok = ok && m->x && m->dy && m->out && m->dx && m->lg && m->act && m->work && m->xr && m->h &&
         m->hg && m->yr && m->dh && m->dhg && m->b3;
    m->b = (mpt_moe_block){.cfg = &m->cfg, .ep = 1, .w = m->w, .g = m->g};
    mpt_moe_stats st;
    memset(&st, 0, sizeof st);
    mpt_error err = {0};
    if (!ok || mpt_moe_forward(&m->b, m->out, m->x, N_, m->act, m->work, 1.0f, &st, &err))
        return 0;
    m->off[0] = 0;
    for (int e = 0; e < E_; e++) {
        m->rows[e] = (size_t)st.tokens[e];
        m->off[e + 1] = m->off[e] + (int32_t)m->rows[e];
    }
    return 1;
}

/* Parts timed: the whole forward, the whole backward, the router's GEMMs, the experts' F, B, W. */
enum { P_FWD_, P_BWD_, P_ROUTER_, P_EF_, P_EB_, P_EW_, P_N_ };

static void run_(mb_ *m, int p) {
    mpt_error err = {0};
    const int N_ = m->N;
    switch (p) {
    case P_FWD_: mpt_moe_forward(&m->b, m->out, m->x, N_, m->act, m->work, 1.0f, NULL, &err); break;
    case P_BWD_:
        memset(m->dx, 0, (size_t)N_ * D_ * sizeof *m->dx);
        mpt_moe_backward(&m->b, m->dx, m->dy, m->x, N_, m->act, m->work, 1.0f, 0, &err);
        break;
    case P_ROUTER_:
        mpt_matmul_forward(m->lg, m->x, m->w[0], NULL, N_, D_, E_);
        mpt_matmul_backward(m->dx, m->g[0], NULL, m->lg, m->x, m->w[0], N_, D_, E_);
        break;
    case P_EF_: mpt_moe_experts_forward(m->yr, m->h, m->hg, m->xr, m->w + 1, m->off, E_, D_, m->F); break;
    case P_EB_:
        mpt_moe_experts_backward(m->b3, m->dh, m->dhg, m->yr, m->xr, m->h, m->hg, m->w + 1, m->off,
                                 E_, D_, m->F);
        break;
    case P_EW_:
        mpt_moe_experts_weights(m->g + 1, m->yr, m->dh, m->xr, m->hg, m->off, E_, D_, m->F);
        break;
    default: break;
    }
}

/* Thread CPU seconds per run of part p: the median of o.samples samples of >= o.sample_s. */
static double solo_(mb_ *m, int p) {
    double t[SAMPLES_];
    int runs = 1;
    const double min_s = m->o.sample_s;
    for (int r = -1; r < m->o.samples; r++) {
        double t0 = thread_cpu_();
        for (int i = 0; i < runs; i++) run_(m, p);
        double dt = (thread_cpu_() - t0) / runs;
        if (r < 0) runs = dt > 0 && dt < min_s ? (int)(min_s / dt) + 1 : 1;
        else t[r] = dt;
    }
    return mpt_cluster_median_(t, m->o.samples);
}

/* The experts' F + B + W once on one thread (thread CPU seconds) or on `cores` threads (the
 * process's CPU seconds over the cores). */
static double experts_(mb_ *m, int cores) {
    omp_set_num_threads(cores);
    double t0 = cores > 1 ? mpt_cluster_cpu_seconds() : thread_cpu_();
    run_(m, P_EF_), run_(m, P_EB_), run_(m, P_EW_);
    double t = cores > 1 ? (mpt_cluster_cpu_seconds() - t0) / cores : thread_cpu_() - t0;
    omp_set_num_threads(1);
    return t;
}

/* What the whole forward / backward of m takes beyond its experts' kernels and the router's
 * GEMMs, in thread CPU seconds per run: in o.own_rounds rounds, each the whole pass and its
 * kernels alone, back to back (the order alternating) (the router's forward GEMM taken as half its timed pair with the
 * backward's); the median of the rounds' differences (a difference of two medians taken apart
 * moved by as much as the figure itself under load). */
/* Part p once on `threads` threads: thread CPU seconds on one, else the process's CPU seconds
 * over the threads (as experts_ below). */
static double once_(mb_ *m, int p, int threads) {
    omp_set_num_threads(threads);
    double t0 = threads > 1 ? mpt_cluster_cpu_seconds() : thread_cpu_();
    run_(m, p);
    double t = threads > 1 ? (mpt_cluster_cpu_seconds() - t0) / threads : thread_cpu_() - t0;
    omp_set_num_threads(1);
    return t;
}
static void own_(mb_ *m, int threads, double *f, double *b) {
    double rf[OWN_ROUNDS_], rb[OWN_ROUNDS_];
    once_(m, P_FWD_, threads), once_(m, P_BWD_, threads); /* warm-up */
    for (int r = 0; r < m->o.own_rounds; r++) { /* whole passes first, then kernels first */
        double wf = 0, wb = 0, rt = 0, ef = 0, eb = 0, ew = 0;
        if (r % 2) rt = once_(m, P_ROUTER_, threads), ef = once_(m, P_EF_, threads);
        if (r % 2) eb = once_(m, P_EB_, threads), ew = once_(m, P_EW_, threads);
        wf = once_(m, P_FWD_, threads), wb = once_(m, P_BWD_, threads);
        if (!(r % 2)) rt = once_(m, P_ROUTER_, threads), ef = once_(m, P_EF_, threads);
        if (!(r % 2)) eb = once_(m, P_EB_, threads), ew = once_(m, P_EW_, threads);
        rf[r] = wf - ef - 0.5 * rt;
        rb[r] = wb - eb - ew - 0.5 * rt;
    }
    *f = mpt_cluster_median_(rf, m->o.own_rounds);
    *b = mpt_cluster_median_(rb, m->o.own_rounds);
}

void mpt_cluster_measure_moe(mpt_cluster *c) { mpt_cluster_measure_moe_opts(c, NULL); }

void mpt_cluster_measure_moe_opts(mpt_cluster *c, const mpt_moe_calib_opts *opts) {
    mb_ m;
    mpt_moe_calib_opts o = clamp_opts_(opts);
    int saved = omp_get_max_threads(), levels = omp_get_max_active_levels();
    omp_set_num_threads(1);
    omp_set_max_active_levels(1);
    if (init_(&m, F_, &o)) {
        double S = (double)m.N * K_, fl = 4.0 * S * D_ * F_;
        double ef = solo_(&m, P_EF_), eb = solo_(&m, P_EB_), ew = solo_(&m, P_EW_);
        c->moe_rate_f = ef > 0 ? fl / ef : 0;
        c->moe_rate_b = eb > 0 ? fl / eb : 0;
        c->moe_rate_w = ew > 0 ? fl / ew : 0;
        double own_f = 0, own_b = 0;
        own_(&m, 1, &own_f, &own_b);
        c->moe_row_f = own_f > 0 ? own_f / (S * D_) : 0;
        c->moe_row_b = own_b > 0 ? own_b / (S * D_) : 0;
        /* never below the bytes that code must move at the copy rate (cluster.c's mem_bw, one
         * core): forward 13 element moves per sent row element (gather 2, dispatch and combine
         * copies 2 + 2, sort and un-sort 2 + 2, the gate-weighted sum 3), backward 14 (the gate
         * gradients and scaled rows 3, the copies 4, sort and un-sort 4, the sum into dx 3).
         * Under load the difference of the whole pass and its kernels, a few percent of the
         * pass, came out as low as 0.4x that or below zero */
        if (c->mem_bw > 0) {
            double ff = 13.0 * sizeof(float) / c->mem_bw, fb = 14.0 * sizeof(float) / c->mem_bw;
            if (c->moe_row_f < ff) c->moe_row_f = ff;
            if (c->moe_row_b < fb) c->moe_row_b = fb;
        }
        int cores = c->cores < 1 ? 1 : c->cores > 64 ? 64 : c->cores;
        if (cores > 1) {
            omp_set_max_active_levels(levels);
            double r[ROUNDS_];
            experts_(&m, cores); /* warm-up of the team */
            for (int i = 0; i < o.par_rounds; i++) {
                double solo = 0, team = 0;
                if (i % 2) team = experts_(&m, cores);
                solo = experts_(&m, 1);
                if (!(i % 2)) team = experts_(&m, cores);
                r[i] = team > 0 ? solo / (cores * team) : 1;
            }
            c->par_moe = mpt_cluster_median_(r, o.par_rounds);
            if (c->par_moe > 1) c->par_moe = 1;
            /* moe.c's own code on every core's thread (its routing loops, gathers and sums
             * are OpenMP loops; the top-K and the sort by expert are not): the team scaling
             * of what the whole passes take beyond the kernels, as one rank of `cores`
             * threads runs it */
            double tf = 0, tb = 0;
            own_(&m, cores, &tf, &tb);
            double solo = own_f + own_b, team = tf + tb;
            c->par_moe_row = solo > 0 && team > 0 ? solo / (cores * team) : 1;
            if (c->par_moe_row > 1) c->par_moe_row = 1;
            if (c->par_moe_row < 1.0 / cores) c->par_moe_row = 1.0 / cores; /* no slower than one */
        } else {
            c->par_moe = c->par_moe_row = 1;
        }
    }
    free_(&m);
    omp_set_max_active_levels(levels);
    omp_set_num_threads(saved);
}
