/* plan_mem.c — the planner's memory model: layout checks, model presets and the runtime's
 * memory plan evaluated for every pipeline stage (see plan.h). */
#include "plan/plan.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gpt.h"
#include "parallel/cp.h"
#include "parallel/dp.h"
#include "parallel/partition.h"
#include "parallel/pp.h"
#include "plan/stage_plan.h"

void mpt_plan_job_defaults(mpt_plan_job *j) {
    memset(j, 0, sizeof *j);
    j->batch = 0;
    j->seq_len = 0;
    j->precision = MPT_PREC_FP32;
    j->bucket_mb = 0.0; /* by node, as train (per_node) */
    j->moe_imbalance = 1.0;
    j->moe_dropped = 0.0;
}

void mpt_plan_layout_defaults(mpt_plan_layout *l) {
    memset(l, 0, sizeof *l);
    l->dp = l->tp = l->pp = l->cp = l->ep = 1;
    l->microbatches = 1;
    l->virtual_stages = 1;
    l->schedule = MPT_PP_1F1B;
    l->recompute = MPT_RECOMPUTE_NONE;
    snprintf(l->partition, sizeof l->partition, "uniform");
}

long mpt_plan_layout_world(const mpt_plan_layout *l) {
    const int s[] = {l->dp, l->tp, l->pp, l->cp};
    long w = 1;
    for (int i = 0; i < 4; i++) {
        if (s[i] < 1 || w > INT_MAX / s[i]) return -1;
        w *= s[i];
    }
    return w;
}

int mpt_plan_chunks(const mpt_plan_layout *l) {
    if (l->pp < 2) return 1;
    if (l->schedule == MPT_PP_INTERLEAVED) return l->virtual_stages > 1 ? l->virtual_stages : 1;
    return l->schedule == MPT_PP_ZB_V ? 2 : 1;
}

void mpt_plan_layout_str(const mpt_plan_layout *l, char *buf, size_t n) {
    const char *rc[] = {"none", "selective", "full"};
    char sched[32] = "";
    if (l->pp > 1) {
        if (l->schedule == MPT_PP_INTERLEAVED)
            snprintf(sched, sizeof sched, " interleaved/v%d", l->virtual_stages);
        else snprintf(sched, sizeof sched, " %s", mpt_pp_kind_name(l->schedule));
    }
    char cp[32] = "";
    if (l->cp > 1) snprintf(cp, sizeof cp, " cp%d", l->cp);
    if (l->ep > 1) snprintf(cp + strlen(cp), sizeof cp - strlen(cp), " ep%d", l->ep);
    snprintf(buf, n, "dp%d tp%d%s%s pp%d zero%d m%d%s recompute-%s", l->dp, l->tp,
             l->sp ? "+sp" : "", cp, l->pp, l->zero, l->microbatches, sched,
             rc[l->recompute >= 0 && l->recompute <= 2 ? l->recompute : 0]);
}

/* ---- model presets ---------------------------------------------------------------------- */

typedef struct preset_ {
    const char *name;
    int L, D, H, T, V;
} preset_;

static const preset_ presets_[] = {
    {"gpt3-175b", 96, 12288, 96, 2048, 50257},
    {"bloom-176b", 70, 14336, 112, 2048, 250880},
    {"gpt-1.7b", 24, 2304, 24, 2048, 51200},
    {"gpt-7.5b", 36, 4096, 32, 2048, 51200},
    {"gpt-39b", 48, 8192, 64, 2048, 51200},
    {"gpt-146b", 80, 12288, 96, 2048, 51200},
    {"gpt-530b", 105, 20480, 128, 2048, 51200},
    {"gpt-1t", 128, 25600, 160, 2048, 51200},
};

const char *mpt_plan_model_names(void) {
    return "tiny, small, gpt2-124m, gpt3-175b, bloom-176b, gpt-1.7b, gpt-7.5b, gpt-39b, "
           "gpt-146b, gpt-530b, gpt-1t";
}

mpt_status mpt_plan_model(mpt_config *cfg, const char *name, mpt_error *err) {
    for (size_t i = 0; i < sizeof presets_ / sizeof *presets_; i++) {
        const preset_ *p = &presets_[i];
        if (strcmp(name, p->name) != 0) continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->n_layer = p->L;
        cfg->d_model = p->D;
        cfg->n_head = p->H;
        cfg->n_positions = p->T;
        cfg->vocab = p->V;
        cfg->ffn = 4 * p->D;
        cfg->tied = 1;
        cfg->top_k = 1;
        cfg->aux_loss_coef = 0.01f;
        return MPT_OK;
    }
    if (mpt_config_preset(cfg, name, NULL) == MPT_OK) return MPT_OK;
    return mpt_fail(err, MPT_ERR_INPUT, "unknown model '%s': use %s or a config.json file", name,
                    mpt_plan_model_names());
}

/* ---- checks ------------------------------------------------------------------------------ */

mpt_status mpt_plan_check(const mpt_plan_job *job, const mpt_plan_layout *l, mpt_config *cfg,
                          mpt_error *err) {
    *cfg = job->cfg;
    if (mpt_plan_layout_world(l) < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--dp %d --tp %d --pp %d --cp %d: every size must be "
                        "at least 1 (and their product fit an int)", l->dp, l->tp, l->pp, l->cp);
    /* expert parallelism as the trainer takes it (trainer_setup.c): experts split evenly, ep
     * inside dp x cp (parallel/mesh.h) */
    if (l->ep < 1) return mpt_fail(err, MPT_ERR_INPUT, "--ep %d must be >= 1", l->ep);
    if (l->ep > 1 && cfg->experts == 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d splits the experts of MoE blocks: it needs "
                        "--experts E (a multiple of %d)", l->ep, l->ep);
    if (l->ep > 1 && cfg->experts % l->ep)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d must divide --experts %d: each expert-"
                        "parallel rank holds experts/ep of them", l->ep, cfg->experts);
    if (cfg->experts > 0 && l->sp)
        return mpt_fail(err, MPT_ERR_INPUT, "--experts with --sp is not supported by the "
                        "trainer: the MoE blocks need every token row on each tensor-parallel "
                        "rank (drop --sp)");
    if (l->ep > 1) {
        mpt_layout ml = mpt_layout_make(l->tp, l->cp, l->dp, l->pp, l->ep);
        mpt_status est = mpt_layout_check(&ml, mpt_layout_world(&ml), err);
        if (est) return est;
    }
    /* the trainer's padding: a multiple of 64 per tensor-parallel rank; vocabularies above the
     * token files' 65536 are fine for planning */
    int V = cfg->vocab;
    if (cfg->vocab > 65536) cfg->vocab = 2;
    cfg->padded_vocab = 0;
    mpt_status st = mpt_config_finish(cfg, 64, err);
    cfg->vocab = V;
    if (st) return st;
    long pad = 64L * l->tp;
    if ((long)V + pad > INT_MAX) return mpt_fail(err, MPT_ERR_INPUT, "vocab %d too large", V);
    cfg->padded_vocab = (int)((V + pad - 1) / pad * pad);
    int T = job->seq_len > 0 ? job->seq_len : cfg->n_positions;
    if (T > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT, "--seq-len %d exceeds the model's %d positions", T,
                        cfg->n_positions);
    if (cfg->n_head % l->tp || cfg->ffn % l->tp)
        return mpt_fail(err, MPT_ERR_INPUT, "--tp %d must divide the attention heads (%d) and "
                        "the MLP width (%d)", l->tp, cfg->n_head, cfg->ffn);
    if (l->sp && (l->tp < 2 || T % l->tp))
        return mpt_fail(err, MPT_ERR_INPUT, "--sp needs --tp 2 or more dividing --seq-len %d", T);
    mpt_status cst = l->cp > 1 ? mpt_cp_check(T, l->cp, l->tp, l->sp, err) : MPT_OK;
    if (cst) return cst;
    if (l->zero < 0 || l->zero > 3)
        return mpt_fail(err, MPT_ERR_INPUT, "--zero %d: use 0, 1, 2 or 3", l->zero);
    if (l->recompute < 0 || l->recompute > 2)
        return mpt_fail(err, MPT_ERR_INPUT, "--recompute: use none, selective or full");
    if (job->batch < 1) return mpt_fail(err, MPT_ERR_INPUT, "--batch %d must be >= 1", job->batch);
    if (l->microbatches < 1 || job->batch % l->dp ||
        (job->batch / l->dp) % l->microbatches)
        return mpt_fail(err, MPT_ERR_INPUT, "--batch %d is not divisible by --dp %d x "
                        "--microbatches %d: every replica needs the same whole number of "
                        "sequences per micro-batch", job->batch, l->dp, l->microbatches);
    int v = mpt_plan_chunks(l);
    if (l->pp > 1 && (st = mpt_pp_check(l->schedule, l->pp, l->microbatches, v, err))) return st;
    if ((long)l->pp * v > cfg->n_layer || (long)l->pp * v > MPT_PLAN_MAX_STAGES ||
        v > MPT_PLAN_MAX_CHUNKS)
        return mpt_fail(err, MPT_ERR_INPUT, "--pp %d x --virtual-stages %d exceeds the model's "
                        "%d layers (or %d stages, %d chunks per rank)", l->pp, v, cfg->n_layer,
                        MPT_PLAN_MAX_STAGES, MPT_PLAN_MAX_CHUNKS);
    /* as the trainer: chunked schedules split the blocks into p x v equal chunks */
    if (v > 1 && (cfg->n_layer % (l->pp * v) ||
                  (l->partition[0] && strcmp(l->partition, "uniform") != 0)))
        return mpt_fail(err, MPT_ERR_INPUT, "--schedule %s needs the %d blocks divisible into "
                        "--pp %d x %d equal chunks under --partition uniform",
                        mpt_pp_kind_name(l->schedule), cfg->n_layer, l->pp, v);
    return MPT_OK;
}

mpt_status mpt_plan_partition(const mpt_plan_job *job, const mpt_plan_layout *l,
                              const mpt_config *cfg, int *counts, mpt_error *err) {
    int v = mpt_plan_chunks(l);
    int T = job->seq_len > 0 ? job->seq_len : cfg->n_positions;
    return mpt_partition(cfg, T, l->pp * v, l->partition[0] ? l->partition : "uniform", counts,
                         NULL, NULL, err);
}

/* ---- memory ------------------------------------------------------------------------------ */

/* The checkpoint staging's bytes of the model cfg (memplan.h), kept for the last cfg asked:
 * they depend on the whole model only, and a search asks for the same model thousands of
 * times. NULL when they cannot be computed (mpt_memplan_rank then reports why). The planner
 * runs on one thread. */
static const size_t *ckpt_bytes_(const mpt_config *cfg) {
    static mpt_config key;
    static size_t bytes[MPT_MEM_KINDS];
    static int valid = 0;
    if (valid && memcmp(&key, cfg, sizeof key) == 0) return bytes;
    memset(bytes, 0, sizeof bytes);
    valid = mpt_memplan_ckpt_bytes(cfg, bytes, NULL) == MPT_OK;
    if (!valid) return NULL;
    memcpy(&key, cfg, sizeof key);
    return bytes;
}

/* The runtime's plan of pipeline rank s, exactly as the trainer builds it: the one shared
 * function (plan/stage_plan.h) on the layout's placement (its blocks, all its chunks;
 * interleaved and zb-v hold v of them), ep included. */
static mpt_status stage_plan_(const mpt_plan_job *job, const mpt_plan_layout *l,
                              const mpt_config *cfg, int s, int first_layer, int n, int z3_whole,
                              mpt_mem_plan *plan, mpt_error *err) {
    int T = job->seq_len > 0 ? job->seq_len : cfg->n_positions;
    mpt_layout layout = mpt_layout_make(l->tp, l->cp, l->dp, l->pp, l->ep > 1 ? l->ep : 1);
    mpt_placement rank0;
    mpt_status st = mpt_placement_init(&rank0, &layout, mpt_layout_world(&layout), 0, err);
    if (st) return st;
    int threads = job->threads;
    if (threads <= 0) { /* as `train` defaults on one node: the cores shared by the ranks */
        static long cores = 0; /* (read once: sysconf reads a file) */
        if (cores == 0) cores = sysconf(_SC_NPROCESSORS_ONLN);
        long world = mpt_plan_layout_world(l);
        threads = cores > 0 && world > 0 && cores / world > 0 ? (int)(cores / world) : 1;
    }
    mpt_stage_run run = {.kind = l->pp > 1 ? l->schedule : MPT_PP_NAIVE,
                         .microbatches = l->microbatches, .v = mpt_plan_chunks(l),
                         .Bm = job->batch / (l->dp * l->microbatches), .T = T, .sp = l->sp,
                         .zero = l->zero, .recompute = l->recompute, .z3_whole = z3_whole,
                         .bf16 = job->precision == MPT_PREC_BF16,
                         .two_bw = l->schedule == MPT_PP_2BW, /* any pp, as the trainer */
                         .two_bw_deferred = l->schedule == MPT_PP_2BW &&
                                            mpt_stage_2bw_deferred(l->pp, l->dp, l->cp, l->zero,
                                                                   cfg->experts),
                         .bucket_mb = job->bucket_mb > 0 ? job->bucket_mb
                                      : job->per_node > 0 && mpt_plan_layout_world(l) > job->per_node
                                          ? MPT_DP_BUCKET_MB_NODES
                                          : MPT_DP_BUCKET_WHOLE,
                         .threads = threads,
                         .ckpt_bytes = ckpt_bytes_(cfg)};
    mpt_placement q = mpt_placement_at_stage(&rank0, s, first_layer, n);
    return mpt_stage_plan(cfg, &run, &q, plan, err);
}

/* Every pipeline rank's plan, or with ends_only those of ranks 0 and p-1. */
static mpt_status memory_eval_(const mpt_plan_job *job, const mpt_plan_layout *l, int ends_only,
                               mpt_plan_memory *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    mpt_config cfg;
    mpt_status st = mpt_plan_check(job, l, &cfg, err);
    if (st) return st;
    /* as the trainer: the blocks split over the pp ranks (each rank's chunks together) */
    int T = job->seq_len > 0 ? job->seq_len : cfg.n_positions;
    if ((st = mpt_partition(&cfg, T, l->pp, l->partition[0] ? l->partition : "uniform",
                            out->stage_layers, NULL, NULL, err)))
        return st;
    out->stages = l->pp;
    out->n_params = mpt_config_param_count(&cfg);
    /* as the trainer by default: ZeRO-3 gathers per layer (--zero3-gather layer) */
    mpt_mem_plan plan;
    for (int s = 0, first = 0; s < l->pp; first += out->stage_layers[s++]) {
        if (ends_only && s > 0 && s < l->pp - 1) continue;
        if ((st = stage_plan_(job, l, &cfg, s, first, out->stage_layers[s], 0, &plan, err)))
            return st;
        out->stage_total[s] = plan.total;
        size_t ranks = (size_t)l->dp * (size_t)l->tp * (size_t)l->cp;
        for (int k = 0; k < MPT_MEM_KINDS; k++) out->sum[k] += plan.bytes[k] * ranks;
        out->sum_total += plan.total * ranks;
        if (s == 0 || plan.total > out->worst.total) {
            out->worst = plan;
            out->worst_stage = s;
        }
    }
    out->z3_whole = 0;
    return MPT_OK;
}

mpt_status mpt_plan_memory_eval(const mpt_plan_job *job, const mpt_plan_layout *l,
                                mpt_plan_memory *out, mpt_error *err) {
    return memory_eval_(job, l, 0, out, err);
}

mpt_status mpt_plan_memory_ends(const mpt_plan_job *job, const mpt_plan_layout *l,
                                mpt_plan_memory *out, mpt_error *err) {
    return memory_eval_(job, l, 1, out, err);
}
