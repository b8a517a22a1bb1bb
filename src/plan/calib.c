/* calib.c — the kernel microbenchmarks of cpu-here (see cluster.h): the runtime's own GEMM,
 * fused attention, LayerNorm, GELU, residual and cross-entropy kernels, on tensors of
 * activation size (megabytes: out of L2, in or near L3, as a small model's activations are),
 * each timed three ways:
 *   solo   one thread, the other cores idle: the per-core figures (attn_*, ew_*, gemm_curve)
 *   busy   every core runs its own single-threaded copy at once (as ranks of one thread each
 *          do): per-core rate over solo (busy_gemm, busy_attn, busy_ew): the shared L3,
 *          memory bus and clock of a loaded socket
 *   team   one copy on every core's thread (as one rank with all the cores does): rate over
 *          cores x solo (par_eff for the GEMM, par_attn, par_ew)
 * plus the GEMM efficiency curve: the one-core sgemm rate over peak of a 768 x 768 product
 * whose inner (smallest) dimension is 32 ... 1024 (cost.c interpolates it at a GEMM's smallest
 * dimension). Each figure is the median of a few runs in CPU seconds of the thread (the
 * sustained rate: neither a first run's warm-up nor a lucky quiet moment on a shared machine,
 * nor the time other work holds the core); about a second in all. */
#include "plan/cluster.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "core/attention.h"
#include "core/kernels.h"

/* One kernel call of each kind (a switch over the kernels: no closures in C). */
enum { K_LN_F_, K_LN_B_, K_GELU_F_, K_GELU_B_, K_ADD_, K_XENT_, K_ATT_F_, K_ATT_B_, K_GEMM_ };

typedef struct bufs_ {
    float *x, *y, *dy, *w, *b, *dw, *db, *mean, *rstd, *work;
    int32_t *tgt;
    int gk;      /* the GEMM's inner dimension (K_GEMM_: 768 x gk times gk x 768) */
    int threads; /* the attention backward's workspace is for so many threads */
} bufs_;

/* Shapes: LayerNorm and residual N x C; GELU N x 4C; cross-entropy N x V; attention B, T, D, H;
 * GEMM 768 x K x 768 (K <= 1024: every operand fits the N x 4C buffers). */
enum { N_ = 2048, C_ = 384, V_ = 512, AB_ = 2, AT_ = 256, AD_ = 256, AH_ = 4, GM_ = 768 };
static const int curve_k_[MPT_GEMM_CURVE] = {32, 64, 128, 256, 512, 1024};

static void run_(int k, bufs_ *u) {
    switch (k) {
    case K_LN_F_: mpt_layernorm_forward(u->y, u->mean, u->rstd, u->x, u->w, u->b, N_, C_); break;
    case K_LN_B_:
        mpt_layernorm_backward(u->y, u->dw, u->db, u->dy, u->x, u->w, u->mean, u->rstd, N_, C_);
        break;
    case K_GELU_F_: mpt_gelu_forward(u->y, u->x, (size_t)N_ * 4 * C_); break;
    case K_GELU_B_: mpt_gelu_backward(u->y, u->x, u->dy, (size_t)N_ * 4 * C_); break;
    case K_ADD_: mpt_residual_forward(u->y, u->x, u->dy, (size_t)N_ * C_); break;
    case K_XENT_: mpt_crossentropy_fused(u->y, u->mean, u->tgt, N_, V_, V_, 1.0f / N_); break;
    case K_ATT_F_: mpt_flash_forward(u->y, u->mean, u->x, AB_, AT_, AD_, AH_); break;
    case K_ATT_B_:
        mpt_flash_backward(u->dy, u->b, u->y, u->mean, u->x, AB_, AT_, AD_, AH_, u->work,
                           u->threads);
        break;
    case K_GEMM_: mpt_matmul_forward(u->y, u->x, u->dy, NULL, GM_, u->gk, GM_); break;
    default: break;
    }
}

/* CPU seconds of the calling thread. */
static double thread_cpu_(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return omp_get_wtime();
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void bufs_free_(bufs_ *u) {
    free(u->x);
    free(u->y);
    free(u->dy);
    free(u->b);
    free(u->w);
    free(u->dw);
    free(u->db);
    free(u->mean);
    free(u->rstd);
    free(u->work);
    free(u->tgt);
}

/* Allocates and fills one set of buffers for kernels on up to `threads` threads; 0 when out of
 * memory (then freed). */
static int bufs_init_(bufs_ *u, int threads) {
    size_t big = (size_t)N_ * 4 * C_; /* the largest tensor: GELU's N x 4C */
    size_t wsz = mpt_flash_workspace(AB_, AT_, AD_, AH_, threads);
    *u = (bufs_){0};
    u->threads = threads;
    u->x = malloc(big * 4);
    u->y = malloc(big * 4);
    u->dy = malloc(big * 4);
    u->b = malloc(big * 4);
    u->w = malloc((size_t)C_ * 4);
    u->dw = calloc((size_t)C_, 4);
    u->db = calloc((size_t)C_, 4);
    u->mean = malloc((size_t)N_ * 4 * 4);
    u->rstd = malloc((size_t)N_ * 4);
    u->work = wsz != SIZE_MAX ? malloc(wsz * 4) : NULL;
    u->tgt = malloc((size_t)N_ * 4);
    u->gk = GM_;
    if (!(u->x && u->y && u->dy && u->b && u->w && u->dw && u->db && u->mean && u->rstd &&
          u->work && u->tgt)) {
        bufs_free_(u);
        return 0;
    }
    for (size_t i = 0; i < big; i++) {
        u->x[i] = 1e-3f * (float)(i % 211) - 0.1f;
        u->dy[i] = 1e-3f * (float)(i % 97) - 0.05f;
        u->b[i] = u->dy[i];
        u->y[i] = 0;
    }
    for (int i = 0; i < C_; i++) u->w[i] = 1.0f;
    for (int i = 0; i < N_; i++) u->tgt[i] = (i * 7) % V_;
    return 1;
}

/* The median thread-CPU seconds of `reps` (<= 9) runs of kernel k on this thread's buffers
 * (the cross-entropy overwrites its input: refilled before each run, untimed). */
static double median_run_(int k, bufs_ *u, int reps) {
    double t[9];
    if (reps > 9) reps = 9;
    for (int r = 0; r < reps; r++) {
        if (k == K_XENT_)
            for (size_t i = 0; i < (size_t)N_ * V_; i++) u->y[i] = u->x[i];
        double t0 = thread_cpu_();
        run_(k, u);
        t[r] = thread_cpu_() - t0;
    }
    return mpt_cluster_median_(t, reps);
}

/* The kinds timed busy and team: their kernels and how many runs each. */
enum { KIND_GEMM_, KIND_ATTN_, KIND_EW_, KINDS_ };
static const int kind_k_[KINDS_][6] = {{K_GEMM_, -1},
                                       {K_ATT_F_, K_ATT_B_, -1},
                                       {K_LN_F_, K_LN_B_, K_GELU_F_, K_GELU_B_, K_ADD_, K_XENT_}};

/* Seconds of one pass over a kind's kernels (the sum of their medians) on this thread. */
static double kind_seconds_(int kind, bufs_ *u) {
    double s = 0;
    for (int i = 0; i < 6 && kind_k_[kind][i] >= 0; i++) s += median_run_(kind_k_[kind][i], u, 5);
    return s;
}

/* busy: every one of `cores` threads times the kind on its own buffers at the same time (one
 * thread each: nested OpenMP regions and the BLAS run single-threaded inside); the mean of the
 * threads' seconds. 0 when a thread could not allocate. */
static double kind_busy_(int kind, int cores) {
    double sum = 0;
    int ok = 1;
#pragma omp parallel num_threads(cores) reduction(+ : sum) reduction(&& : ok)
    {
        bufs_ u;
        if (bufs_init_(&u, 1)) {
#pragma omp barrier
            sum += kind_seconds_(kind, &u);
            bufs_free_(&u);
        } else {
#pragma omp barrier
            ok = 0;
        }
    }
    return ok ? sum / cores : 0;
}

/* team: the kind on `cores` threads, one copy; process CPU seconds over the threads (wall
 * seconds on cores of their own). */
static double kind_team_(int kind, bufs_ *u, int cores) {
    omp_set_num_threads(cores);
    u->threads = cores;
    double s = 0;
    for (int i = 0; i < 6 && kind_k_[kind][i] >= 0; i++) {
        double t[5];
        for (int r = 0; r < 5; r++) {
            if (kind_k_[kind][i] == K_XENT_)
                for (size_t j = 0; j < (size_t)N_ * V_; j++) u->y[j] = u->x[j];
            double t0 = mpt_cluster_cpu_seconds();
            run_(kind_k_[kind][i], u);
            t[r] = mpt_cluster_cpu_seconds() - t0;
        }
        s += mpt_cluster_median_(t, 5) / cores;
    }
    omp_set_num_threads(1);
    u->threads = 1;
    return s;
}

void mpt_cluster_measure_kernels(mpt_cluster *c) {
    /* busy and team run on every core, up to 64 (about 40 MB of buffers per busy thread) */
    int cores = c->cores < 1 ? 1 : c->cores > 64 ? 64 : c->cores;
    bufs_ u;
    if (!bufs_init_(&u, cores)) return;
    int saved = omp_get_max_threads(), levels = omp_get_max_active_levels();
    omp_set_num_threads(1);
    omp_set_max_active_levels(1);
    double ln = (double)N_ * C_, ge = (double)N_ * 4 * C_;
    c->ew_ln_f = median_run_(K_LN_F_, &u, 5) / ln;
    c->ew_ln_b = median_run_(K_LN_B_, &u, 5) / ln;
    c->ew_gelu_f = median_run_(K_GELU_F_, &u, 5) / ge;
    c->ew_gelu_b = median_run_(K_GELU_B_, &u, 5) / ge;
    c->ew_add = median_run_(K_ADD_, &u, 5) / ln;
    c->ew_xent = median_run_(K_XENT_, &u, 3) / ((double)N_ * V_);
    /* attention: the whole T x T products counted (cost.h), 4 B H T^2 hs forward and
     * 8 B H T^2 hs backward */
    double hs = (double)AD_ / AH_, tt = (double)AB_ * AH_ * AT_ * AT_ * hs;
    double tf = median_run_(K_ATT_F_, &u, 5), tb = median_run_(K_ATT_B_, &u, 5);
    c->attn_f = tf > 0 ? 4 * tt / tf : 0;
    c->attn_b = tb > 0 ? 8 * tt / tb : 0;
    /* the GEMM efficiency curve, over the peak (cluster.c measured it first) */
    double rate[MPT_GEMM_CURVE], best = c->peak_fp32;
    for (int i = 0; i < MPT_GEMM_CURVE; i++) {
        u.gk = curve_k_[i];
        double t = median_run_(K_GEMM_, &u, 5);
        rate[i] = t > 0 ? 2.0 * GM_ * GM_ * u.gk / t : 0;
        if (rate[i] > best) best = rate[i];
    }
    if (best > c->peak_fp32 && c->peak_fp32 > 0) { /* the peak's own run was diluted */
        c->gemm_eff *= c->peak_fp32 / best;
        c->peak_fp32 = c->peak_bf16 = best;
    }
    for (int i = 0; i < MPT_GEMM_CURVE; i++) c->gemm_curve[i] = best > 0 ? rate[i] / best : 0;
    u.gk = GM_;
    /* busy and team, per kind, against solo on the same kernels */
    double *busy[KINDS_] = {&c->busy_gemm, &c->busy_attn, &c->busy_ew};
    double *team[KINDS_] = {NULL, &c->par_attn, &c->par_ew};
    for (int k = 0; k < KINDS_; k++) {
        double solo = kind_seconds_(k, &u);
        *busy[k] = 1.0;
        if (team[k]) *team[k] = 1.0;
        if (cores < 2 || !(solo > 0)) continue;
        double b = kind_busy_(k, cores);
        if (b > 0) *busy[k] = solo / b > 1 ? 1 : solo / b;
        if (team[k]) {
            double t = kind_team_(k, &u, cores);
            if (t > 0) *team[k] = solo / (cores * t) > 1 ? 1 : solo / (cores * t);
        }
    }
    omp_set_max_active_levels(levels);
    omp_set_num_threads(saved);
    bufs_free_(&u);
}

double mpt_cluster_gemm_eff(const mpt_cluster *c, double m, double n, double k) {
    if (!(c->gemm_curve[0] > 0)) return c->gemm_eff;
    double d = m < n ? m : n;
    if (k < d) d = k;
    if (d <= curve_k_[0]) return c->gemm_curve[0] * d / curve_k_[0]; /* thinner: no reuse */
    for (int i = 1; i < MPT_GEMM_CURVE; i++)
        if (d <= curve_k_[i]) { /* linear in log2 of the dimension */
            double f = log2(d / curve_k_[i - 1]) / log2((double)curve_k_[i] / curve_k_[i - 1]);
            return c->gemm_curve[i - 1] + f * (c->gemm_curve[i] - c->gemm_curve[i - 1]);
        }
    return c->gemm_curve[MPT_GEMM_CURVE - 1];
}


size_t mpt_cluster_calib_fields(mpt_cluster *c, const char **names, double **ptrs, size_t max) {
    static const char *const curve[MPT_GEMM_CURVE] = {
        "gemm_eff_32", "gemm_eff_64", "gemm_eff_128", "gemm_eff_256", "gemm_eff_512",
        "gemm_eff_1024"};
    static const char *const other[] = {"busy_gemm", "busy_attn", "busy_ew", "par_attn",
                                        "par_ew"};
    double *op[] = {&c->busy_gemm, &c->busy_attn, &c->busy_ew, &c->par_attn, &c->par_ew};
    size_t n = 0;
    for (int i = 0; i < MPT_GEMM_CURVE; i++, n++)
        if (n < max) names[n] = curve[i], ptrs[n] = &c->gemm_curve[i];
    for (size_t i = 0; i < sizeof op / sizeof *op; i++, n++)
        if (n < max) names[n] = other[i], ptrs[n] = op[i];
    return n;
}
