/* test_plan.c — the planner (src/plan/) without MPI and without allocating training state:
 *  1. ZeRO's memory structure (Rajbhandari et al. 2020, 7.5B parameters on 64 data-parallel
 *     ranks): the runtime's memory plan gives exactly 4 + 4 + 8 bytes per parameter at ZeRO 0,
 *     AdamW state / 64 at ZeRO 1, gradients / 64 at ZeRO 2 and parameters / 64 at ZeRO 3 — plus
 *     the staging / working pools the runtime's dp module adds, which the plan names itself
 *     (pool_elements). Printed beside the paper's mixed-precision figures.
 *  2. GPT-3 175B: 16 bytes x 175B ~ 2.8 TB, the plan's params+grads+optimizer summed over the
 *     ranks of one replica (tp 8 x pp 16).
 *  3. Narayanan et al. 2021 Table 1 (A100-80GB, seq 2048, vocab 51200, full recompute, bf16):
 *     `simulate`'s TFLOP/s per GPU within 10% of each published figure, printed side by side.
 *     Layouts: the table's tp, pp and GPUs; micro-batch size 1; the 1f1b schedule. The cluster
 *     is the a100-80g preset (datasheet numbers, cluster.h), not fitted to these rows.
 *  4. The layout search on 4,096 GPUs finds layouts that fit, best first.
 *  5. Bad requests fail with MPT_ERR_INPUT (ep, cp not splitting T, batch, tp, schedule);
 *     bf16 memory: the fp32 state, bf16-stored linear-layer inputs and the bf16 GEMMs'
 *     workspace (the runtime's tables).
 *  6. Activation memory is linear in T (the fused attention keeps a (B,H,T) log-sum-exp, no
 *     (B,H,T,T) buffer): GPT-2 124M, the same 8192 tokens per micro-batch, T 2048 needs at most
 *     1.15 x the activation bytes of T 1024 (the stored-probabilities kernel: 1.64); and the
 *     runtime's plan for --cp 2 counts the split (T/2 positions per rank) and the ring buffers.
 *  7. MoE under zb-h1 / zb-v with full recompute: the W pass's second recompute sends its
 *     all-to-alls again (simulate's bytes_ep: 8 per block and micro-batch, 6 with 1f1b). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "model/gpt.h"
#include "plan/memplan.h"
#include "plan/search.h"
#include "plan/sim.h"

static void job_(mpt_plan_job *j, const char *model, int batch, int T) {
    mpt_error err;
    mpt_plan_job_defaults(j);
    CHECK(mpt_plan_model(&j->cfg, model, &err) == MPT_OK, "preset %s", model);
    j->batch = batch;
    j->seq_len = T;
}

static void zero_structure_(void) {
    mpt_plan_job j;
    job_(&j, "gpt-7.5b", 64, 2048);
    const double GB = 1e9, R = 64;
    const char *paper[] = {"120", "31.4", "16.6", "1.88"};
    printf("ZeRO, 7.5B parameters on 64 ranks (fp32 here: 4 params + 4 grads + 8 AdamW = 16 "
           "bytes/param; the paper's mixed precision: 2 + 2 + 12 = 16):\n");
    printf("  stage  plan: params+grads+optimizer  ZeRO formula (sharded state)  "
           "runtime staging  paper (mixed precision)\n");
    for (int z = 0; z <= 3; z++) {
        mpt_plan_layout l;
        mpt_plan_layout_defaults(&l);
        l.dp = 64;
        l.zero = z;
        l.recompute = MPT_RECOMPUTE_FULL;
        mpt_plan_memory m;
        mpt_error err;
        CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "zero %d: %s", z, err.msg);
        double P = (double)m.worst.param_elements, pool = (double)m.worst.pool_elements;
        CHECK(fabs(P / (double)m.n_params - 1) < 1e-3, "padded table %.0f vs %lld parameters", P,
              m.n_params);
        /* the ZeRO paper's formulas for fp32, with P the plan's (padded) parameter count */
        double params = z == 3 ? 4 * P / R : 4 * P, grads = z >= 2 ? 4 * P / R : 4 * P;
        double opt = z >= 1 ? 8 * P / R : 8 * P;
        /* what the runtime adds (dp.h): ZeRO 2/3 a gradient staging pool and its reduced
         * slices; ZeRO 3 a parameter working pool */
        double staging = (z >= 2 ? 4 * (pool + pool / R) : 0) + (z == 3 ? 4 * pool : 0);
        double got_p = (double)m.worst.bytes[MPT_MEM_PARAMS];
        double got_g = (double)m.worst.bytes[MPT_MEM_GRADS];
        double got_o = (double)m.worst.bytes[MPT_MEM_OPTIMIZER];
        CHECK(got_p == params + (z == 3 ? 4 * pool : 0), "zero %d params %.0f vs %.0f", z, got_p,
              params);
        CHECK(got_g == grads + (z >= 2 ? 4 * (pool + pool / R) : 0), "zero %d grads %.0f vs %.0f",
              z, got_g, grads);
        CHECK(got_o == opt, "zero %d optimizer %.0f vs %.0f", z, got_o, opt);
        double state = params + grads + opt;
        printf("  %d      %8.2f GB                    %8.2f GB                  %6.2f GB        "
               "%s GB\n", z, (got_p + got_g + got_o) / GB, state / GB, staging / GB, paper[z]);
        /* the sharded state is 16, 4 + 4 + 8/64, 4 + 12/64, 16/64 bytes per parameter */
        const double per[] = {16, 8 + 8 / R, 4 + 12 / R, 16 / R};
        CHECK(fabs(state / (per[z] * P) - 1) < 1e-12, "zero %d: %.4f bytes/param", z,
              state / P);
        if (z == 3) /* 16 bytes x 7.5e9 / 64 = 1.875 GB, as the paper's 1.88 */
            CHECK(fabs(16 * 7.5e9 / R / GB - 1.875) < 1e-9 && fabs(state / GB - 1.875) < 0.02,
                  "ZeRO-3 state %.3f GB", state / GB);
        if (z == 0) CHECK(fabs(state / GB - 120) < 1.0, "baseline %.1f GB vs 120", state / GB);
    }
}

/* Interleaved and zb-h1 memory from the action lists (plan.h): zb-h1 keeps a set until its W,
 * so at least 1f1b's activations and the same state; interleaved v = 3 holds the same blocks
 * per rank (three chunks of a third: 36 blocks split into 4 x 3 equal chunks, as the trainer
 * requires) and its warm-up stashes more sets than 1f1b's p. */
static void schedules_(void) {
    mpt_plan_job j;
    job_(&j, "gpt-7.5b", 64, 2048);
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.tp = 4;
    l.pp = 4;
    l.dp = 2;
    l.microbatches = 8;
    mpt_plan_memory a, z, iv;
    mpt_error err;
    l.schedule = MPT_PP_1F1B;
    CHECK(mpt_plan_memory_eval(&j, &l, &a, &err) == MPT_OK, "1f1b: %s", err.msg);
    l.schedule = MPT_PP_ZB_H1;
    CHECK(mpt_plan_memory_eval(&j, &l, &z, &err) == MPT_OK, "zb-h1: %s", err.msg);
    l.schedule = MPT_PP_INTERLEAVED;
    l.virtual_stages = 3;
    CHECK(mpt_plan_memory_eval(&j, &l, &iv, &err) == MPT_OK, "interleaved: %s", err.msg);
    size_t act_a = a.worst.bytes[MPT_MEM_ACTIVATIONS], act_z = z.worst.bytes[MPT_MEM_ACTIVATIONS];
    size_t act_i = iv.worst.bytes[MPT_MEM_ACTIVATIONS];
    printf("7.5B tp4 pp4 m8, activations of the largest rank: 1f1b %.2f GB, zb-h1 %.2f GB, "
           "interleaved v3 %.2f GB\n", act_a / 1e9, act_z / 1e9, act_i / 1e9);
    CHECK(act_z >= act_a, "zb-h1 activations %zu < 1f1b's %zu", act_z, act_a);
    CHECK(z.sum[MPT_MEM_OPTIMIZER] == a.sum[MPT_MEM_OPTIMIZER] &&
              z.sum[MPT_MEM_PARAMS] == a.sum[MPT_MEM_PARAMS],
          "zb-h1 state differs from 1f1b's: optimizer %zu vs %zu", z.sum[MPT_MEM_OPTIMIZER],
          a.sum[MPT_MEM_OPTIMIZER]);
    CHECK(act_i > act_a, "interleaved activations %zu <= 1f1b's %zu", act_i, act_a);
    CHECK(iv.stages == 4 && iv.stage_layers[0] + iv.stage_layers[1] + iv.stage_layers[2] +
                                    iv.stage_layers[3] == 36, "interleaved: 36 blocks on 4 ranks");
    double ratio = (double)iv.sum[MPT_MEM_OPTIMIZER] / (double)a.sum[MPT_MEM_OPTIMIZER];
    CHECK(fabs(ratio - 1) < 0.01, "interleaved optimizer state %.4f of 1f1b's", ratio);
}

static void gpt3_(void) {
    mpt_plan_job j;
    job_(&j, "gpt3-175b", 64, 2048);
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.tp = 8;
    l.pp = 16;
    l.microbatches = 64;
    l.recompute = MPT_RECOMPUTE_FULL;
    mpt_plan_memory m;
    mpt_error err;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "gpt3: %s", err.msg);
    double state = (double)(m.sum[MPT_MEM_PARAMS] + m.sum[MPT_MEM_GRADS] +
                            m.sum[MPT_MEM_OPTIMIZER]);
    printf("GPT-3 175B (%lld parameters), tp 8 x pp 16: params+grads+optimizer summed over the "
           "128 ranks %.3f TB (16 bytes x 175e9 = 2.8 TB); largest rank %.1f GB in all\n",
           m.n_params, state / 1e12, (double)m.worst.total / 1e9);
    /* above 16 x params by exactly what the runtime stores more than once or padded: the
     * last stage's copy of the tied wte (padded vocabulary x D), the first stage's padded
     * vocabulary rows, the tensors every tensor-parallel rank keeps whole (wpe, LayerNorms,
     * the row-parallel biases, ln_f: 7 more copies), and each unit's padding to 16 elements */
    double D = 12288, Vp = 50688, L = 96, T = 2048, tp = 8;
    double extra = Vp * D + (Vp - 50257) * D + (tp - 1) * (T * D + L * 6 * D + 2 * D) +
                   (L + 2 + 16) * 16 * 128;
    printf("  = 16 x (%lld parameters + %.3g stored twice: tied head copy, tp-replicated "
           "tensors, padding)\n", m.n_params, state / 16 - (double)m.n_params);
    CHECK(state >= 16.0 * (double)m.n_params && state <= 16.0 * ((double)m.n_params + extra),
          "GPT-3 state %.6g vs 16 x %lld (+ at most %.4g)", state, m.n_params, 16 * extra);
    CHECK(fabs(state / 2.8e12 - 1) < 0.01, "GPT-3 state %.3f TB vs 2.8", state / 1e12);
}

static void narayanan_(void) {
    static const struct {
        const char *model, *params;
        int tp, pp, gpus, batch;
        double tflops;
    } rows[] = {
        {"gpt-1.7b", "1.7B", 1, 1, 32, 512, 137},    {"gpt-7.5b", "7.5B", 4, 1, 128, 512, 142},
        {"gpt-39b", "39.1B", 8, 2, 512, 1536, 138},  {"gpt-146b", "145.6B", 8, 8, 1536, 2304, 148},
        {"gpt-530b", "529.6B", 8, 35, 2520, 2520, 163},
        {"gpt-1t", "1008B", 8, 64, 3072, 3072, 163},
    };
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    printf("\nNarayanan et al. 2021, Table 1 against `mptrain simulate --cluster a100-80g` "
           "(bf16, seq 2048, full recompute, micro-batch 1, 1f1b):\n");
    printf("  %-7s %3s %3s %5s %5s | %9s %9s %7s | %8s %7s %6s\n", "params", "tp", "pp", "GPUs",
           "batch", "paper", "simulated", "error", "step s", "bubble", "MFU");
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        mpt_plan_job j;
        job_(&j, rows[i].model, rows[i].batch, 2048);
        j.precision = MPT_PREC_BF16;
        mpt_plan_layout l;
        mpt_plan_layout_defaults(&l);
        l.tp = rows[i].tp;
        l.pp = rows[i].pp;
        l.dp = rows[i].gpus / (l.tp * l.pp);
        l.microbatches = rows[i].batch / l.dp;
        l.recompute = MPT_RECOMPUTE_FULL;
        mpt_sim_result r;
        CHECK(mpt_simulate(&j, &l, &c, 0, &r, &err) == MPT_OK, "%s: %s", rows[i].model, err.msg);
        double e = r.tflops_per_gpu / rows[i].tflops - 1;
        printf("  %-7s %3d %3d %5d %5d | %9.0f %9.1f %+6.1f%% | %8.2f %6.1f%% %5.1f%%\n",
               rows[i].params, l.tp, l.pp, rows[i].gpus, rows[i].batch, rows[i].tflops,
               r.tflops_per_gpu, 100 * e, r.step_time, 100 * r.bubble, 100 * r.mfu);
        CHECK(fabs(e) <= 0.10, "%s: simulated %.1f TFLOP/s vs %.0f", rows[i].model,
              r.tflops_per_gpu, rows[i].tflops);
        CHECK(r.world == rows[i].gpus, "world %d", r.world);
        mpt_sim_result_free(&r);
    }
}

/* The search over GPT-3 175B on 4096 GPUs; in a checking build (check_small: ASan, valgrind)
 * the same search over GPT 7.5B on 64 GPUs (tests/t_plan.sh's small search), the same checks */
static void search_(void) {
    int small = check_small(), gpus = small ? 64 : 4096;
    mpt_plan_job j;
    if (small) job_(&j, "gpt-7.5b", 512, 2048);
    else job_(&j, "gpt3-175b", 1536, 2048);
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100");
    mpt_plan_candidate best[5];
    int n = 0;
    mpt_search_stats st;
    clock_t t0 = clock();
    CHECK(mpt_plan_search(&j, &c, gpus, 0, best, 5, &n, &st, &err) == MPT_OK, "search: %s",
          err.msg);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("\nsearch: %s on %d A100s, %ld layouts, %ld fit (%.1f s of CPU):\n",
           small ? "GPT 7.5B" : "GPT-3 175B", gpus, st.tried, st.fit, secs);
    CHECK(n == 5 && st.fit >= n && st.tried > st.fit, "search found %d of %ld", n, st.fit);
    for (int i = 0; i < n; i++) {
        char s[160];
        mpt_plan_layout_str(&best[i].l, s, sizeof s);
        printf("  %d. %-50s %6.1f GB %8.2f s\n", i + 1, s, best[i].mem.total / 1e9,
               best[i].step_time);
        CHECK(best[i].mem.total <= c.mem_bytes, "candidate %d does not fit", i);
        CHECK(mpt_plan_layout_world(&best[i].l) == gpus, "candidate %d world", i);
        if (i) CHECK(best[i].tokens_per_s <= best[i - 1].tokens_per_s, "order at %d", i);
    }
}

static void bad_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 8, 1024);
    mpt_plan_layout l;
    mpt_plan_memory m;
    mpt_error err;
    mpt_plan_layout_defaults(&l);
    l.ep = 2;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "ep 2 accepted");
    l.ep = 1;
    l.cp = 3; /* T 1024 does not split into 6 chunks */
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "cp 3 accepted");
    l.cp = 2;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "cp 2: %s", err.msg);
    mpt_plan_layout_defaults(&l);
    { /* bf16: the same tables; the state is the same, the linear layers' saved inputs take
       * half the activation bytes, the workspace grows (the bf16 GEMMs' operand scratch and
       * the staging of the bf16-stored activations) */
        mpt_plan_memory m32;
        CHECK(mpt_plan_memory_eval(&j, &l, &m32, &err) == MPT_OK, "fp32 memory: %s", err.msg);
        j.precision = MPT_PREC_BF16;
        CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_OK, "bf16 memory: %s", err.msg);
        int same = 1;
        for (int k = 0; k < MPT_MEM_KINDS; k++)
            if (k != MPT_MEM_WORKSPACE && k != MPT_MEM_ACTIVATIONS)
                same &= m.worst.bytes[k] == m32.worst.bytes[k];
        CHECK(same && m.worst.bytes[MPT_MEM_WORKSPACE] > m32.worst.bytes[MPT_MEM_WORKSPACE] &&
                  m.worst.bytes[MPT_MEM_ACTIVATIONS] < m32.worst.bytes[MPT_MEM_ACTIVATIONS],
              "bf16 plan: state as fp32, fewer activation bytes, more workspace");
        j.precision = MPT_PREC_FP32;
    }
    l.dp = 3;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "batch 8 on dp 3 accepted");
    l.dp = 1;
    l.tp = 5;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "tp 5 accepted");
    l.tp = 1;
    l.pp = 4;
    l.microbatches = 4;
    l.schedule = MPT_PP_INTERLEAVED;
    l.virtual_stages = 1;
    CHECK(mpt_plan_memory_eval(&j, &l, &m, &err) == MPT_ERR_INPUT, "interleaved v1 accepted");
    mpt_cluster c;
    CHECK(mpt_cluster_load(&c, "no-such-cluster", &err) == MPT_ERR_INPUT, "unknown cluster");
}

/* The runtime's per-rank plan (plan/memplan.h) of gpt2-124m, B sequences of T, cp ranks. */
static mpt_mem_plan rank_plan_(int B, int T, int cp) {
    mpt_config cfg;
    mpt_error err;
    mpt_mem_plan plan;
    memset(&plan, 0, sizeof plan);
    CHECK(mpt_config_preset(&cfg, "gpt2-124m", &err) == MPT_OK, "gpt2-124m");
    cfg.n_positions = T;
    cfg.padded_vocab = 0;
    CHECK(mpt_config_finish(&cfg, 64, &err) == MPT_OK, "gpt2-124m at T %d: %s", T, err.msg);
    mpt_layout lay = mpt_layout_make(1, cp, 1, 1, 1);
    mpt_rank_layout rl = {.zero = 0, .act_sets = 1, .recompute = MPT_RECOMPUTE_NONE,
                          .bucket_elems = 1 << 20, .threads = 2};
    CHECK(mpt_placement_init(&rl.place, &lay, cp, 0, &err) == MPT_OK, "placement: %s", err.msg);
    int layers = cfg.n_layer;
    mpt_placement_set_layers(&rl.place, &layers);
    CHECK(mpt_memplan_rank(&cfg, B, T, &rl, &plan, &err) == MPT_OK, "plan B %d T %d cp %d: %s",
          B, T, cp, err.msg);
    return plan;
}

static void linear_in_t_(void) {
    mpt_mem_plan a = rank_plan_(8, 1024, 1), b = rank_plan_(4, 2048, 1);
    double act_a = (double)a.bytes[MPT_MEM_ACTIVATIONS], act_b = (double)b.bytes[MPT_MEM_ACTIVATIONS];
    /* what the (L, B, H, T, T) probabilities of the old kernel added (minus the lse kept now) */
    double L = 12, H = 12, old_a = act_a + 4 * L * H * 8 * 1024 * (1024.0 - 1),
           old_b = act_b + 4 * L * H * 4 * 2048 * (2048.0 - 1);
    printf("\nactivations, gpt2-124m, 8192 tokens per micro-batch: T 1024 x 8 %.1f MiB, "
           "T 2048 x 4 %.1f MiB: ratio %.3f (<= 1.15; with stored probabilities %.3f)\n",
           act_a / 1048576, act_b / 1048576, act_b / act_a, old_b / old_a);
    CHECK(act_b <= 1.15 * act_a, "T 2048 needs %.3f x the activations of T 1024", act_b / act_a);
    mpt_mem_plan c = rank_plan_(4, 2048, 2);
    double act_c = (double)c.bytes[MPT_MEM_ACTIVATIONS];
    printf("cp 2, T 2048 x 4: activations %.1f MiB per rank (%.3f of one rank's), workspace "
           "%.1f MiB (one rank: %.1f MiB)\n", act_c / 1048576, act_c / act_b,
           c.bytes[MPT_MEM_WORKSPACE] / 1048576.0, b.bytes[MPT_MEM_WORKSPACE] / 1048576.0);
    /* every activation is per token except none: half the tokens, half the bytes */
    CHECK(fabs(act_c / act_b - 0.5) < 1e-9, "cp 2 activations %.0f vs %.0f", act_c, act_b);
    mpt_error err;
    mpt_config cfg;
    CHECK(mpt_config_preset(&cfg, "gpt2-124m", &err) == MPT_OK, "gpt2-124m");
    CHECK(mpt_config_finish(&cfg, 64, &err) == MPT_OK, "gpt2-124m");
    mpt_layout lay = mpt_layout_make(1, 2, 1, 1, 1);
    mpt_rank_layout rl = {.act_sets = 1, .bucket_elems = 1 << 20, .threads = 1};
    int layers = cfg.n_layer;
    mpt_mem_plan p;
    CHECK(mpt_placement_init(&rl.place, &lay, 2, 0, &err) == MPT_OK, "placement");
    mpt_placement_set_layers(&rl.place, &layers);
    CHECK(mpt_memplan_rank(&cfg, 4, 1022, &rl, &p, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "1022"), "T 1022 over cp 2 (4 chunks): %s", err.msg);
}

/* cpu-here's measured figures as the cost model reads them (plan/cluster.h): the GEMM
 * efficiency curve at a GEMM's smallest dimension, and a rank's rates from the busy (every core
 * working) and team (one rank's threads on every core) figures. Pure arithmetic, no timing. */
static void calib_use_(void) {
    mpt_cluster c;
    memset(&c, 0, sizeof c);
    c.gemm_eff = 0.42;
    CHECK(mpt_cluster_gemm_eff(&c, 768, 768, 64) == 0.42, "no curve: the flat gemm_eff");
    const double curve[MPT_GEMM_CURVE] = {0.5, 0.6, 0.7, 0.8, 0.9, 1.0}; /* K 32 ... 1024 */
    memcpy(c.gemm_curve, curve, sizeof curve);
    CHECK(fabs(mpt_cluster_gemm_eff(&c, 768, 64, 768) - 0.6) < 1e-12, "at a point");
    CHECK(fabs(mpt_cluster_gemm_eff(&c, 768, 768, 64 * sqrt(2.0)) - 0.65) < 1e-12,
          "halfway in log2");
    CHECK(fabs(mpt_cluster_gemm_eff(&c, 16, 768, 768) - 0.25) < 1e-12, "below: proportional");
    CHECK(mpt_cluster_gemm_eff(&c, 4096, 4096, 4096) == 1.0, "above: the last point");
    c.cores = 2;
    c.peak_fp32 = c.peak_bf16 = 100;
    c.mem_bw = 10;
    c.attn_f = c.attn_b = 50;
    c.ew_ln_f = 1;
    c.intra_bw = 4;
    c.busy_gemm = 0.8, c.busy_attn = 0.7, c.busy_ew = 0.5;
    c.par_eff = 0.9, c.par_attn = 0.6, c.par_ew = 0.75;
    mpt_cluster r = c;
    CHECK(mpt_cluster_rank_share(&r, 2, 1) == 1.0 && fabs(r.peak_fp32 - 80) < 1e-9 &&
              fabs(r.attn_f - 35) < 1e-9 && fabs(r.ew_ln_f - 2) < 1e-9 &&
              fabs(r.mem_bw - 5) < 1e-9 && fabs(r.intra_bw - 2) < 1e-9,
          "two one-thread ranks: the busy figures (peak %g attn %g ln %g)", r.peak_fp32, r.attn_f,
          r.ew_ln_f);
    r = c;
    CHECK(mpt_cluster_rank_share(&r, 1, 2) == 2.0 && fabs(r.peak_fp32 - 180) < 1e-9 &&
              fabs(r.attn_f - 60) < 1e-9 && fabs(r.ew_ln_f - 1 / 1.5) < 1e-9,
          "one two-thread rank: the team figures (peak %g attn %g)", r.peak_fp32, r.attn_f);
    r = c;
    CHECK(mpt_cluster_rank_share(&r, 1, 1) == 1.0 && r.peak_fp32 == 100 && r.attn_f == 50,
          "one one-thread rank on two cores: one core alone");
    r = c;
    r.busy_gemm = r.busy_attn = r.busy_ew = r.par_eff = r.par_attn = r.par_ew = 0;
    CHECK(mpt_cluster_rank_share(&r, 2, 1) == 1.0 && r.peak_fp32 == 100,
          "figures not measured (an older cluster file): taken as 1");
    /* the MPI library's measured collective bandwidths (bench/mpi_pingpong.c) price tp's
     * collectives, scaled like intra_bw; the runtime's own dp ring keeps intra_bw */
    r = c;
    r.mpi_allreduce_bw = 8;
    CHECK(mpt_cluster_rank_share(&r, 2, 1) == 1.0 && fabs(r.mpi_allreduce_bw - 4) < 1e-9,
          "mpi_allreduce_bw on a loaded socket: %g", r.mpi_allreduce_bw);
    mpt_error err;
    mpt_cluster here;
    CHECK(mpt_cluster_load(&here, "a100-80g", &err) == MPT_OK, "a100-80g");
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 8, 1024);
    double t[2][2];
    for (int lay = 0; lay < 2; lay++)
        for (int k = 0; k < 2; k++) {
            mpt_plan_layout l;
            mpt_plan_layout_defaults(&l);
            l.tp = lay ? 1 : 2;
            l.dp = lay ? 2 : 1;
            here.mpi_allreduce_bw = k ? here.intra_bw * here.intra_eff / 10 : 0;
            mpt_sim_result sr;
            CHECK(mpt_simulate(&j, &l, &here, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
            t[lay][k] = sr.step_time;
        }
    CHECK(t[0][1] > t[0][0] && t[1][1] == t[1][0],
          "a slower MPI all-reduce slows tp 2 (%g -> %g s), not dp 2 (%g -> %g s)", t[0][0],
          t[0][1], t[1][0], t[1][1]);
}

/* 2bw without a flush (train/trainer_2bw.c, m >= p, dense): a simulated step is one window of
 * the steady state, every stage busy m (F + B) of the slowest stage's time: with p 2 and m 4 on
 * a model split evenly, 1f1b's drained step over 2bw's is (m + p - 1) / m = 1.25 up to the
 * head's extra time and the messages; with m < p the trainer drains every step, so 2bw is
 * 1f1b. */
static void two_bw_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 16, 1024);
    j.cfg.vocab = 256; /* a byte vocabulary: the head does not unbalance the two stages */
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    double t[2][2], bubble[2][2];
    for (int k = 0; k < 2; k++)      /* k: 1f1b, 2bw */
        for (int mm = 0; mm < 2; mm++) { /* mm: m = 4, m = 1 */
            mpt_plan_layout l;
            mpt_plan_layout_defaults(&l);
            l.pp = 2;
            l.microbatches = mm ? 1 : 4;
            l.schedule = k ? MPT_PP_2BW : MPT_PP_1F1B;
            mpt_sim_result sr;
            CHECK(mpt_simulate(&j, &l, &c, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
            t[k][mm] = sr.pipe_time;
            bubble[k][mm] = sr.bubble;
        }
    double r = t[0][0] / t[1][0];
    printf("\ngpt2-124m (vocab 256) pp 2 m 4 on a100-80g: 1f1b %.1f ms (bubble %.3f), 2bw without a flush "
           "%.1f ms (bubble %.3f): ratio %.3f (drained: (m+p-1)/m = 1.25)\n", 1e3 * t[0][0],
           bubble[0][0], 1e3 * t[1][0], bubble[1][0], r);
    CHECK(r > 1.15 && r < 1.30, "1f1b / 2bw steady window %.3f, not about 1.25", r);
    CHECK(bubble[1][0] < 0.5 * bubble[0][0], "2bw's window bubble %.3f not below 1f1b's %.3f",
          bubble[1][0], bubble[0][0]);
    CHECK(t[1][1] == t[0][1], "m 1 < p: 2bw drains every step as 1f1b (%g vs %g s)", t[1][1],
          t[0][1]);
}

/* Full recompute with B and W apart (zb-h1, zb-v): the runtime's W pass runs each block's
 * forward again (model/gpt_pass.c, mpt_gpt_backward_weights), so the hardware FLOPs hold two
 * recomputes where an unsplit schedule (1f1b) holds one; the model FLOPs are the same. */
static void split_recompute_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 16, 1024);
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    const mpt_pp_kind kinds[3] = {MPT_PP_1F1B, MPT_PP_ZB_H1, MPT_PP_ZB_V};
    double hw[3][2], model[3][2];
    for (int k = 0; k < 3; k++)
        for (int full = 0; full < 2; full++) {
            mpt_plan_layout l;
            mpt_plan_layout_defaults(&l);
            l.pp = 2, l.microbatches = 4, l.schedule = kinds[k];
            l.recompute = full ? MPT_RECOMPUTE_FULL : MPT_RECOMPUTE_NONE;
            mpt_sim_result sr;
            CHECK(mpt_simulate(&j, &l, &c, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
            hw[k][full] = sr.flops_hw, model[k][full] = sr.flops_model;
            mpt_sim_result_free(&sr);
        }
    double once = hw[0][1] - hw[0][0];
    for (int k = 1; k < 3; k++) {
        double twice = hw[k][1] - hw[k][0];
        printf("full recompute, pp 2 m 4, %s: %.4g recomputed FLOPs (1f1b %.4g)\n",
               k == 1 ? "zb-h1" : "zb-v", twice, once);
        CHECK(fabs(twice - 2 * once) <= 1e-9 * once, "split W: two recomputes");
        CHECK(model[k][1] == model[k][0] && model[k][0] == model[0][0], "model FLOPs unchanged");
    }
}

/* The W pass's second recompute in MoE blocks (zb-h1, zb-v with pp > 1 and full recompute:
 * W runs each block's forward again, model/gpt_pass.c): its dispatch and combine all-to-alls
 * are sent again, so a step sends 8 all-to-alls per MoE block and micro-batch (forward, B's
 * recompute, W's recompute: 2 each; backward 2), twice the 4 without recompute; 1f1b's single
 * recompute sends 6. */
static void moe_w_traffic_(void) {
    mpt_plan_job j;
    job_(&j, "tiny", 16, 64);
    j.cfg.n_layer = 4, j.cfg.experts = 4, j.cfg.top_k = 2, j.cfg.moe_every = 1;
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    const mpt_pp_kind kinds[3] = {MPT_PP_1F1B, MPT_PP_ZB_H1, MPT_PP_ZB_V};
    double ep[3][2];
    for (int k = 0; k < 3; k++)
        for (int full = 0; full < 2; full++) {
            mpt_plan_layout l;
            mpt_plan_layout_defaults(&l);
            l.dp = 2, l.ep = 2, l.pp = 2, l.microbatches = 4, l.schedule = kinds[k];
            l.recompute = full ? MPT_RECOMPUTE_FULL : MPT_RECOMPUTE_NONE;
            mpt_sim_result sr;
            ep[k][full] = 0;
            CHECK(mpt_simulate(&j, &l, &c, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
            ep[k][full] = sr.bytes_ep;
            mpt_sim_result_free(&sr);
        }
    printf("\nMoE all-to-all bytes per GPU per step, dp 2 ep 2 pp 2 m 4, none / full recompute: "
           "1f1b %.6g / %.6g, zb-h1 %.6g / %.6g, zb-v %.6g / %.6g\n", ep[0][0], ep[0][1],
           ep[1][0], ep[1][1], ep[2][0], ep[2][1]);
    CHECK(ep[0][0] > 0 && fabs(ep[0][1] - 1.5 * ep[0][0]) <= 1e-9 * ep[0][0],
          "1f1b full recompute: 6 all-to-alls per block, not %.4g x 4", ep[0][1] / ep[0][0]);
    for (int k = 1; k < 3; k++) {
        CHECK(fabs(ep[k][0] - ep[0][0]) <= 1e-9 * ep[0][0], "%s: 4 all-to-alls per block",
              k == 1 ? "zb-h1" : "zb-v");
        CHECK(fabs(ep[k][1] - 2 * ep[k][0]) <= 1e-9 * ep[k][0],
              "%s full recompute: 8 all-to-alls per block (W's recompute too), not %.4g x 4",
              k == 1 ? "zb-h1" : "zb-v", ep[k][1] / ep[k][0]);
    }
}

/* Sequence parallelism's collectives as the runtime makes them (model/gpt_pass.c): per block
 * 4 forward (2 all-gathers, 2 reduce-scatters) and 6 backward (the 2 output gradients and the
 * saved ln_1 and ln_2 rows all-gathered, 2 reduce-scatters); the embedding's reduce-scatter and
 * its backward's all-gather; the head's ln_f rows gathered forward and backward and its input
 * gradient reduce-scattered; each of N x D elements, plus the loss's 3 floats per token
 * all-gathered (parallel/tp_vocab.c: tp x 3 floats gathered, 3 (tp-1) sent), and one
 * all-reduce per block of its LayerNorms' weight gradients (4 D floats,
 * model/gpt_pass.c's ln_grads_sum_). Without sp: 2 + 2 all-reduces per block, one each for the
 * embedding and the head's input gradient. bytes_tp counts what a rank sends: (tp-1)/tp of a
 * gather's or a reduce-scatter's buffer, 2 (tp-1)/tp of an all-reduce's. */
static void sp_bytes_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 8, 1024);
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    double got[2];
    for (int sp = 0; sp < 2; sp++) {
        mpt_plan_layout l;
        mpt_plan_layout_defaults(&l);
        l.tp = 2;
        l.sp = sp;
        mpt_sim_result sr;
        CHECK(mpt_simulate(&j, &l, &c, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
        got[sp] = sr.bytes_tp;
    }
    double N = 8.0 * 1024, D = 768, L = 12, es = 4;
    double want_sp = 0.5 * es * N * D * (10 * L + 5) + 12 * N + L * 2 * 0.5 * 4 * 4 * D;
    double want = 1.0 * (es * N * D * (4 * L + 2) + 12 * N);
    printf("\ngpt2-124m tp 2, bytes a rank sends per step: sp %.4g (expected %.4g), without sp "
           "%.4g (expected %.4g)\n", got[1], want_sp, got[0], want);
    CHECK(fabs(got[1] / want_sp - 1) < 1e-9, "sp: %.6g bytes, the runtime's %.6g", got[1],
          want_sp);
    CHECK(fabs(got[0] / want - 1) < 1e-9, "tp: %.6g bytes, the runtime's %.6g", got[0], want);
}

/* sp's overlapped path priced by its own messages (plan/cost.c, parallel/tp_overlap_sp.c):
 * every block's gathers (6: ln_1, ln_2 forward; the two output gradients and the saved ln_1 and
 * ln_2 rows backward) and reduce-scatters (4: 2 forward, 2 backward), and the head's two ln_f
 * gathers, receive tp-1 blocks of Ns x D each by direct Isend/Irecv pairs, copied by the
 * receiver: so doubling the link bandwidth (intra_bw) shortens the step by exactly half their
 * bytes over it, while the blocking MPI collectives (the embedding's, the head backward's
 * reduce-scatter, the loss's and the LayerNorm gradients' all-reduces) are priced at the MPI
 * figures (set here) and do not move. */
static void sp_overlap_terms_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 8, 1024);
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    c.mpi_allreduce_bw = c.mpi_reduce_scatter_bw = c.mpi_allgather_bw = 1e9;
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.tp = 2;
    l.sp = 1;
    double t[2];
    for (int k = 0; k < 2; k++) {
        c.intra_bw = 1e9 * (k + 1);
        c.intra_eff = 1.0;
        mpt_sim_result sr;
        CHECK(mpt_simulate(&j, &l, &c, 0, &sr, &err) == MPT_OK, "simulate: %s", err.msg);
        t[k] = sr.step_time;
    }
    double Ns = 8.0 * 1024 / 2, D = 768, L = 12, es = 4;
    double bytes = es * Ns * D * ((6 + 4) * L + 2);
    double want = bytes / 1e9 - bytes / 2e9;
    printf("\ngpt2-124m tp 2 sp: step %.4f s at 1 GB/s, %.4f at 2 GB/s: %.4f s less (expected "
           "%.4f: the overlapped path's receives)\n", t[0], t[1], t[0] - t[1], want);
    CHECK(fabs((t[0] - t[1]) / want - 1) < 1e-9, "sp receives: %.6g s, expected %.6g",
          t[0] - t[1], want);
}

/* More ranks than cores (cpu-here's time-sharing, sim.c's replay_ps_): pp 4 with m 8 on 2
 * cores. All four stages compute at half speed in the steady state, but in the fill and the
 * drain fewer than two compute and a core idles, so the step is longer than the work over the
 * cores (the bound the simulator used alone before), and shorter than the replay on 4 cores
 * run at half speed. */
static void time_sharing_(void) {
    mpt_plan_job j;
    job_(&j, "gpt2-124m", 16, 1024);
    j.cfg.vocab = 256; /* balanced stages */
    j.threads = 1;
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    c.per_node = 64;
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.pp = 4;
    l.microbatches = 8;
    l.schedule = MPT_PP_1F1B;
    mpt_sim_result own, shared;
    c.cores = 4; /* a core per rank: the plain replay */
    CHECK(mpt_simulate(&j, &l, &c, 0, &own, &err) == MPT_OK, "simulate: %s", err.msg);
    c.cores = 2;
    CHECK(mpt_simulate(&j, &l, &c, 0, &shared, &err) == MPT_OK, "simulate: %s", err.msg);
    double work = (1 - own.bubble) * own.p * own.pipe_time; /* every rank's compute */
    printf("\npp 4 m 8 (gpt2-124m, vocab 256): 4 cores %.1f ms; 2 cores %.1f ms, against the "
           "work over 2 cores %.1f ms and twice the 4-core replay %.1f ms\n", 1e3 * own.pipe_time,
           1e3 * shared.pipe_time, 1e3 * work / 2, 2e3 * own.pipe_time);
    CHECK(shared.pipe_time > 1.02 * work / 2 && shared.pipe_time < 2 * own.pipe_time,
          "2 cores: %g s, not between the work over the cores %g and twice the replay %g",
          shared.pipe_time, work / 2, 2 * own.pipe_time);
    /* the waiting ranks poll (poll_share of a core each once the computing ranks fill the
     * cores): longer than without, and at most the replay with every rank always computing
     * (poll_share 1: 4 ranks on 2 cores throughout, twice the 4-core replay but for the
     * messages' transfer times, which do not stretch: 0.03% here) */
    mpt_sim_result polled, full;
    c.poll_share = 0.2;
    CHECK(mpt_simulate(&j, &l, &c, 0, &polled, &err) == MPT_OK, "simulate: %s", err.msg);
    c.poll_share = 1;
    CHECK(mpt_simulate(&j, &l, &c, 0, &full, &err) == MPT_OK, "simulate: %s", err.msg);
    printf("pp 4 m 8 on 2 cores, waiting ranks polling: poll_share 0.2 %.1f ms, 1 %.1f ms\n",
           1e3 * polled.pipe_time, 1e3 * full.pipe_time);
    CHECK(polled.pipe_time > shared.pipe_time && polled.pipe_time < full.pipe_time,
          "poll_share 0.2 between none and a whole core");
    CHECK(fabs(full.pipe_time / (2 * own.pipe_time) - 1) < 1e-3,
          "poll_share 1: every rank holds half a core throughout (%g vs %g s)", full.pipe_time,
          2 * own.pipe_time);
}

int main(void) {
    calib_use_();
    zero_structure_();
    schedules_();
    two_bw_();
    split_recompute_();
    moe_w_traffic_();
    sp_bytes_();
    sp_overlap_terms_();
    time_sharing_();
    gpt3_();
    narayanan_();
    search_();
    bad_();
    linear_in_t_();
    return check_finish();
}
