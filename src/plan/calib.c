/* calib.c — the kernel microbenchmarks of cpu-here (see cluster.h): the runtime's own GEMM,
 * fused attention, LayerNorm, GELU, residual and cross-entropy kernels, on tensors of
 * activation size (megabytes: out of L2, in or near L3, as a small model's activations are),
 * each timed three ways:
 *   solo   one thread, the other cores idle: the per-core figures (attn_*, ew_*, gemm_curve)
 *   busy   every core runs its own single-threaded copy at once (as ranks of one thread each
 *          do): per-core rate over solo (busy_gemm, busy_attn, busy_ew): the shared L3,
 *          memory bus, clock of a loaded socket, and vCPUs that the hypervisor may place on
 *          two hyperthreads of one physical core
 *   team   one copy on every core's thread (as one rank with all the cores does): rate over
 *          cores x solo (par_eff for the GEMM, par_attn, par_ew)
 * plus the GEMM efficiency curve: the one-core sgemm rate over peak of a 768 x 768 product
 * whose inner (smallest) dimension is 32 ... 1024 (cost.c interpolates it at a GEMM's smallest
 * dimension). Every figure is the median of samples spread over its phase of the
 * calibration, so that one slow or one lucky moment of the VM is not the reading (a
 * calibration of single samples, or of samples taken back to back within a fraction of a
 * second, gave busy_gemm 0.53 ... 1.0 idle):
 *   solo   a warm-up run of every kernel, then 7 rounds, each one sample (an untimed run,
 *          then about 5 ms of runs back to back) of every kernel in turn; a kernel's figure
 *          is the median of its 7, in CPU seconds of the thread (the sustained rate: neither
 *          a first run's warm-up, nor the time other work or the hypervisor (steal) holds the
 *          core);
 *   busy, team  ratios, each measured in 9 rounds of back-to-back pairs (solo then busy and
 *          team, the order alternating; every sample about 14 ms of repeated passes), the
 *          rounds of the three kinds interleaved; the figure is the median of a kind's 9
 *          ratios.
 *          Busy counts the threads' own CPU seconds; team the process's CPU seconds over the
 *          cores (on idle cores the wall time, threads spinning at barriers included).
 * Why the median and not the best: see solo_rounds_. About 4 CPU seconds in all, as before
 * the rounds were spread (3.7-4.8 measured; 2-3 s of wall time expected idle, not measured;
 * 8-13 s of wall time at load 15, since CPU seconds are counted while wall seconds pass:
 * `train --mem-limit`'s suggestion runs it too, and tests/t_plan.sh gives that 20 s). */
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

/* Solo: the median thread-CPU seconds per run of each kernel in ks[0 .. n) (n <= SOLO_MAX_),
 * into t[]. One calibration's reading must not be one moment of the VM (a rank's vCPU shared
 * with a hyperthread sibling or another guest for a fraction of a second moved a kernel's
 * reading 20-60% between calibrations), so the samples are spread over the whole solo phase:
 * every kernel is warmed up once (first touch, BLAS and OpenMP set-up, the length of one run),
 * then SOLO_REPS_ rounds each take one sample of every kernel in turn, a sample being one
 * untimed run (the kernel's data back in the caches; skipped for a run of SOLO_S_ or more,
 * whose cache refill is a few per cent of it) and about SOLO_S_ seconds of runs back to back
 * (the nearest whole number, at least one); a kernel's figure is the median of its rounds. The
 * median, not the best: the training steps these figures price are medians over steps that
 * meet the same passing slow spells, and a best of n is pulled by a lucky quiet moment (a
 * turbo clock, the sibling idle) as far as one reading is by an unlucky one. The cross-entropy
 * overwrites its input: refilled before each sample, untimed, then run on its own output (the
 * same work). A kernel in ks may repeat with a different GEMM width: gks[i] (0: u->gk). */
enum { SOLO_REPS_ = 7, SOLO_MAX_ = 16 };
static const double SOLO_S_ = 0.005;
static void solo_rounds_(bufs_ *u, const int *ks, const int *gks, int n, double *t) {
    double r[SOLO_MAX_][SOLO_REPS_];
    int runs[SOLO_MAX_], gk = u->gk;
    double once[SOLO_MAX_];
    if (n > SOLO_MAX_) n = SOLO_MAX_;
    for (int rep = -1; rep < SOLO_REPS_; rep++) /* rep = -1: warm-up, and the runs per sample */
        for (int i = 0; i < n; i++) {
            int k = ks[i];
            u->gk = gks[i] > 0 ? gks[i] : gk;
            if (k == K_XENT_)
                for (size_t e = 0; e < (size_t)N_ * V_; e++) u->y[e] = u->x[e];
            int m = rep < 0 ? 1 : runs[i];
            if (rep >= 0 && once[i] < SOLO_S_) /* untimed: the caches hold this kernel's */
                run_(k, u); /* data, as in back-to-back calls (a longer run amortises it) */
            double t0 = thread_cpu_();
            for (int j = 0; j < m; j++) run_(k, u);
            double dt = (thread_cpu_() - t0) / m;
            if (rep < 0) { /* the nearest whole number of runs to SOLO_S_, at least one */
                once[i] = dt;
                runs[i] = dt > 0 ? (int)(SOLO_S_ / dt + 0.5) : 1;
                if (runs[i] < 1) runs[i] = 1;
                if (runs[i] > 64) runs[i] = 64;
            } else {
                r[i][rep] = dt;
            }
        }
    u->gk = gk;
    for (int i = 0; i < n; i++) t[i] = mpt_cluster_median_(r[i], SOLO_REPS_);
}

/* The kinds timed busy and team: their kernels. */
enum { KIND_GEMM_, KIND_ATTN_, KIND_EW_, KINDS_ };
static const int kind_k_[KINDS_][6] = {{K_GEMM_, -1},
                                       {K_ATT_F_, K_ATT_B_, -1},
                                       {K_LN_F_, K_LN_B_, K_GELU_F_, K_GELU_B_, K_ADD_, K_XENT_}};

/* Busy and team are ratios of two samples taken back to back, in ROUNDS_ rounds (the order
 * alternating), each sample at least SAMPLE_S_ seconds of passes over the kind's kernels; the
 * figure is the median of the rounds' ratios. Pairing cancels what drifts slower than a round
 * (the hypervisor moving the vCPUs, another job's phase); the length averages what is faster
 * (timer ticks, interrupts). The rounds of the three kinds are interleaved (round r of every
 * kind, then round r + 1), so each kind's rounds span the whole busy / team phase (about a
 * second) instead of a fifth of it: a slow spell of the VM of a few hundred milliseconds
 * (busy_gemm 0.53 against a median of 0.92 when all five rounds of the GEMM came within
 * 0.4 s) now falls in a minority of a kind's rounds, which the median outvotes. Nine rounds
 * of 14 ms: the time of the former five of 25 ms. */
enum { ROUNDS_ = 9 };
static const double SAMPLE_S_ = 0.014;

/* `passes` passes over the kind's kernels on u (the cross-entropy runs on its own last
 * output: the same work); seconds per pass in thread CPU time (*cpu) and wall time (*wall). */
static void kind_pass_(int kind, bufs_ *u, int passes, double *cpu, double *wall) {
    double c0 = thread_cpu_(), w0 = omp_get_wtime();
    for (int p = 0; p < passes; p++)
        for (int i = 0; i < 6 && kind_k_[kind][i] >= 0; i++) run_(kind_k_[kind][i], u);
    *cpu = (thread_cpu_() - c0) / passes;
    *wall = (omp_get_wtime() - w0) / passes;
}

/* busy: every one of `cores` threads runs the kind on its own buffers own[t] at the same time
 * (one thread each: nested OpenMP regions and the BLAS run single-threaded inside); the mean of
 * the threads' CPU seconds per pass (CPU seconds: time the hypervisor or another job takes the
 * core away is not the kernels' rate). */
static double kind_busy_(int kind, bufs_ *own, int cores, int passes) {
    double sum = 0;
#pragma omp parallel num_threads(cores) reduction(+ : sum)
    {
        double c = 0, w = 0;
        int t = omp_get_thread_num();
#pragma omp barrier
        kind_pass_(kind, &own[t], passes, &c, &w);
        sum += c;
    }
    return sum / cores;
}

/* team: the kind on `cores` threads, one copy; the process's CPU seconds per pass over the
 * cores (on cores of its own: wall seconds, a thread spinning at a barrier included; on a
 * shared machine not the time other jobs hold the cores, as the step's cpu share counts it). */
static double kind_team_(int kind, bufs_ *u, int cores, int passes, double *wall) {
    double c = 0, w = 0;
    omp_set_num_threads(cores);
    u->threads = cores;
    double p0 = mpt_cluster_cpu_seconds();
    kind_pass_(kind, u, passes, &c, &w);
    double t = (mpt_cluster_cpu_seconds() - p0) / passes / cores;
    *wall = w; /* wall seconds per pass: a team thread's sleep at a barrier counted */
    omp_set_num_threads(1);
    u->threads = 1;
    return t;
}

/* Fills busy[k] (solo / busy CPU seconds per thread) and team[k] (solo / (cores x team) CPU
 * seconds) for every kind, each at most 1; team_wall[k] the same ratio in wall seconds, not
 * clamped (a diagnostic: see cluster.h); own: one buffer set per core. */
static void kinds_compare_(bufs_ *u, bufs_ *own, int cores, double *busy, double *team,
                           double *team_wall) {
    double rb[KINDS_][ROUNDS_], rt[KINDS_][ROUNDS_], rw[KINDS_][ROUNDS_];
    int passes[KINDS_];
    u->threads = 1;
    for (int k = 0; k < KINDS_; k++) {
        double c = 0, w = 0;
        kind_pass_(k, u, 1, &c, &w); /* warm-up, and the length of one pass */
        passes[k] = c > 0 ? (int)(SAMPLE_S_ / c + 0.5) : 1; /* the nearest, at least one */
        if (passes[k] < 1) passes[k] = 1;
        if (passes[k] > 256) passes[k] = 256;
    }
    for (int r = 0; r < ROUNDS_; r++)
        for (int k = 0; k < KINDS_; k++) {
            double sc = 0, sw = 0, b = 0, t = 0, tw = 0;
            int p = passes[k];
            if (r % 2) b = kind_busy_(k, own, cores, p), t = kind_team_(k, u, cores, p, &tw);
            kind_pass_(k, u, p, &sc, &sw);
            if (!(r % 2)) b = kind_busy_(k, own, cores, p), t = kind_team_(k, u, cores, p, &tw);
            rb[k][r] = b > 0 ? sc / b : 1;
            rt[k][r] = t > 0 ? sc / (cores * t) : 1;
            rw[k][r] = tw > 0 ? sw / (cores * tw) : 1;
        }
    for (int k = 0; k < KINDS_; k++) {
        busy[k] = mpt_cluster_median_(rb[k], ROUNDS_);
        team[k] = mpt_cluster_median_(rt[k], ROUNDS_);
        team_wall[k] = mpt_cluster_median_(rw[k], ROUNDS_);
        if (busy[k] > 1) busy[k] = 1;
        if (team[k] > 1) team[k] = 1;
    }
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
    /* the solo kernels, their samples in interleaved rounds (solo_rounds_) */
    enum { NS_ = 8 + MPT_GEMM_CURVE };
    int ks[NS_] = {K_LN_F_, K_LN_B_, K_GELU_F_, K_GELU_B_, K_ADD_, K_XENT_, K_ATT_F_, K_ATT_B_};
    int gks[NS_] = {0};
    double ts[NS_];
    for (int i = 0; i < MPT_GEMM_CURVE; i++) ks[8 + i] = K_GEMM_, gks[8 + i] = curve_k_[i];
    solo_rounds_(&u, ks, gks, NS_, ts);
    c->ew_ln_f = ts[0] / ln;
    c->ew_ln_b = ts[1] / ln;
    c->ew_gelu_f = ts[2] / ge;
    c->ew_gelu_b = ts[3] / ge;
    c->ew_add = ts[4] / ln;
    c->ew_xent = ts[5] / ((double)N_ * V_);
    /* attention: the whole T x T products counted (cost.h), 4 B H T^2 hs forward and
     * 8 B H T^2 hs backward */
    double hs = (double)AD_ / AH_, tt = (double)AB_ * AH_ * AT_ * AT_ * hs;
    double tf = ts[6], tb = ts[7];
    c->attn_f = tf > 0 ? 4 * tt / tf : 0;
    c->attn_b = tb > 0 ? 8 * tt / tb : 0;
    /* the GEMM efficiency curve, over the peak (cluster.c measured it first) */
    double rate[MPT_GEMM_CURVE], best = c->peak_fp32;
    for (int i = 0; i < MPT_GEMM_CURVE; i++) {
        double t = ts[8 + i];
        rate[i] = t > 0 ? 2.0 * GM_ * GM_ * curve_k_[i] / t : 0;
        if (rate[i] > best) best = rate[i];
    }
    if (best > c->peak_fp32 && c->peak_fp32 > 0) { /* the peak's own run was diluted */
        c->gemm_eff *= c->peak_fp32 / best;
        c->peak_fp32 = c->peak_bf16 = best;
    }
    for (int i = 0; i < MPT_GEMM_CURVE; i++) c->gemm_curve[i] = best > 0 ? rate[i] / best : 0;
    u.gk = GM_;
    /* busy and team, per kind, against solo on the same kernels (one buffer set per core) */
    bufs_ *own = calloc((size_t)cores, sizeof *own);
    int ok = own != NULL;
    if (own && cores > 1) {
#pragma omp parallel num_threads(cores) reduction(&& : ok)
        ok = bufs_init_(&own[omp_get_thread_num()], 1); /* first touch on its thread */
    }
    double busy[KINDS_] = {1, 1, 1}, team[KINDS_] = {1, 1, 1}, team_wall[KINDS_] = {0, 0, 0};
    if (ok && cores > 1) kinds_compare_(&u, own, cores, busy, team, team_wall);
    for (int t = 0; own && cores > 1 && t < cores; t++) bufs_free_(&own[t]);
    free(own);
    c->busy_gemm = busy[KIND_GEMM_], c->busy_attn = busy[KIND_ATTN_], c->busy_ew = busy[KIND_EW_];
    c->par_eff = team[KIND_GEMM_], c->par_attn = team[KIND_ATTN_], c->par_ew = team[KIND_EW_];
    c->par_eff_wall = team_wall[KIND_GEMM_], c->par_attn_wall = team_wall[KIND_ATTN_];
    c->par_ew_wall = team_wall[KIND_EW_];
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
    static const char *const other[] = {"busy_gemm",        "busy_attn",
                                        "busy_ew",          "par_attn",
                                        "par_ew",           "mpi_allreduce_bw",
                                        "mpi_reduce_scatter_bw", "mpi_allgather_bw",
                                        "moe_rate_f", "moe_rate_b", "moe_rate_w",
                                        "moe_row_f", "moe_row_b", "par_moe",
                                        "mpi_alltoall_bw", "par_moe_row", "poll_share",
                                        "meet_waste_1ms", "meet_waste_8ms",
                                        "par_eff_wall", "par_attn_wall", "par_ew_wall"};
    double *op[] = {&c->busy_gemm,        &c->busy_attn,
                    &c->busy_ew,          &c->par_attn,
                    &c->par_ew,           &c->mpi_allreduce_bw,
                    &c->mpi_reduce_scatter_bw, &c->mpi_allgather_bw,
                    &c->moe_rate_f, &c->moe_rate_b, &c->moe_rate_w,
                    &c->moe_row_f, &c->moe_row_b, &c->par_moe,
                    &c->mpi_alltoall_bw, &c->par_moe_row, &c->poll_share,
                    &c->meet_waste[0], &c->meet_waste[1],
                    &c->par_eff_wall, &c->par_attn_wall, &c->par_ew_wall};
    size_t n = 0;
    for (int i = 0; i < MPT_GEMM_CURVE; i++, n++)
        if (n < max) names[n] = curve[i], ptrs[n] = &c->gemm_curve[i];
    for (size_t i = 0; i < sizeof op / sizeof *op; i++, n++)
        if (n < max) names[n] = other[i], ptrs[n] = op[i];
    return n;
}
