/* trainer_setup.c — a training run's set-up: the architecture, every check that must pass
 * before the first step, the memory plan, the rank's groups, model, data-parallel and pipeline
 * machinery (checkpoints are in trainer_ckpt.c). */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gemm_bf16.h"
#include "plan/memplan.h"
#include "plan/stage_plan.h"
#include "parallel/partition.h"
#include "parallel/tied.h"
#include "parallel/tp.h"
#include "train/checkpoint.h"
#include "train/ckpt_probe.h"
#include "train/data.h"
#include "train/trainer_internal.h"

/* Every number of the options within its range (trainer.h), before anything is derived from
 * them: a library caller gets the same checks as the command line. */
static mpt_status validate_numbers_(const mpt_train_opts *o, mpt_error *err) {
    const struct { const char *name; long long v, lo, hi; } ints[] = {
        {"threads", o->threads, 1, MPT_MAX_THREADS},
        {"batch", o->batch, 1, MPT_MAX_BATCH},
        {"microbatches", o->microbatches, 1, MPT_MAX_BATCH},
        {"seq-len", o->seq_len, 0, MPT_MAX_POSITIONS},
        {"steps", o->steps, 0, MPT_MAX_STEPS},
        {"warmup", o->opt.warmup, 0, MPT_MAX_STEPS},
        {"dp", o->dp, 1, MPT_MAX_PARALLEL},
        {"tp", o->tp, 1, MPT_MAX_PARALLEL},
        {"pp", o->pp, 1, MPT_MAX_PP},
        {"virtual-stages", o->virtual_stages, 0, MPT_MAX_VIRTUAL},
        {"cp", o->cp, 1, MPT_MAX_PARALLEL},
        {"ep", o->ep, 0, MPT_MAX_PARALLEL},
        {"zero", o->zero, 0, 3},
        {"save-every", o->save_every, 0, MPT_MAX_STEPS},
        {"keep", o->keep, 0, MPT_MAX_STEPS},
        {"debug-stall-rank", o->stall_rank, 0, INT_MAX},
        {"debug-stall-step", o->stall_step, 0, MPT_MAX_STEPS},
        {"eval-every", o->eval_every, 0, MPT_MAX_STEPS},
        {"eval-batches", o->eval_batches, 1, MPT_MAX_EVAL_BATCHES},
        {"data files", o->n_data, 0, MPT_MAX_DATA_FILES},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (ints[i].v < ints[i].lo || ints[i].v > ints[i].hi)
            return mpt_fail(err, MPT_ERR_INPUT, "--%s %lld is out of range: use %lld to %lld",
                            ints[i].name, ints[i].v, ints[i].lo, ints[i].hi);
    /* name, value, lowest, highest, whether the lowest itself is allowed */
    const struct { const char *name; double v, lo, hi; int lo_ok; } nums[] = {
        {"lr", o->opt.lr, 0, MPT_MAX_LR, 0},
        {"weight-decay", o->opt.weight_decay, 0, MPT_MAX_WEIGHT_DECAY, 1},
        {"grad-clip", o->opt.grad_clip, 0, MPT_MAX_GRAD_CLIP, 1},
        {"bucket-mb", o->bucket_mb, 0, MPT_MAX_BUCKET_MB, 1}, /* 0: by node */
        {"debug-stall-seconds", o->stall_seconds, 0, MPT_MAX_STALL_SECONDS, 1},
        {"val-fraction", o->val_fraction, 0, MPT_MAX_VAL_FRACTION, 1},
    };
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        double v = nums[i].v;
        if (!isfinite(v) || v > nums[i].hi || v < nums[i].lo || (v == nums[i].lo && !nums[i].lo_ok))
            return mpt_fail(err, MPT_ERR_INPUT, "--%s %g is out of range: use a finite number "
                            "%s %g and at most %g", nums[i].name, v,
                            nums[i].lo_ok ? "from" : "above", nums[i].lo, nums[i].hi);
    }
    return MPT_OK;
}

/* The architecture: from the checkpoint when resuming or initialising from one. */
static mpt_status resolve_config_(mpt_run *r, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    r->cfg = o->cfg;
    r->ckpt[0] = '\0';
    const char *from = o->resume ? o->resume : o->init_from;
    if (from) {
        mpt_status st = mpt_checkpoint_resolve(from, r->ckpt, sizeof r->ckpt, err);
        if (!st) st = mpt_checkpoint_read_config(r->ckpt, &r->cfg, err);
        if (st) return st;
    }
    r->cfg.padded_vocab = 0; /* a multiple of 64 per tensor-parallel rank */
    return mpt_config_finish(&r->cfg, 64 * (o->tp > 0 ? o->tp : 1), err);
}

static mpt_status validate_layout_(mpt_run *r, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    const mpt_config *cfg = &r->cfg;
    int T = r->T;
    /* where this rank sits: the one placement the rest of the run reads */
    int ep = o->ep > 1 ? o->ep : 1;
    if (ep > 1 && cfg->experts == 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d splits the experts of MoE blocks: it needs "
                        "--experts E (a multiple of %d)", ep, ep);
    if (ep > 1 && cfg->experts % ep != 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d must divide --experts %d: each expert-"
                        "parallel rank holds experts/ep of them", ep, cfg->experts);
    mpt_layout lay = mpt_layout_make(o->tp, o->cp, o->dp, o->pp, ep);
    mpt_status st = mpt_placement_init(&r->place, &lay, r->world->size, r->world->rank, err);
    if (st) return st;
    if (cfg->n_head % o->tp != 0 || cfg->ffn % o->tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--tp %d must divide the attention heads (%d) and the MLP width --ffn "
                        "(%d): choose a tp that divides both",
                        o->tp, cfg->n_head, cfg->ffn);
    if (o->sp && o->tp < 2)
        return mpt_fail(err, MPT_ERR_INPUT, "--sp splits the sequence over the tensor-parallel "
                                            "ranks: it needs --tp 2 or more");
    if ((st = mpt_cp_check(T, o->cp, o->tp, o->sp, err))) return st;
    if (o->sp && T % o->tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--sp splits the sequence over --tp %d ranks, but --seq-len %d is not "
                        "divisible by %d: choose a multiple of %d",
                        o->tp, T, o->tp, o->tp);
    r->kind = MPT_PP_NAIVE; /* pp == 1: one stage runs its micro-batches one after the other */
    if (o->pp > 1) {
        if ((st = mpt_pp_kind_parse(o->schedule ? o->schedule : "1f1b", &r->kind,
                                    err)))
            return st;
        if (r->kind != MPT_PP_NAIVE && r->kind != MPT_PP_GPIPE && r->kind != MPT_PP_1F1B &&
            r->kind != MPT_PP_INTERLEAVED && !mpt_pp_split(r->kind) && r->kind != MPT_PP_2BW)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--schedule %s is not supported by the trainer yet: use naive, gpipe, "
                            "1f1b, interleaved, zb-h1 or zb-v (`mptrain schedule` shows all)",
                            o->schedule);
    }
    /* 2bw: the update rule holds on any layout (one stage included); under ZeRO-3 the stashed
     * version is a second parameter slice, gathered from when a micro-batch needs it
     * (parallel/pp_2bw.h) */
    /* MoE runs under every schedule: interleaved, zb-h1 and zb-v through the split backward's
     * expert path (model/moe.h), 2bw on its stashed weights like the dense tensors */
    r->v = o->virtual_stages > 1 ? o->virtual_stages : 1;
    if (o->pp > 1 && r->kind == MPT_PP_ZB_V && o->virtual_stages <= 1) r->v = 2; /* the V */
    if (r->v > 1 && o->pp < 2)
        return mpt_fail(err, MPT_ERR_INPUT, "--virtual-stages %d needs --pp 2 or more and "
                        "--schedule interleaved", r->v);
    if (o->pp > 1 && (st = mpt_pp_check(r->kind, o->pp, o->microbatches, r->v, err))) return st;
    if (r->v > 1) { /* p*v chunks of equal size: interleaved chunk c of rank r = stage c*p+r,
                     * zb-v chunk 0 = stage r and chunk 1 = stage 2p-1-r */
        long long chunks = (long long)o->pp * r->v;
        if (o->partition && strcmp(o->partition, "uniform") != 0)
            return mpt_fail(err, MPT_ERR_INPUT, "--schedule %s splits the %d blocks "
                            "into --pp x --virtual-stages equal chunks: use --partition uniform "
                            "(not %s)", o->schedule, r->cfg.n_layer, o->partition);
        if (r->cfg.n_layer % chunks != 0)
            return mpt_fail(err, MPT_ERR_INPUT, "--schedule %s needs the %d blocks "
                            "divisible into --pp %d x --virtual-stages %d = %lld equal chunks "
                            "under --partition uniform: change --layers, --pp or "
                            "--virtual-stages", o->schedule, r->cfg.n_layer, o->pp, r->v, chunks);
    }
    return MPT_OK;
}

static mpt_status validate_run_(const mpt_run *r, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    /* ranges were checked by validate_numbers_; products in 64 bits */
    long long per_mb = (long long)o->dp * o->microbatches; /* <= 2^16 x 2^20 */
    if (per_mb > o->batch || o->batch % per_mb != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--batch %d is not divisible by --dp %d x --microbatches %d: every replica "
                        "needs the same whole number of sequences per micro-batch",
                        o->batch, o->dp, o->microbatches);
    if (r->T < 1 || r->T > r->cfg.n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--seq-len %d must be between 1 and the model's %d positions", r->T,
                        r->cfg.n_positions);
    long long rows = o->batch / per_mb * (long long)r->T; /* tokens of one micro-batch */
    if (rows > INT_MAX)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "a micro-batch of %lld sequences x %d tokens = %lld rows is more than %d: "
                        "use more --microbatches, a smaller --batch or a shorter --seq-len",
                        o->batch / per_mb, r->T, rows, INT_MAX);
    if (o->resume && o->init_from)
        return mpt_fail(err, MPT_ERR_INPUT, "--resume and --init-from exclude each other");
    mpt_status st; /* --save: a path that cannot take checkpoints fails now, not at the save */
    if (o->save_dir && (o->save_sharded || r->world->rank == 0) &&
        (st = mpt_ckpt_probe_dir(o->save_dir, err)))
        return st;
    if (o->save_dir && !o->resume && (st = mpt_ckpt_probe_unused(o->save_dir, err)))
        return st; /* every rank reads the root: the refusal is said on every rank */
    if (o->dump_path && o->zero > 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--dump-step1 needs --zero 0 (whole gradients)");
    if (!o->data_path && o->n_data == 0)
        return mpt_fail(err, MPT_ERR_INPUT, "no --data file given");
    if (o->eval_every > 0 && !o->val_path && o->val_fraction <= 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--eval-every %ld needs a validation set: pass --val-data FILE.bin or "
                        "--val-fraction F (the tail of --data held out)",
                        o->eval_every);
    return MPT_OK;
}

/* The training stream, its held-out tail and the validation set (train/data.h). */
static mpt_status open_data_(mpt_run *r, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    const char *one[1] = {o->data_path};
    const char *const *paths = o->n_data > 0 ? o->data_paths : one;
    int n = o->n_data > 0 ? o->n_data : 1;
    mpt_status st = mpt_data_open(&r->data, paths, n, r->cfg.vocab, err);
    if (st) return st;
    char what[4200];
    snprintf(what, sizeof what, "--data %s%s", paths[0], n > 1 ? " (and the other shards)" : "");
    size_t total = r->data.total;
    size_t held = o->val_fraction > 0 ? (size_t)((double)total * o->val_fraction) : 0;
    r->train_view = mpt_data_range(&r->data, 0, total - held);
    if ((st = mpt_data_check(&r->train_view, r->T, what, err))) return st;
    if (o->val_path) {
        const char *vp[1] = {o->val_path};
        if ((st = mpt_data_open(&r->val, vp, 1, r->cfg.vocab, err))) return st;
        r->val_view = mpt_data_all(&r->val);
        snprintf(what, sizeof what, "--val-data %s", o->val_path);
    } else {
        r->val_view = mpt_data_range(&r->data, total - held, held);
        snprintf(what, sizeof what, "the held-out tail (--val-fraction %g) of --data", o->val_fraction);
    }
    if (o->eval_every > 0) return mpt_data_check(&r->val_view, r->T, what, err);
    return MPT_OK;
}

/* The memory plan of the rank at placement q (this rank's, or another stage's). */
static mpt_status stage_plan_(mpt_run *r, const mpt_placement *q, mpt_mem_plan *plan,
                              mpt_error *err) {
    const mpt_train_opts *o = r->o;
    mpt_stage_run run = {.kind = r->kind, .microbatches = o->microbatches, .v = r->v,
                         .Bm = r->Bm, .T = r->T, .sp = o->sp, .zero = o->zero,
                         .recompute = o->recompute, .z3_whole = r->z3_whole,
                         .bf16 = o->dtype == MPT_BF16,
                         .two_bw = o->schedule && !strcmp(o->schedule, "2bw"),
                         .two_bw_deferred = mpt_run_2bw_deferred(o, &r->cfg),
                         .bucket_mb = r->bucket_mb, .threads = o->threads};
    return mpt_stage_plan(&r->cfg, &run, q, plan, err); /* plan/stage_plan.h */
}

/* --partition auto: does a stage fit --mem-limit? */
static int stage_fits_(void *ctx, int stage, int first_layer, int n) {
    mpt_run *r = ctx;
    mpt_mem_plan plan;
    if (!r->o->mem_limit) return 1;
    mpt_placement q = mpt_placement_at_stage(&r->place, stage, first_layer, n);
    return stage_plan_(r, &q, &plan, NULL) == MPT_OK &&
           plan.total <= r->o->mem_limit;
}

/* Does every stage's plan fit the node's memory and --mem-limit? (1 also when a plan fails:
 * the caller reports that.) */
static int stages_fit_(mpt_run *r, size_t phys) {
    for (int s = 0, l = 0; s < r->o->pp; l += r->stage_count[s++]) {
        mpt_mem_plan plan;
        mpt_placement q = mpt_placement_at_stage(&r->place, s, l, r->stage_count[s]);
        if (stage_plan_(r, &q, &plan, NULL) != MPT_OK) return 1;
        if (plan.total > phys || (r->o->mem_limit && plan.total > r->o->mem_limit)) return 0;
    }
    return 1;
}

mpt_status mpt_run_prepare(mpt_run *r, mpt_train_result *res, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    /* the default bucket: the whole gradient on one node (every rank calls, before any check
     * can return) */
    int one_node = 1;
    mpt_status st = o->bucket_mb > 0 ? MPT_OK : mpt_dp_one_node(r->world, &one_node, err);
    r->bucket_mb = o->bucket_mb > 0 ? o->bucket_mb
                   : one_node       ? MPT_DP_BUCKET_WHOLE
                                    : MPT_DP_BUCKET_MB_NODES;
    if (!st) st = validate_numbers_(o, err);
    if (!st) st = resolve_config_(r, err);
    if (st) return st;
    r->T = o->seq_len > 0 ? o->seq_len : r->cfg.n_positions;
    if ((st = validate_layout_(r, err)) || (st = validate_run_(r, err))) return st;
    r->Bm = o->batch / (o->dp * o->microbatches);
    r->Tl = r->T / o->cp;
    if ((st = mpt_partition(&r->cfg, r->T, o->pp, o->partition, r->stage_count, stage_fits_, r,
                            err)))
        return st;
    mpt_placement_set_layers(&r->place, r->stage_count);
    /* interleaved: the rank's chunks are stages r, p+r, ...; its table's block 0 is block r*k */
    if (r->v > 1) r->place.first_layer = r->place.stage * (r->cfg.n_layer / (o->pp * r->v));
    if (r->kind == MPT_PP_ZB_V) r->place.first = r->place.last = r->place.stage == 0;
    for (int s = 0; s < o->pp; s++) res->stage_layers[s] = r->stage_count[s];
    if ((st = open_data_(r, err))) return st;
    res->train_tokens = r->train_view.n;
    res->val_tokens = r->val_view.n;
    /* ZeRO-3 gathers each unit per layer pass (16/N bytes per parameter plus a few layers'
     * working copies) unless --zero3-gather step asks for every unit once per step */
    r->z3_whole = o->zero == 3 && o->z3_gather_step;
    /* the memory plan of this rank's stage; --mem-limit applies to every stage, and no stage
     * can need more than the node's memory (a plan that large would fail or swap at its first
     * touch) */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    size_t phys = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : SIZE_MAX;
    /* the default whole-gradient bucket's receive buffer must let every stage fit, else 4 MB
     * buckets (every rank plans every stage, so all take the same turn) */
    if (r->bucket_mb == MPT_DP_BUCKET_WHOLE && o->bucket_mb <= 0 && !stages_fit_(r, phys))
        r->bucket_mb = MPT_DP_BUCKET_MB_NODES;
    for (int s = 0, l = 0; s < o->pp; l += r->stage_count[s++]) {
        mpt_mem_plan plan;
        mpt_placement q = mpt_placement_at_stage(&r->place, s, l, r->stage_count[s]);
        if ((st = stage_plan_(r, &q, &plan, err))) return st;
        if (s == r->place.stage) res->plan = plan;
        if (plan.total > phys) {
            char need[512], have[32];
            mpt_memplan_format(&plan, need, sizeof need);
            mpt_format_bytes(phys, have, sizeof have);
            return mpt_fail(err, MPT_ERR_INPUT,
                            "the memory plan of pipeline stage %d (%s) is more than this node's "
                            "%s of memory: use a smaller model, batch or sequence, more "
                            "micro-batches, ZeRO, tensor or pipeline parallelism",
                            s, need, have);
        }
        if (o->mem_limit && plan.total > o->mem_limit) {
            char need[512], lim[32];
            mpt_memplan_format(&plan, need, sizeof need);
            mpt_format_bytes(o->mem_limit, lim, sizeof lim);
            return mpt_fail(err, MPT_ERR_INPUT,
                            "the memory plan of pipeline stage %d needs more than --mem-limit %s "
                            "per rank (%s): use more micro-batches, ZeRO, tensor or pipeline "
                            "parallelism, a shorter sequence or a smaller model",
                            s, lim, need);
        }
    }
    return MPT_OK;
}

mpt_status mpt_run_allocate(mpt_run *r, long *start, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    size_t bucket = mpt_dp_bucket_elems(r->bucket_mb);
    mpt_status st = mpt_groups_init(&r->groups, &r->place.layout, r->world, err);
    if (st) return st;
    mpt_arena_init(&r->arena, o->mem_limit);
    mpt_comm *tp = &r->groups.dim[MPT_DIM_TP], *dp = &r->groups.dim[MPT_DIM_DP];
    mpt_comm *pp = &r->groups.dim[MPT_DIM_PP];
    int first = r->place.first, last = r->place.last;
    int tied_ends = o->pp > 1 && r->cfg.tied && r->kind != MPT_PP_ZB_V; /* zb-v: one rank */
    if (tied_ends) { /* the two ends of the pipeline share the tied wte */
        int color = first || last ? 0 : MPI_UNDEFINED;
        if ((st = mpt_comm_split(pp, color, r->place.stage, "embed", &r->embed, err))) return st;
    }
    mpt_par_ops ops; /* the model copies it; its context, the tp group, lives in r->groups */
    mpt_tp_ops(&ops, tp);
    if (o->cp > 1) { /* ring attention over the cp group; gradients reduced over dp x cp */
        if ((st = mpt_groups_make(&r->groups, MPT_MASK_DP | MPT_MASK_CP, &r->dpcp, err)) ||
            (st = mpt_cp_init(&r->cp, &r->groups.dim[MPT_DIM_CP], r->Bm, r->Tl,
                              r->cfg.d_model / o->tp, r->cfg.n_head / o->tp, o->threads,
                              &r->arena, err)))
            return st;
        mpt_cp_ops(&ops, &r->cp);
        dp = &r->dpcp;
    }
    /* experts split over ep (parallel/ep.h); edp: the dp x cp ranks with the same ep rank */
    if (r->place.layout.size[MPT_DIM_EP] > 1) {
        if ((st = mpt_ep_init(&r->ep, &r->groups.dim[MPT_DIM_EP], r->cfg.experts, err)) ||
            (st = mpt_comm_split(dp, r->place.coords.c[MPT_DIM_EP],
                                 mpt_mesh_mask_index(&r->place.layout, MPT_MASK_DP | MPT_MASK_CP,
                                                     r->place.rank),
                                 "edp", &r->edp, err)))
            return st;
        mpt_ep_ops(&ops, &r->ep);
    }
    mpt_gpt_place place = mpt_placement_gpt(&r->place, &ops, o->sp, o->recompute);
    place.threads = o->threads; /* the attention workspace, as the plan sized it */
    place.bf16 = o->dtype == MPT_BF16;
    mpt_gemm_set_dtype(o->dtype); /* process-wide: the linear layers' and the head's GEMMs */
    place.split_w = mpt_pp_split(r->kind); /* B and W apart (model/gpt.h) */
    if (r->v > 1) { /* the rank's v chunks, back to back in one table (model/params.h) */
        place.chunk_layers = r->cfg.n_layer / (o->pp * r->v);
        place.chunk_stride = o->pp * place.chunk_layers;
        if (r->kind == MPT_PP_ZB_V) /* chunk 1 is stage 2p-1-r */
            place.chunk_stride = (2 * o->pp - 1 - 2 * r->place.stage) * place.chunk_layers;
    }
    mpt_dp_opts dopt;
    mpt_dp_opts_defaults(&dopt);
    dopt.zero = o->zero;
    dopt.z3_whole = r->z3_whole;
    dopt.bucket_elems = bucket;
    dopt.grad_wire = o->grad_reduce_dtype == MPT_BF16 ? MPT_BF16 : MPT_F32;
    if (r->ep.comm && o->zero > 0) { /* experts sharded over edp (parallel/dp.h, ep.h) */
        dopt.edp_size = r->edp.size;
        dopt.edp = &r->edp;
    }
    if (tied_ends && (first || last)) { /* the two ends sum wte's gradients before dp reduces */
        dopt.pre_reduce = mpt_tied_sum;
        dopt.pre_reduce_ctx = &r->embed;
    }
    if ((st = mpt_params_build(&r->full, &r->cfg, err))) return st;
    int flags = mpt_dp_gpt_flags(o->zero) | MPT_GPT_NO_ACTS; /* the executor owns the sets */
    if ((st = mpt_gpt_init(&r->model, &r->cfg, r->Bm, r->Tl, flags, mpt_dp_unit_align(dp->size),
                           &place, &r->arena, err)))
        return st;
    if (dopt.pre_reduce) dopt.held = mpt_tied_tensor(&r->model.pt);
    /* zb-v, ZeRO-2/3: rank 0 holds both ends; wte's gradient is held whole (the tied head's
     * B, a chunk apart, writes it before the embeddings' unit is staged; plan/memplan.c) */
    if (r->kind == MPT_PP_ZB_V && r->cfg.tied && first && o->zero >= 2)
        dopt.held = mpt_tied_tensor(&r->model.pt);
    if ((st = mpt_dp_init(&r->dp, &r->model, dp, tp, pp, &dopt, &r->arena, err))) return st;
    if (r->ep.comm && o->zero == 0 &&
        (st = mpt_ep_grads_init(&r->ep, &r->model, &r->edp, &r->arena, err)))
        return st;
    if ((st = mpt_pp_init_chunks(&r->pp, pp, r->kind, o->microbatches, r->v, &r->model, &r->dp,
                                 err)))
        return st;
    r->batch_n = (size_t)r->Bm * r->Tl;
    mpt_buflist_init(&r->token_bufs);
    mpt_data_buffers(r->batch_n, &r->inputs, &r->targets, &r->token_bufs);
    if ((st = mpt_buflist_alloc(&r->token_bufs, &r->arena, err)))
        return st;
    mpt_buflist_init(&r->stash_bufs);
    if (o->schedule && strcmp(o->schedule, "2bw") == 0) { /* the second weight version */
        mpt_buflist_add(&r->stash_bufs, "2bw.stash", MPT_MEM_PARAMS, MPT_F32,
                        mpt_run_2bw_version_n(r), (void **)&r->stash); /* ZeRO-3: a slice */
        if (mpt_run_2bw_deferred(o, &r->cfg)) { /* train/trainer_2bw.c */
            int z2 = o->zero == 2; /* the gradients live as a slice (and the held whole) */
            r->grads1 = z2 ? r->dp.gshard : r->model.grads;
            r->held1 = z2 ? r->dp.held_grad : NULL;
            mpt_buflist_add(&r->stash_bufs, "2bw.grads", MPT_MEM_GRADS, MPT_F32,
                            z2 ? r->dp.shard_n : r->model.pt.total, (void **)&r->grads2);
            if (r->held1)
                mpt_buflist_add(&r->stash_bufs, "2bw.held_grad", MPT_MEM_GRADS, MPT_F32,
                                r->model.pt.t[r->dp.o.held].numel, (void **)&r->held2);
        }
        if ((st = mpt_buflist_alloc(&r->stash_bufs, &r->arena, err))) return st;
    }
    if ((st = mpt_run_load(r, start, err))) return st;
    if (r->stash && !r->stash_loaded) /* both versions equal: a fresh run (or no stash saved) */
        memcpy(r->stash, mpt_run_2bw_live(r), mpt_run_2bw_version_n(r) * sizeof(float));
    return MPT_OK;
}

void mpt_run_free(mpt_run *r) {
    mpt_run_2bw_free(r);
    mpt_buflist_release(&r->stash_bufs, &r->arena);
    mpt_buflist_free(&r->stash_bufs);
    mpt_buflist_release(&r->token_bufs, &r->arena);
    mpt_buflist_free(&r->token_bufs);
    mpt_pp_free(&r->pp);
    mpt_dp_free(&r->dp);
    mpt_ep_free(&r->ep);
    mpt_comm_free(&r->edp);
    mpt_gpt_free(&r->model);
    mpt_cp_free(&r->cp);
    mpt_comm_free(&r->dpcp);
    mpt_params_free(&r->full);
    mpt_comm_free(&r->embed);
    mpt_groups_free(&r->groups);
    mpt_data_free(&r->data);
    mpt_data_free(&r->val);
    mpt_jsonlog_close(&r->log);
    mpt_trace_free(&r->trace);
}
