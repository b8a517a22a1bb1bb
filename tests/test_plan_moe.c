/* test_plan_moe.c — Mixture-of-Experts and expert parallelism in the planner (issue 13):
 *  1. Memory: the runtime's tables for MoE (plan/memplan.c through plan/stage_plan.c): at
 *     ZeRO 0, ep 2 holds E/2 experts per block (the parameter bytes drop by exactly the other
 *     half's elements x 4); at ZeRO 1 every rank holds every expert (sharded over dp, as the
 *     runtime does); --moe-dropless-bound shrinks the dispatch buffers; bad MoE layouts fail
 *     with MPT_ERR_INPUT as the trainer refuses them.
 *  2. Cost (plan/cost_moe.c): the FLOPs a step adds over the dense model of the same shape are
 *     the router's, the active experts' (top-K of E: K x N rows, times c under a capacity
 *     c < 1), the gate gradients' and the aux / z losses', counted per MoE block
 *     (--moe-every 2, pipeline stages holding different blocks); the all-to-alls' bytes are
 *     4 per MoE block and micro-batch (two forward, two backward) of K x N rows, 6 with full
 *     recompute; an ep group that spans nodes pays the inter-node link; --moe-imbalance
 *     lengthens the step and leaves the FLOPs.
 *  3. cpu-here's measured MoE figures (plan/calib_moe.c, cluster.h moe_*, par_moe): with them
 *     the block's experts take 4 S D F FLOPs per part at the measured rate (scaled by the
 *     GEMM curve from the calibration's rows per expert to the block's; experts of 2 x 768^3
 *     FLOPs or more at the dense roofline's time, in between geometrically), moe.c's own code
 *     moe_row x S x D per pass, the all-to-alls are added as before, and the FLOPs are those of
 *     the unmeasured model; a rank of two threads runs the experts at 2 x par_moe and its own
 *     code at one core's rate, a rank of one thread on a busy node at busy_*; the calibration
 *     measures positive figures with par_moe in (0, 1]; a measured MPI all-to-all bandwidth
 *     (mpi_alltoall_bw) prices the all-to-all within a node. In a checking build
 *     (MPT_TEST_SMALL) the calibration runs its same calls, one thread and two, on a smaller
 *     block with fewer repetitions (mpt_moe_calib_opts), with the same checks.
 *  4. Search: a model whose experts do not fit one device is given a layout with ep > 1, and
 *     the best layout without expert parallelism is clearly slower (printed with its time): 16
 *     A100s, 8 in a checking build. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "plan/cost_moe.h"
#include "plan/search.h"
#include "plan/sim.h"

static void job_(mpt_plan_job *j, int L, int D, int H, int T, int E, int K, int every,
                 int batch) {
    mpt_error err;
    mpt_plan_job_defaults(j);
    CHECK(mpt_plan_model(&j->cfg, "tiny", &err) == MPT_OK, "tiny");
    j->cfg.n_layer = L, j->cfg.d_model = D, j->cfg.n_head = H, j->cfg.ffn = 4 * D;
    j->cfg.n_positions = T, j->cfg.experts = E, j->cfg.top_k = K, j->cfg.moe_every = every;
    j->batch = batch;
    j->seq_len = T;
    j->threads = 1;
}

static size_t mem_(const mpt_plan_job *j, const mpt_plan_layout *l, int kind) {
    mpt_plan_memory m;
    mpt_error err;
    if (mpt_plan_memory_eval(j, l, &m, &err)) {
        CHECK(0, "memory: %s", err.msg);
        return 0;
    }
    return kind < 0 ? m.worst.total : m.worst.bytes[kind];
}

static void memory_(void) {
    mpt_plan_job j;
    job_(&j, 4, 64, 4, 64, 8, 2, 2, 8); /* blocks 0 and 2 MoE */
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.dp = 2;
    size_t p1 = mem_(&j, &l, MPT_MEM_PARAMS);
    l.ep = 2;
    size_t p2 = mem_(&j, &l, MPT_MEM_PARAMS);
    double D = 64, F = 256, expert = 2 * D * F + F + D;
    size_t want = (size_t)(4 * 2 * 4 * expert); /* 4 of the 8 experts, 2 MoE blocks, fp32 */
    printf("ZeRO 0, dp 2: parameters %zu B at ep 1, %zu B at ep 2 (%zu B fewer; 4 experts x 2 "
           "blocks x %.0f elements x 4 B = %zu)\n", p1, p2, p1 - p2, expert, want);
    CHECK(p1 - p2 == want, "ep 2 holds E/2 experts: %zu fewer bytes, want %zu", p1 - p2, want);
    l.zero = 1;
    size_t z2 = mem_(&j, &l, MPT_MEM_PARAMS);
    l.ep = 1;
    size_t z1 = mem_(&j, &l, MPT_MEM_PARAMS);
    /* ZeRO-1 keeps parameters whole: the rank's own E/ep experts at ep 2 (parallel/ep.h) */
    CHECK(z2 == p2 && z1 == p1, "ZeRO 1 holds the rank's experts: ep 2 %zu (ZeRO 0: %zu), "
          "ep 1 %zu (ZeRO 0: %zu)", z2, p2, z1, p1);
    l.zero = 0, l.ep = 2;
    size_t a_worst = mem_(&j, &l, MPT_MEM_ACTIVATIONS);
    j.cfg.dropless_bound = 1;
    size_t a_bound = mem_(&j, &l, MPT_MEM_ACTIVATIONS);
    j.cfg.dropless_bound = 0;
    CHECK(a_bound < a_worst, "--moe-dropless-bound 1: %zu < %zu activation bytes", a_bound,
          a_worst);
    /* refused as the trainer refuses them */
    mpt_plan_memory m;
    mpt_error err;
    l.ep = 3;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "ep 3 of 8 experts");
    l.ep = 4; /* divides E but not dp 2 (cp 1) */
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "ep 4 over dp 2");
    l.ep = 2, l.tp = 2, l.sp = 1;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "experts with sp");
    l.sp = 0;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "ep 2 x tp 2: %s", err.msg);
    l.tp = 1, l.cp = 2, l.dp = 1; /* ep spans cp */
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "ep 2 over cp 2: %s", err.msg);
    j.cfg.experts = 0;
    l.cp = 1, l.dp = 2;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "ep without experts");
}

static double sim_(const mpt_plan_job *j, const mpt_plan_layout *l, const mpt_cluster *c,
                   mpt_sim_result *r) {
    mpt_error err;
    if (mpt_simulate(j, l, c, 0, r, &err)) {
        CHECK(0, "simulate: %s", err.msg);
        memset(r, 0, sizeof *r);
    }
    return r->flops_hw;
}

static void cost_(void) {
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100");
    const int L = 4, D = 256, T = 128, E = 8, K = 2, B = 4;
    mpt_plan_job moe, dense;
    job_(&moe, L, D, 4, T, E, K, 2, B);
    job_(&dense, L, D, 4, T, 0, 1, 1, B);
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    mpt_sim_result r;
    double N = (double)B * T, F = 4.0 * D;
    for (int pass = 0; pass < 3; pass++) { /* one rank; pp 2 (one MoE block per stage); c 0.5 */
        double keep = 1;
        mpt_plan_layout_defaults(&l);
        if (pass == 1) l.pp = 2;
        if (pass == 2) moe.cfg.capacity_factor = 0.5f, keep = 0.5;
        double S = N * K * keep;
        double extra = 6 * N * D * E + 16 * N * E + 2 * E + 2 * S * D + 12 * S * D * F -
                       12 * N * D * F; /* per MoE block: fwd, B and W (cost_moe.h) */
        double fm = sim_(&moe, &l, &c, &r), fd = sim_(&dense, &l, &c, &r);
        printf("FLOPs per step, %s: MoE %.6g, dense %.6g, difference %.6g, expected 2 MoE "
               "blocks x %.6g\n", pass == 0 ? "one rank" : pass == 1 ? "pp 2" : "capacity 0.5",
               fm, fd, fm - fd, extra);
        CHECK(fabs((fm - fd) - 2 * extra) <= 1e-9 * fm, "MoE FLOPs %s",
              pass == 1 ? "pp 2" : "");
    }
    moe.cfg.capacity_factor = 0;
    /* all-to-all bytes: dp 2 x ep 2, 2 micro-batches per replica */
    moe.batch = 2 * B;
    mpt_plan_layout_defaults(&l);
    l.dp = 2, l.ep = 2, l.microbatches = 2;
    sim_(&moe, &l, &c, &r);
    double Nm = (double)B / 2 * T, msg = Nm * K * (D * 4.0 + 4.0);
    double want = 2 /* micro-batches */ * 2 /* MoE blocks */ * 4 * msg / 2;
    printf("ep 2 all-to-alls: %.6g B per GPU per step (want %.6g), %.3g s\n", r.bytes_ep, want,
           r.ep_time);
    CHECK(fabs(r.bytes_ep - want) <= 1e-9 * want && r.ep_time > 0, "all-to-all bytes");
    l.recompute = MPT_RECOMPUTE_FULL;
    sim_(&moe, &l, &c, &r);
    CHECK(fabs(r.bytes_ep - 1.5 * want) <= 1e-9 * want, "full recompute: 6 all-to-alls");
    l.recompute = MPT_RECOMPUTE_NONE, l.ep = 1;
    sim_(&moe, &l, &c, &r);
    CHECK(r.bytes_ep == 0 && r.ep_time == 0, "ep 1: no all-to-all");
    /* where the ep group sits: 8 ranks of one node, or over two nodes with tp 2 */
    moe.batch = 8 * B;
    mpt_plan_layout_defaults(&l);
    l.dp = 8, l.ep = 8;
    double intra = (sim_(&moe, &l, &c, &r), r.ep_time);
    CHECK(!mpt_cost_ep_inter(&c, &l), "dp 8 x ep 8 in one node");
    l.tp = 2;
    double inter = (sim_(&moe, &l, &c, &r), r.ep_time);
    CHECK(mpt_cost_ep_inter(&c, &l), "tp 2 x ep 8 spans two nodes");
    printf("ep 8 all-to-alls: %.3g s in one node, %.3g s over two (tp 2)\n", intra, inter);
    CHECK(inter > 2 * intra, "the inter-node link is slower");
    /* --moe-imbalance: the busiest rank's experts stretch the step, the FLOPs stay */
    double t1 = (sim_(&moe, &l, &c, &r), r.step_time), f1 = r.flops_hw;
    moe.moe_imbalance = 2;
    double t2 = (sim_(&moe, &l, &c, &r), r.step_time), f2 = r.flops_hw;
    moe.moe_imbalance = 1;
    printf("imbalance 2: step %.4g s against %.4g s balanced\n", t2, t1);
    CHECK(t2 > t1 && f2 == f1, "imbalance: longer step, same FLOPs");
    l.ep = 1, l.tp = 1, l.zero = 1;
    t1 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 2;
    t2 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 1;
    CHECK(t2 == t1, "ep 1: one rank runs every row, whatever the imbalance");
}

/* 2b. routing: the busiest ep rank's rows (cost_moe.h's mpt_cost_moe_uniform_max) against a
 * sampling of the uniform router it models (each token to k distinct experts of E drawn at
 * random; rank r holds experts [r E/ep, (r+1) E/ep)), the capacity's cap and the
 * oversubscribed node (the waiting ep partners yield their core: the node's work stays the
 * mean's). */
static unsigned long long rng_ = 88172645463325252ULL;
static unsigned rand_(unsigned n) { /* xorshift64, uniform enough in [0, n) for a test */
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return (unsigned)(rng_ % n);
}
static void routing_(void) {
    /* tokens, k, E, ep */
    const int cases[3][4] = {{2048, 2, 4, 2}, {2048, 2, 8, 4}, {512, 1, 8, 8}};
    for (int ci = 0; ci < 3; ci++) {
        int n = cases[ci][0], k = cases[ci][1], E = cases[ci][2], ep = cases[ci][3];
        const int trials = 4000;
        double sum = 0;
        for (int t = 0; t < trials; t++) {
            int load[8] = {0};
            for (int i = 0; i < n; i++) {
                int pick[8], np = 0;
                while (np < k) { /* k distinct experts */
                    int e = (int)rand_((unsigned)E), dup = 0;
                    for (int j = 0; j < np; j++) dup |= pick[j] == e;
                    if (!dup) pick[np++] = e;
                }
                for (int j = 0; j < k; j++) load[pick[j] / (E / ep)]++;
            }
            int mx = 0;
            for (int r = 0; r < ep; r++) mx = load[r] > mx ? load[r] : mx;
            sum += mx;
        }
        double mc = sum / trials / ((double)n * k / ep);
        double model = mpt_cost_moe_uniform_max(n, k, E, ep);
        printf("uniform routing, %d tokens, k %d of E %d over ep %d: busiest rank %.4f x the mean "
               "(sampled %.4f)\n", n, k, E, ep, model, mc);
        CHECK(fabs((model - 1) / (mc - 1) - 1) < 0.1,
              "uniform routing's excess: %.4g, sampled %.4g", model - 1, mc - 1);
    }
    CHECK(mpt_cost_moe_uniform_max(1e6, 2, 8, 1) == 1.0, "ep 1: no busiest rank");
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100");
    mpt_plan_job moe;
    job_(&moe, 4, 256, 4, 128, 4, 2, 1, 8);
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.dp = 2, l.ep = 2;
    mpt_sim_result r;
    double t1 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 1.25;
    double t125 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 2;
    double t2 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.cfg.capacity_factor = 1.25f;
    double t2c = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 1.25;
    double t125c = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.cfg.capacity_factor = 0;
    printf("dp 2 ep 2: imbalance 1 %.4g s, 1.25 %.4g s, 2 %.4g s; capacity 1.25: 2 %.4g s\n", t1,
           t125, t2, t2c);
    CHECK(t1 < t125 && t125 < t2, "the busiest rank sets the pace");
    CHECK(t2c == t125c, "capacity 1.25: no rank runs more than 1.25 x the mean rows");
    /* 4 ranks (dp 2 x ep 2 x tp 2) on 2 cores: an imbalance below what the time-sharing leaves
     * idle does not lengthen the step */
    c.cores = 2;
    l.tp = 2;
    moe.moe_imbalance = 1;
    t1 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 1.25;
    t125 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_imbalance = 1;
    printf("dp 2 ep 2 tp 2 on 2 cores: imbalance 1 %.4g s, 1.25 %.4g s\n", t1, t125);
    CHECK(t125 == t1, "oversubscribed: the waiting partner's core goes to the busiest rank");
    /* rows dropped at capacity (--moe-dropped): on the oversubscribed node the mean rank's
     * experts run on the kept rows only; the busiest rank stays capped at the capacity; the
     * dense part is unchanged. Not dropping anything prices as before. */
    moe.cfg.capacity_factor = 1.25f;
    moe.moe_imbalance = 1.25;
    double t0d = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_dropped = 0.2;
    double t20 = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_dropped = 0.4;
    double t40 = (sim_(&moe, &l, &c, &r), r.step_time);
    printf("dp 2 ep 2 tp 2 on 2 cores, capacity 1.25: dropped 0 %.4g s, 0.2 %.4g s, 0.4 %.4g s\n",
           t0d, t20, t40);
    CHECK(t40 < t20 && t20 < t0d, "dropped rows shorten the oversubscribed step");
    CHECK(fabs((t0d - t20) - (t20 - t40)) <= 1e-9 * t0d,
          "linear in the dropped share (the experts' part only)");
    l.ep = 1, l.dp = 2, l.tp = 1, c.cores = 0;
    moe.moe_dropped = 0;
    t0d = (sim_(&moe, &l, &c, &r), r.step_time);
    moe.moe_dropped = 0.2;
    t20 = (sim_(&moe, &l, &c, &r), r.step_time);
    CHECK(t20 < t0d, "ep 1: the one rank skips the dropped rows");
    moe.moe_dropped = 0, moe.moe_imbalance = 1, moe.cfg.capacity_factor = 0;
}

/* 3. the measured MoE figures (see the header) */
static void measured_(void) {
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100");
    mpt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.d_model = 256, cfg.ffn = 512, cfg.experts = 8, cfg.top_k = 2, cfg.moe_every = 1;
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    double N = 1024, D = 256, F = 512, S = N * 2, E = 8;
    mpt_moe_cost roof, m;
    mpt_cost_moe_block(&c, &cfg, &l, N, MPT_PREC_FP32, &roof);
    c.moe_rate_f = 5e10, c.moe_rate_b = 6e10, c.moe_rate_w = 4e10;
    c.moe_row_f = 3e-9, c.moe_row_b = 5e-9, c.par_moe = 0.5;
    mpt_cost_moe_block(&c, &cfg, &l, N, MPT_PREC_FP32, &m);
    double xfl = 4 * S * D * F;
    double rf = mpt_cost_gemm(&c, MPT_PREC_FP32, N, E, D, NULL);
    double rb = mpt_cost_gemm(&c, MPT_PREC_FP32, N, D, E, NULL);
    double rw = mpt_cost_gemm(&c, MPT_PREC_FP32, D, E, N, NULL);
    printf("measured MoE figures, ep 1: forward %.4g s (experts %.4g), B %.4g, W %.4g; "
           "roofline %.4g / %.4g / %.4g\n", m.f, m.expert_f, m.b, m.w, roof.f, roof.b, roof.w);
    CHECK(fabs(m.expert_f - xfl / 5e10) <= 1e-12 * m.f && fabs(m.expert_b - xfl / 6e10) <= 1e-12 * m.b &&
              fabs(m.expert_w - (m.w - rw)) <= 1e-12 * m.w && fabs(m.w - rw - xfl / 4e10) <= 1e-12 * m.w,
          "experts: 4 S D F FLOPs per part at the measured rates");
    CHECK(fabs(m.f - (rf + xfl / 5e10 + 3e-9 * S * D)) <= 1e-12 * m.f &&
              fabs(m.b - (rb + xfl / 6e10 + 5e-9 * S * D)) <= 1e-12 * m.b,
          "forward / B: router GEMM + experts + moe_row x S x D (ep 1: no all-to-all)");
    CHECK(m.flops_f == roof.flops_f && m.flops_b == roof.flops_b && m.flops_w == roof.flops_w,
          "the measured figures change seconds, not FLOPs");
    /* ep 2: the rank sends and receives S rows; forward adds the counts and two all-to-alls */
    l.dp = 2, l.ep = 2;
    mpt_moe_cost e2;
    mpt_cost_moe_block(&c, &cfg, &l, N, MPT_PREC_FP32, &e2);
    double msg = S * (D * 4 + 4), a2a = mpt_cost_alltoall(&c, 2, msg, 0);
    double counts = mpt_cost_alltoall(&c, 2, 4.0 * 2, 0);
    CHECK(fabs(e2.ep_time_f - (counts + 2 * a2a)) <= 1e-15 && fabs(e2.ep_time_b - 2 * a2a) <= 1e-15 &&
              fabs(e2.ep_bytes - 4 * msg / 2) <= 1e-9 * e2.ep_bytes,
          "ep 2: all-to-alls of S (D x 4 + 4) bytes, half of them leaving the rank");
    CHECK(fabs(e2.f - (rf + e2.expert_f + 3e-9 * S * D + counts + 2 * a2a)) <= 1e-12 * e2.f &&
              e2.expert_f < m.expert_f,
          "ep 2 forward: router, experts (half as many, of twice the rows: larger GEMMs), own "
          "code and the all-to-alls");
    /* a measured MPI_Ialltoallv (bench/mpi_pingpong.c's mpi_alltoall_bw) replaces the link */
    mpt_cluster ca = c;
    ca.mpi_alltoall_bw = 1e9;
    CHECK(fabs(mpt_cost_alltoall(&ca, 2, msg, 0) - (ca.intra_lat + 0.5 * msg / 1e9)) <= 1e-15 &&
              mpt_cost_alltoall(&ca, 2, msg, 1) == mpt_cost_alltoall(&c, 2, msg, 1),
          "all-to-all at the measured MPI bandwidth within a node, the link's across nodes");
    l.dp = 1, l.ep = 1;
    /* fewer rows per expert: the GEMM curve's efficiency ratio (calibrated at 256 rows) */
    for (int i = 0; i < MPT_GEMM_CURVE; i++) c.gemm_curve[i] = 0.3 + 0.1 * i; /* K 32 ... 1024 */
    cfg.experts = 16, cfg.top_k = 2; /* 128 rows per expert */
    mpt_cost_moe_block(&c, &cfg, &l, N, MPT_PREC_FP32, &m);
    double adj = mpt_cluster_gemm_eff(&c, 128, F, D) / mpt_cluster_gemm_eff(&c, 256, 512, 256);
    printf("128 rows per expert: efficiency ratio %.4f against the calibration's 256\n", adj);
    CHECK(adj < 1 && fabs(m.expert_f - xfl / (5e10 * adj)) <= 1e-12 * m.f,
          "experts at 128 rows: the measured rate times the curve's ratio");
    cfg.experts = 8;
    /* experts as large as the dense sgemm's 768^3: the dense roofline's time; in between, in
     * between */
    mpt_cluster cr = c;
    cr.moe_rate_f = cr.moe_rate_b = cr.moe_rate_w = 0;
    mpt_config big = cfg;
    big.d_model = 768, big.ffn = 3072, big.experts = 2, big.top_k = 1; /* 512 rows per expert */
    mpt_moe_cost mb, rbig;
    mpt_cost_moe_block(&c, &big, &l, N, MPT_PREC_FP32, &mb);
    mpt_cost_moe_block(&cr, &big, &l, N, MPT_PREC_FP32, &rbig);
    CHECK(fabs(mb.expert_f - rbig.expert_f) <= 1e-12 * mb.f &&
              fabs(mb.expert_w - rbig.expert_w) <= 1e-12 * mb.w,
          "experts of 2 x 512 x 768 x 3072 FLOPs (> 2 x 768^3): the dense roofline's seconds");
    big.d_model = 512, big.ffn = 512, big.experts = 4, big.top_k = 2; /* 512 x 512 x 512 */
    mpt_cost_moe_block(&c, &big, &l, N, MPT_PREC_FP32, &mb);
    mpt_cost_moe_block(&cr, &big, &l, N, MPT_PREC_FP32, &rbig);
    double small = 4 * S * 512 * 512 / 5e10, wgt = log(2.0 * 512 * 512 * 512 / (2.0 * 256 * 256 * 512)) /
                                                  log(768.0 * 768 * 768 / (256.0 * 256 * 512));
    printf("experts of 512^3: %.4g s (measured rate %.4g s, roofline %.4g s, weight %.3f)\n",
           mb.expert_f, small, rbig.expert_f, wgt);
    CHECK(fabs(mb.expert_f - exp((1 - wgt) * log(small) + wgt * log(rbig.expert_f))) <=
              1e-9 * mb.expert_f,
          "experts in between: geometric in log FLOPs between the measured and roofline times");
    /* a rank's share of cpu-here's cores */
    mpt_cluster h = c;
    h.cores = 2, h.par_eff = 0.9, h.busy_gemm = 0.8, h.busy_ew = 0.7;
    mpt_cluster t = h, b = h;
    mpt_cluster_rank_share(&t, 1, 2);
    mpt_cluster_rank_share(&b, 2, 1);
    CHECK(fabs(t.moe_rate_f - 2 * 0.5 * 5e10) <= 1 && t.moe_row_f == 3e-9 && t.moe_row_b == 5e-9,
          "one rank on two cores: experts at 2 x par_moe, moe.c's own code on one core");
    CHECK(fabs(b.moe_rate_b - 0.8 * 6e10) <= 1 && fabs(b.moe_row_f - 3e-9 / 0.7) <= 1e-20,
          "two ranks of one thread: busy_gemm and busy_ew");
    h.par_moe_row = 0.75; /* measured: moe.c's OpenMP loops on the rank's two threads */
    t = h;
    mpt_cluster_rank_share(&t, 1, 2);
    CHECK(fabs(t.moe_row_f - 3e-9 / (2 * 0.75)) <= 1e-20,
          "one rank on two cores, par_moe_row measured: moe.c's own code at 2 x par_moe_row");
    /* the calibration itself */
    mpt_cluster k;
    memset(&k, 0, sizeof k);
    k.cores = 2, k.mem_bw = 1e10;
    mpt_moe_calib_opts o;
    mpt_moe_calib_defaults(&o);
    if (check_small()) /* the same calls on 32 rows per expert (of 256), 3 samples and rounds
                        * (of 5 and 11), one team pair (of 3): under memcheck ~60 CPU-s, not
                        * ~20 minutes (.ci/run) */
        o.rows = 32, o.samples = 3, o.own_rounds = 3, o.par_rounds = 1;
    mpt_cluster_measure_moe_opts(&k, &o);
    printf("calib_moe here: experts %.3g / %.3g / %.3g GFLOP/s (F / B / W), own code %.3g / "
           "%.3g ns per row element, par_moe %.3f\n", 1e-9 * k.moe_rate_f, 1e-9 * k.moe_rate_b,
           1e-9 * k.moe_rate_w, 1e9 * k.moe_row_f, 1e9 * k.moe_row_b, k.par_moe);
    printf("calib_moe here: moe.c's own code on 2 threads: par_moe_row %.3f\n", k.par_moe_row);
    CHECK(k.par_moe_row >= 0.5 && k.par_moe_row <= 1, "par_moe_row in [1/cores, 1]");
    CHECK(k.moe_rate_f > 0 && k.moe_rate_b > 0 && k.moe_rate_w > 0 && k.par_moe > 0 &&
              k.par_moe <= 1 && k.moe_row_f >= 13 * 4 / 1e10 && k.moe_row_b >= 14 * 4 / 1e10,
          "calib_moe: positive figures, par_moe in (0, 1], own code at least its copies' bytes "
          "at the copy rate");
}

static void search_(void) {
    mpt_plan_job j;
    mpt_error err;
    mpt_plan_job_defaults(&j);
    CHECK(mpt_plan_model(&j.cfg, "gpt-1.7b", &err) == MPT_OK, "gpt-1.7b");
    j.cfg.experts = 32, j.cfg.top_k = 2, j.cfg.dropless_bound = 2;
    j.batch = 64, j.seq_len = 2048, j.precision = MPT_PREC_BF16;
    mpt_cluster c;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100");
    /* its experts alone do not fit one device */
    mpt_plan_layout one;
    mpt_plan_layout_defaults(&one);
    one.microbatches = 64;
    mpt_plan_memory m;
    CHECK(mpt_plan_memory_eval(&j, &one, &m, &err) == MPT_OK, "one GPU: %s", err.msg);
    printf("\nsearch: gpt-1.7b with 32 experts (top-2), one GPU needs %.1f GB of %.1f\n",
           m.worst.total / 1e9, c.mem_bytes / 1e9);
    CHECK(m.worst.total > c.mem_bytes, "the model fits one GPU");
    enum { MAX = 400 };
    static mpt_plan_candidate best[MAX];
    int n = 0;
    mpt_search_stats st;
    clock_t t0 = clock();
    /* checking builds: 8 GPUs (5844 layouts, 174 fit; 16: 13116, 2700), the same checks */
    int gpus = check_small() ? 8 : 16;
    CHECK(mpt_plan_search(&j, &c, gpus, 0, best, MAX, &n, &st, &err) == MPT_OK, "search: %s",
          err.msg);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("%d A100s: %ld layouts, %ld fit (%.1f s of CPU)\n", gpus, st.tried, st.fit, secs);
    CHECK(n > 0 && best[0].l.ep > 1, "the best layout has ep %d", n ? best[0].l.ep : 0);
    int k = 0; /* the best without expert parallelism */
    while (k < n && best[k].l.ep > 1) k++;
    const int show[2] = {0, k};
    for (int i = 0; i < 2 && show[i] < n; i++) {
        const mpt_plan_candidate *b = &best[show[i]];
        char s[160];
        mpt_plan_layout_str(&b->l, s, sizeof s);
        printf("  %d. %-60s %6.1f GB %8.3f s\n", show[i] + 1, s, b->mem.total / 1e9,
               b->step_time);
        CHECK(b->mem.total <= c.mem_bytes, "candidate %d does not fit", show[i] + 1);
    }
    if (k < n)
        CHECK(best[k].tokens_per_s < 0.8 * best[0].tokens_per_s,
              "ep 1 at %.0f tokens/s against %.0f", best[k].tokens_per_s,
              best[0].tokens_per_s);
}

int main(void) {
    memory_();
    cost_();
    routing_();
    measured_();
    search_();
    return check_finish();
}
