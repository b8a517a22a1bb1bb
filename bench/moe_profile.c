/* bench/moe_profile.c — where one MoE MLP's time goes on one rank (ep 1), beside what the
 * planner's cost model (plan/cost_moe.c) prices for it.
 *
 * Times model/moe.c's mpt_moe_forward and mpt_moe_backward whole on one micro-batch of N token
 * rows, then the same library kernels moe.c calls on the same shapes, one kind at a time: the
 * router GEMM (forward and backward), each expert's c_fc / GELU / c_proj GEMMs on the row counts
 * the routing gave (forward; backward with its zeroing passes). What the whole pass takes beyond
 * those kernels is moe.c's own serial code: softmax and top-K, the row gathers and scatters
 * (dispatch, sort by expert, un-sort, combine), the gate-weighted sum, the gate and router
 * gradients. Each figure is the median of --reps runs (after one warm-up), in wall seconds.
 * Then cpu-here is calibrated (about 4 s) and plan/cost_moe.c's forward, backward and W times
 * for the same block at the same thread count are printed beside the measured ones.
 *
 *   build/bench/bench_moe_profile [--tokens N --d-model D --ffn F --experts E --top-k K
 *                                  --threads T --reps R] [--no-plan] [--cpu]
 *   --cpu times in process CPU seconds (all threads, OpenMP spin-waits included) instead of
 *   wall seconds: the figure that holds when other jobs share the cores (cpu-here's unit)
 *   defaults: the bench/moe.sh model's micro-batch (N 1024 = 4 x 256, D 256, F 512, E 8,
 *   K 2), 2 threads, 20 reps
 * Single rank, single process: the all-to-all of ep > 1 is bench/mpi_pingpong.c's.
 * First table: moe.c's own phases (model/moe.h, mpt_moe_prof), timed inside the passes, as ms,
 * share of forward + backward and, for the GEMM phases, GFLOP/s (median per phase). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "model/moe.h"
#include "plan/cluster.h"
#include "plan/cost_moe.h"

#include <time.h>

static int cpu_clock_; /* --cpu: process CPU seconds (every thread's, spin-waits included) */
static double now_(void) {
    if (!cpu_clock_) return omp_get_wtime();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median_(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *fill_(size_t n, float scale, unsigned *seed) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(*seed >> 8) / 16777216.0f - 0.5f);
    }
    return p;
}

enum { P_FWD, P_BWD, P_ROUTER_F, P_ROUTER_B, P_EXP_F, P_EXP_B, P_EXP_W, NP_ };
static const char *const pname_[NP_] = {"moe forward (whole)", "moe backward (whole)",
                                        "router GEMM fwd", "router GEMM bwd (dx, dWr)",
                                        "experts fwd (GEMMs+GELU)",
                                        "experts bwd: dx GEMMs+GELU bwd+zeroing",
                                        "experts bwd: dW, db"};

int main(int argc, char **argv) {
    int N = 1024, D = 256, F = 512, E = 8, K = 2, threads = 2, reps = 20, plan = 1;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--tokens") && more) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--d-model") && more) D = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ffn") && more) F = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--experts") && more) E = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--top-k") && more) K = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-plan")) plan = 0;
        else if (!strcmp(argv[i], "--cpu")) cpu_clock_ = 1;
        else { fprintf(stderr, "usage: see bench/moe_profile.c\n"); return 2; }
    }
    if (N < 1 || D < 1 || F < 1 || E < 1 || E > MPT_MAX_EXPERTS || K < 1 || K > E ||
        threads < 1 || reps < 1) {
        fprintf(stderr, "bad sizes\n");
        return 2;
    }
    omp_set_num_threads(threads);
    mpt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.d_model = D, cfg.ffn = F, cfg.experts = E, cfg.top_k = K, cfg.moe_every = 1;
    cfg.aux_loss_coef = 0.01f;
    unsigned seed = 12345u;
    size_t n_t = 1 + 4 * (size_t)E;
    float **w = malloc(n_t * sizeof *w), **g = malloc(n_t * sizeof *g);
    w[0] = fill_((size_t)D * E, 0.2f, &seed), g[0] = fill_((size_t)D * E, 0, &seed);
    for (int e = 0; e < E; e++) {
        size_t sz[4] = {(size_t)D * F, (size_t)F, (size_t)F * D, (size_t)D};
        for (int j = 0; j < 4; j++) {
            w[1 + 4 * e + j] = fill_(sz[j], 0.1f, &seed);
            g[1 + 4 * e + j] = fill_(sz[j], 0, &seed);
        }
    }
    mpt_moe_block b = {.cfg = &cfg, .ops = NULL, .ep = 1, .ep_rank = 0, .tp_sum = 0,
                       .w = w, .g = g};
    size_t ND = (size_t)N * D, NK = (size_t)N * K;
    float *x = fill_(ND, 2.0f, &seed), *dy = fill_(ND, 0.01f, &seed), *out = fill_(ND, 0, &seed);
    float *dx = fill_(ND, 0, &seed);
    float *act = fill_(mpt_moe_act_elems(&cfg, (size_t)N, 1), 0, &seed);
    float *work = fill_(mpt_moe_work_elems(&cfg, (size_t)N, 1, 1), 0, &seed);
    /* the kernels alone: buffers as large as moe.c's (NK rows at most on one rank) */
    float *xr = fill_(NK * D, 1.0f, &seed), *h = fill_(NK * F, 1.0f, &seed);
    float *hg = fill_(NK * F, 1.0f, &seed), *yr = fill_(NK * D, 0, &seed);
    float *dh = fill_(NK * F, 0, &seed), *dhg = fill_(NK * F, 0, &seed);
    float *b3 = fill_(NK * D, 0, &seed), *lg = fill_((size_t)N * E, 0, &seed);
    mpt_error err = {0};
    mpt_moe_stats st;
    memset(&st, 0, sizeof st);
    if (mpt_moe_forward(&b, out, x, (size_t)N, act, work, 1.0f, &st, &err)) {
        fprintf(stderr, "moe forward: %s\n", err.msg);
        return 1;
    }
    size_t rows[MPT_MAX_EXPERTS];
    for (int e = 0; e < E; e++) rows[e] = (size_t)st.tokens[e];
    double *t[NP_];
    for (int p = 0; p < NP_; p++) t[p] = calloc((size_t)reps, sizeof(double));
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = now_();
        mpt_moe_forward(&b, out, x, (size_t)N, act, work, 1.0f, NULL, &err);
        double t1 = now_();
        memset(dx, 0, ND * sizeof *dx);
        double t2 = now_();
        mpt_moe_backward(&b, dx, dy, x, (size_t)N, act, work, 1.0f, 0, &err);
        double t3 = now_();
        mpt_matmul_forward(lg, x, w[0], NULL, (size_t)N, D, E);
        double t4 = now_();
        mpt_matmul_backward(dx, g[0], NULL, lg, x, w[0], (size_t)N, D, E);
        double t5 = now_();
        size_t o = 0;
        for (int e = 0; e < E; e++) {
            float *const *we = w + 1 + 4 * e;
            mpt_matmul_forward(h + o * F, xr + o * D, we[0], we[1], rows[e], D, F);
            mpt_gelu_forward(hg + o * F, h + o * F, rows[e] * F);
            mpt_matmul_forward(yr + o * D, hg + o * F, we[2], we[3], rows[e], F, D);
            o += rows[e];
        }
        double t6 = now_();
        o = 0;
        for (int e = 0; e < E; e++) {
            float *const *we = w + 1 + 4 * e;
            memset(dhg + o * F, 0, rows[e] * F * sizeof *dhg);
            mpt_matmul_backward(dhg + o * F, NULL, NULL, yr + o * D, hg + o * F, we[2],
                                rows[e], F, D);
            memset(dh + o * F, 0, rows[e] * F * sizeof *dh);
            mpt_gelu_backward(dh + o * F, h + o * F, dhg + o * F, rows[e] * F);
            memset(b3 + o * D, 0, rows[e] * D * sizeof *b3);
            mpt_matmul_backward(b3 + o * D, NULL, NULL, dh + o * F, xr + o * D, we[0],
                                rows[e], D, F);
            o += rows[e];
        }
        double t7 = now_();
        o = 0;
        for (int e = 0; e < E; e++) {
            float *const *ge = g + 1 + 4 * e;
            mpt_matmul_backward(NULL, ge[2], ge[3], yr + o * D, hg + o * F, NULL, rows[e], F, D);
            mpt_matmul_backward(NULL, ge[0], ge[1], dh + o * F, xr + o * D, NULL, rows[e], D, F);
            o += rows[e];
        }
        double t8 = now_();
        if (r < 0) continue;
        t[P_FWD][r] = t1 - t0, t[P_BWD][r] = t3 - t2, t[P_ROUTER_F][r] = t4 - t3;
        t[P_ROUTER_B][r] = t5 - t4, t[P_EXP_F][r] = t6 - t5, t[P_EXP_B][r] = t7 - t6;
        t[P_EXP_W][r] = t8 - t7;
    }
    /* moe.c's phases, timed inside the passes */
    static const char *const phase_[MPT_MOE_NPHASE] = {
        "F router GEMM", "F softmax + top-K + gates", "F capacity, counts, aux",
        "F gather rows", "F dispatch (ep) + sort", "F experts (GEMMs, bias+GELU)",
        "F un-sort + combine (ep)", "F gate-weighted sum", "B gate grads + rows",
        "B dispatch (ep) + sort", "B experts dx (GEMMs b=0, GELU bwd)", "B experts dW, db",
        "B un-sort + combine (ep)", "B scatter-add into dx", "B router logits grad",
        "B router GEMM (dx, dWr)"};
    double *pt[MPT_MOE_NPHASE], pm[MPT_MOE_NPHASE], ptot = 0.0;
    mpt_moe_prof prof;
    memset(&prof, 0, sizeof prof);
    prof.clock = now_;
    b.prof = &prof;
    for (int p = 0; p < MPT_MOE_NPHASE; p++) pt[p] = calloc((size_t)reps, sizeof(double));
    for (int r = -1; r < reps; r++) {
        memset(prof.t, 0, sizeof prof.t);
        mpt_moe_forward(&b, out, x, (size_t)N, act, work, 1.0f, NULL, &err);
        memset(dx, 0, ND * sizeof *dx);
        mpt_moe_backward(&b, dx, dy, x, (size_t)N, act, work, 1.0f, 0, &err);
        if (r >= 0)
            for (int p = 0; p < MPT_MOE_NPHASE; p++) pt[p][r] = prof.t[p];
    }
    b.prof = NULL;
    for (int p = 0; p < MPT_MOE_NPHASE; p++) ptot += pm[p] = median_(pt[p], reps);
    double R = (double)NK, fl_e = 4.0 * R * D * F, fl_r = 2.0 * N * D * E;
    double gfl[MPT_MOE_NPHASE] = {0};
    gfl[MPT_MOE_F_ROUTER] = fl_r, gfl[MPT_MOE_F_EXPERTS] = fl_e, gfl[MPT_MOE_B_EXPERTS] = fl_e;
    gfl[MPT_MOE_B_WEIGHTS] = fl_e, gfl[MPT_MOE_B_ROUTER_GEMM] = 2 * fl_r;
    printf("moe.c phases, N %d, D %d, F %d, E %d, top-%d, %d threads, %s, median of %d:\n", N,
           D, F, E, K, threads, cpu_clock_ ? "CPU time" : "wall time", reps);
    for (int p = 0; p < MPT_MOE_NPHASE; p++) {
        printf("  %-38s %8.3f ms %5.1f%%", phase_[p], 1e3 * pm[p], 100 * pm[p] / ptot);
        if (gfl[p] > 0 && pm[p] > 0) printf("  %6.1f GFLOP/s", 1e-9 * gfl[p] / pm[p]);
        printf("\n");
    }
    printf("  %-38s %8.3f ms\n", "sum of the phases", 1e3 * ptot);
    double m[NP_];
    for (int p = 0; p < NP_; p++) m[p] = median_(t[p], reps);
    printf("MoE MLP, one rank: N %d rows, D %d, F %d, E %d, top-%d, %d threads, median of %d\n",
           N, D, F, E, K, threads, reps);
    printf("rows per expert:");
    for (int e = 0; e < E; e++) printf(" %zu", rows[e]);
    printf("\n");
    for (int p = 0; p < NP_; p++) printf("  %-42s %9.3f ms\n", pname_[p], 1e3 * m[p]);
    double glue_f = m[P_FWD] - m[P_ROUTER_F] - m[P_EXP_F];
    double glue_b = m[P_BWD] - m[P_ROUTER_B] - m[P_EXP_B] - m[P_EXP_W];
    printf("  %-42s %9.3f ms (%.0f%% of forward)\n", "forward: moe.c's own code", 1e3 * glue_f,
           100 * glue_f / m[P_FWD]);
    printf("  %-42s %9.3f ms (%.0f%% of backward)\n", "backward: moe.c's own code", 1e3 * glue_b,
           100 * glue_b / m[P_BWD]);
    printf("  per row sent (N*K = %zu): forward %.1f ns, backward %.1f ns of own code\n", NK,
           1e9 * glue_f / (double)NK, 1e9 * glue_b / (double)NK);
    if (plan) {
        mpt_cluster c;
        if (mpt_cluster_load(&c, "cpu-here", &err)) {
            fprintf(stderr, "cpu-here: %s\n", err.msg);
            return 1;
        }
        mpt_cluster_rank_share(&c, 1, threads);
        mpt_plan_layout l;
        mpt_plan_layout_defaults(&l);
        mpt_moe_cost mc;
        mpt_cost_moe_block(&c, &cfg, &l, (double)N, MPT_PREC_FP32, &mc);
        printf("cost_moe.c (cpu-here, calibrated now, %d threads): peak %.3g FLOP/s, GEMM "
               "efficiency %.3f at %d x %d x %d, mem_bw %.3g B/s\n", threads, c.peak_fp32,
               mpt_cluster_gemm_eff(&c, (double)NK / E, F, D), (int)(NK / (size_t)E), F, D,
               c.mem_bw * c.mem_eff);
        printf("  forward %.3f ms (experts %.3f), B %.3f ms (experts %.3f), W %.3f ms "
               "(experts %.3f)\n", 1e3 * mc.f, 1e3 * mc.expert_f, 1e3 * mc.b, 1e3 * mc.expert_b,
               1e3 * mc.w, 1e3 * mc.expert_w);
        printf("  measured: forward %.3f ms, backward (B+W) %.3f ms; predicted / measured: "
               "forward %.2f, backward %.2f\n", 1e3 * m[P_FWD], 1e3 * m[P_BWD],
               mc.f / m[P_FWD], (mc.b + mc.w) / m[P_BWD]);
    }
    return 0;
}
