/* memplan.c — the per-rank memory plan (see memplan.h). */
#include "plan/memplan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt.h"
#include "model/params.h"
#include "parallel/cp.h"
#include "parallel/dp.h"
#include "parallel/ep.h"
#include "parallel/pp.h"
#include "parallel/tied.h"
#include "train/checkpoint.h"
#include "train/data.h"

/* Checkpoint staging (train/checkpoint.h): the bounded blocks that every checkpoint load, save
 * and dump streams tensors through, workspace, on every rank. */
mpt_status mpt_memplan_ckpt_bytes(const mpt_config *cfg, size_t *bytes, mpt_error *err) {
    mpt_param_table full;
    mpt_buflist l;
    mpt_status st = mpt_params_build(&full, cfg, err);
    if (st) return st;
    mpt_buflist_init(&l);
    mpt_checkpoint_buffers(&full, &l, NULL, NULL);
    int ok = mpt_buflist_bytes(&l, bytes);
    mpt_buflist_free(&l);
    mpt_params_free(&full);
    return ok ? MPT_OK : mpt_fail(err, MPT_ERR_RUN, "out of memory planning checkpoint staging");
}

/* Bytes of n activation sets of act_n; nb >= 0: their until-B slots in nb parts instead. */
static size_t sets_bytes_(const mpt_config *cfg, int bf16, const size_t act_n[MPT_ACT_SLOTS],
                          int n, int nb) {
    size_t b = 0;
    for (int i = 0; i < MPT_ACT_SLOTS; i++) { /* bytes by dtype (bf16 slots: model/gpt.h) */
        int k = nb >= 0 && mpt_gpt_slot_until_b((mpt_act_slot)i) ? nb : n;
        b += act_n[i] * mpt_dtype_size(mpt_gpt_act_dtype(cfg, bf16, (mpt_act_slot)i)) * (size_t)k;
    }
    return b;
}

/* What a rank's parameter table implies: the data-parallel module's buffers (with the
 * experts' own gradient buffer when ep > 1), the table's bytes and elements, ZeRO's pool. */
typedef struct param_vals_ {
    size_t dp_bytes[MPT_MEM_KINDS], P, param_elements, pool_elements;
    size_t grads2; /* 2bw's second gradient buffer: P, or under ZeRO-2 a slice and the held
                    * gradient (train/trainer_setup.c) */
} param_vals_;

/* The inputs param_part_ depends on (the cache key). */
typedef struct param_key_ {
    mpt_config cfg;
    int tp, ep, ep_coord, first_layer, n_layers, first, last, stage, stages, chunks, split_w;
    int dpn, zero, z3_whole;
    size_t bucket_elems;
} param_key_;

static mpt_status param_part_(const mpt_config *cfg, const mpt_rank_layout *lay, int tp, int ep,
                              int dpn, param_vals_ *out, mpt_error *err) {
    const mpt_placement *pl = &lay->place;
    memset(out, 0, sizeof *out);
    mpt_param_table pt;
    /* several chunks: which model blocks they hold decides which are MoE blocks (the
     * trainer's mapping: interleaved chunk c = stage c*p + r, zb-v chunk 1 = stage 2p-1-r) */
    int fl = pl->first_layer, cl = 0, stride = 0;
    if (lay->chunks > 1 && cfg->experts > 0) {
        cl = pl->n_layers / lay->chunks;
        fl = pl->stage * cl;
        stride = (lay->split_w ? 2 * pl->stages - 1 - 2 * pl->stage : pl->stages) * cl;
    }
    mpt_status st =
        mpt_params_build_chunks(&pt, cfg, tp, 0, ep, pl->coords.c[MPT_DIM_EP], fl, pl->n_layers,
                                cl, stride, pl->first, pl->last, mpt_dp_unit_align(dpn), err);
    if (st) return st;
    /* what the data-parallel module allocates: the sum of its buffer list */
    mpt_dp_opts o;
    mpt_dp_opts_defaults(&o);
    o.zero = lay->zero;
    o.z3_whole = lay->z3_whole;
    o.bucket_elems = lay->bucket_elems;
    /* ep > 1 with ZeRO 1-3: the experts sharded over the edp group (parallel/dp.h) */
    if (ep > 1 && lay->zero > 0) o.edp_size = dpn / ep;
    /* the tied wte is held for the sum between the two ends of the pipeline; when one rank
     * holds both (zb-v), only under ZeRO-2/3, whose staging would otherwise see the head's
     * gradient (a chunk apart from the embeddings) before its unit is opened */
    if (pl->stages > 1 && cfg->tied && (pl->first || pl->last) &&
        (!(pl->first && pl->last) || lay->zero >= 2))
        o.held = mpt_tied_tensor(&pt);
    mpt_buflist dl;
    mpt_buflist_init(&dl);
    mpt_dp_buffers(&pt, dpn, &o, NULL, &dl);
    int sized = mpt_buflist_bytes(&dl, out->dp_bytes);
    mpt_buflist_free(&dl);
    out->P = pt.total * sizeof(float);
    out->grads2 = lay->zero <= 1 ? out->P : out->dp_bytes[MPT_MEM_OPTIMIZER] / 2 +
                  (o.held != SIZE_MAX ? pt.t[o.held].numel * sizeof(float) : 0);
    /* ep > 1, zero 0: the experts' own gradient buffer (parallel/ep.h) */
    if (ep > 1 && lay->zero == 0) out->dp_bytes[MPT_MEM_GRADS] += mpt_ep_expert_elems(&pt) * sizeof(float);
    out->param_elements = pt.total;
    out->pool_elements = mpt_dp_pool_elems(&pt, o.edp_size > 0);
    mpt_params_free(&pt);
    if (!sized)
        return mpt_fail(err, MPT_ERR_INPUT, "the data-parallel buffers are too large to address");
    return MPT_OK;
}

/* param_part_, kept for the last few inputs when `cached` (the planner's search asks for the
 * same stage under many schedules, micro-batch sizes and recompute modes; the planner runs on
 * one thread; the trainer does not cache). */
static mpt_status param_part_get_(const mpt_config *cfg, const mpt_rank_layout *lay, int tp,
                                  int ep, int dpn, int cached, param_vals_ *out, mpt_error *err) {
    if (!cached) return param_part_(cfg, lay, tp, ep, dpn, out, err);
    enum { SLOTS = 8 };
    static param_key_ keys[SLOTS];
    static param_vals_ vals[SLOTS];
    static int used = 0, next = 0;
    param_key_ k;
    memset(&k, 0, sizeof k);
    k.cfg = *cfg;
    const mpt_placement *pl = &lay->place;
    k.tp = tp, k.ep = ep, k.ep_coord = pl->coords.c[MPT_DIM_EP];
    k.first_layer = pl->first_layer, k.n_layers = pl->n_layers;
    k.first = pl->first, k.last = pl->last, k.stages = pl->stages, k.dpn = dpn;
    k.stage = pl->stage, k.chunks = lay->chunks, k.split_w = lay->split_w;
    k.zero = lay->zero, k.z3_whole = lay->z3_whole, k.bucket_elems = lay->bucket_elems;
    for (int i = 0; i < used; i++)
        if (memcmp(&keys[i], &k, sizeof k) == 0) {
            *out = vals[i];
            return MPT_OK;
        }
    mpt_status st = param_part_(cfg, lay, tp, ep, dpn, out, err);
    if (st) return st;
    keys[next] = k;
    vals[next] = *out;
    next = (next + 1) % SLOTS;
    if (used < SLOTS) used++;
    return MPT_OK;
}

mpt_status mpt_memplan_rank(const mpt_config *cfg, int B, int T, const mpt_rank_layout *lay,
                            mpt_mem_plan *plan, mpt_error *err) {
    memset(plan, 0, sizeof *plan);
    const mpt_placement *pl = &lay->place;
    int tp = pl->layout.size[MPT_DIM_TP], cp = pl->layout.size[MPT_DIM_CP];
    /* gradients are reduced (and ZeRO shards split) over dp x cp; the engine holds T/cp
     * positions per sequence */
    int dpn = pl->layout.size[MPT_DIM_DP] * cp;
    mpt_status st = cp > 1 ? mpt_cp_check(T, cp, tp, lay->sp, err) : MPT_OK;
    if (st) return st;
    T /= cp;
    /* E/ep experts here (under ZeRO 1-3 sharded over edp: parallel/dp.h) */
    int ep = cfg->experts > 0 ? pl->layout.size[MPT_DIM_EP] : 1;
    param_vals_ pp;
    if ((st = param_part_get_(cfg, lay, tp, ep, dpn, lay->ckpt_bytes != NULL, &pp, err)))
        return st;
    size_t dp_bytes[MPT_MEM_KINDS];
    memcpy(dp_bytes, pp.dp_bytes, sizeof dp_bytes);
    int gpt_flags = mpt_dp_gpt_flags(lay->zero);
    size_t P = pp.P;
    plan->param_elements = pp.param_elements;
    plan->pool_elements = pp.pool_elements;
    mpt_gpt_place place = mpt_placement_gpt(pl, NULL, lay->sp, lay->recompute);
    place.threads = lay->threads;
    place.bf16 = lay->bf16;
    place.split_w = lay->split_w;
    size_t act_n[MPT_ACT_SLOTS], work_n[MPT_WORK_SLOTS];
    if (!mpt_gpt_buffer_sizes(cfg, B, T, 1, tp, lay->sp, &place, act_n, work_n))
        return mpt_fail(err, MPT_ERR_INPUT, "batch %d x %d tokens is too large to address", B, T);
    if (gpt_flags & MPT_GPT_PARAMS) plan->bytes[MPT_MEM_PARAMS] += P;
    if (lay->weight_versions > 1) /* 2bw: the stash (ZeRO-3: a slice, the size of AdamW's m) */
        plan->bytes[MPT_MEM_PARAMS] += lay->zero == 3 ? dp_bytes[MPT_MEM_OPTIMIZER] / 2 : P;
    if (gpt_flags & MPT_GPT_GRADS) plan->bytes[MPT_MEM_GRADS] += P;
    if (lay->weight_versions > 2) plan->bytes[MPT_MEM_GRADS] += pp.grads2; /* 2bw deferred */
    for (int k = 0; k < MPT_MEM_KINDS; k++) plan->bytes[k] += dp_bytes[k];
    int sets1 = lay->act_sets > 0 ? lay->act_sets : 1;
    plan->bytes[MPT_MEM_ACTIVATIONS] =
        sets_bytes_(cfg, lay->bf16, act_n, sets1, lay->sets_b ? lay->sets_b[0] : -1);
    int chunks = lay->chunks > 1 && lay->chunk_sets ? lay->chunks : 1;
    if (chunks > 1) { /* each chunk's sets hold its blocks only, with its own ends */
        plan->bytes[MPT_MEM_ACTIVATIONS] = 0;
        for (int c = 0; c < chunks; c++) {
            mpt_gpt_place q = mpt_pp_chunk_place(&place, chunks, c);
            size_t cw[MPT_WORK_SLOTS], ca[MPT_ACT_SLOTS];
            if (!mpt_gpt_buffer_sizes(cfg, B, T, 1, tp, lay->sp, &q, ca, cw))
                return mpt_fail(err, MPT_ERR_INPUT, "batch %d x %d tokens is too large to address",
                                B, T);
            plan->bytes[MPT_MEM_ACTIVATIONS] += sets_bytes_(
                cfg, lay->bf16, ca, lay->chunk_sets[c], lay->sets_b ? lay->sets_b[c] : -1);
        }
    }
    for (int i = 0; i < MPT_WORK_SLOTS; i++) plan->bytes[MPT_MEM_WORKSPACE] += work_n[i] * 4;
    if (cp > 1) { /* the ring's buffers (parallel/cp.h) */
        mpt_buflist cl;
        mpt_buflist_init(&cl);
        mpt_cp_buffers(B, T, cfg->d_model / tp, cfg->n_head / tp,
                       lay->threads > 0 ? lay->threads : 1, NULL, &cl);
        int ok = mpt_buflist_bytes(&cl, plan->bytes);
        mpt_buflist_free(&cl);
        if (!ok)
            return mpt_fail(err, MPT_ERR_INPUT, "the ring-attention buffers of %d x %d tokens "
                            "are too large to address", B, T);
    }
    /* the pipeline executor's send buffers and the trainer's token buffers */
    mpt_buflist ol;
    mpt_buflist_init(&ol);
    mpt_pp_buffers(chunks > 1 ? 1 : pl->stage, mpt_pp_boundary_elems(B, T, cfg->d_model, tp, lay->sp), NULL, &ol);
    mpt_data_buffers((size_t)B * (size_t)T, NULL, NULL, &ol);
    int ok = mpt_buflist_bytes(&ol, plan->bytes);
    mpt_buflist_free(&ol);
    if (!ok) return mpt_fail(err, MPT_ERR_RUN, "out of memory planning the executor's buffers");
    if (lay->ckpt_bytes)
        for (int k = 0; k < MPT_MEM_KINDS; k++) plan->bytes[k] += lay->ckpt_bytes[k];
    else if ((st = mpt_memplan_ckpt_bytes(cfg, plan->bytes, err)))
        return st;
    for (int k = 0; k < MPT_MEM_KINDS; k++) plan->total += plan->bytes[k];
    return MPT_OK;
}

void mpt_format_bytes(size_t bytes, char *buf, size_t n) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, n, "%zu B", bytes);
    else snprintf(buf, n, "%.1f %s", v, unit[u]);
}

void mpt_memplan_format(const mpt_mem_plan *plan, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < MPT_MEM_KINDS && used < n; k++) {
        char b[32];
        mpt_format_bytes(plan->bytes[k], b, sizeof b);
        used += (size_t)snprintf(buf + used, n - used, "%s %s, ", mpt_mem_kind_name(k), b);
    }
    if (used < n) {
        char b[32];
        mpt_format_bytes(plan->total, b, sizeof b);
        snprintf(buf + used, n - used, "total %s", b);
    }
}

int mpt_parse_bytes(const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return 0; /* no inf, nan or negative size */
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end != '\0') return 0;
    if (v * mul >= 0x1p63) return 0; /* 8 EiB: beyond any memory, and beyond a size_t's range */
    *out = (size_t)(v * mul);
    return 1;
}
