/* trainer.c — the single-rank training loop (see trainer.h). */
#include "train/trainer.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/peak.h"
#include "model/gpt.h"
#include "model/params.h"
#include "parallel/dp.h"
#include "parallel/groups.h"
#include "parallel/mesh.h"
#include "parallel/tp.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/jsonlog.h"
#include "train/safetensors.h"
#include "tok/tokfile.h"

void mpt_train_opts_defaults(mpt_train_opts *o) {
    memset(o, 0, sizeof *o);
    mpt_config_preset(&o->cfg, "tiny", NULL);
    o->model_name = "tiny";
    o->batch = 8;
    o->microbatches = 1;
    o->seq_len = 0; /* 0: the model's n_positions */
    o->steps = 10;
    o->seed = 1337;
    mpt_adamw_defaults(&o->opt);
    o->threads = 1;
    o->dp = 1;
    o->tp = 1;
    o->bucket_mb = 4.0;
}

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Model FLOPs of one token's forward+backward (PaLM appendix B): 6 per weight of every matmul
 * (the embedding lookup wpe excluded, the tied head counted) + 12*L*T*D for attention. */
static double flops_per_token_(const mpt_config *c, int T) {
    double D = c->d_model, F = c->ffn, L = c->n_layer, V = c->vocab;
    double matmul = L * (D * 3 * D + D * D + 2 * D * F) + V * D;
    return 6.0 * matmul + 12.0 * L * T * D;
}

typedef struct run_ {
    mpt_comm *world;          /* not owned */
    mpt_groups groups;        /* this rank's tp / dp / ... communicators */
    mpt_param_table full;     /* the whole-tensor table checkpoints use */
    mpt_arena arena;
    mpt_gpt model;
    mpt_dp dp;
    int32_t *inputs, *targets; /* (B/(R*M), T), kind workspace */
    size_t batch_n;
    mpt_tokfile data;
    mpt_jsonlog log;
    int rank0;
} run_;

static void run_free_(run_ *r) {
    mpt_arena_release(&r->arena, MPT_MEM_WORKSPACE, r->inputs, r->batch_n, sizeof(int32_t));
    mpt_arena_release(&r->arena, MPT_MEM_WORKSPACE, r->targets, r->batch_n, sizeof(int32_t));
    mpt_dp_free(&r->dp);
    mpt_gpt_free(&r->model);
    mpt_params_free(&r->full);
    mpt_groups_free(&r->groups);
    mpt_tokfile_free(&r->data);
    mpt_jsonlog_close(&r->log);
}

/* The architecture: from the checkpoint when resuming or initialising from one. */
static mpt_status resolve_config_(const mpt_train_opts *o, mpt_config *cfg, char *ckpt_dir,
                                  size_t n, mpt_error *err) {
    *cfg = o->cfg;
    ckpt_dir[0] = '\0';
    const char *from = o->resume ? o->resume : o->init_from;
    if (from) {
        mpt_status st = mpt_checkpoint_resolve(from, ckpt_dir, n, err);
        if (!st) st = mpt_checkpoint_read_config(ckpt_dir, cfg, err);
        if (st) return st;
    }
    cfg->padded_vocab = 0; /* a multiple of 64 per tensor-parallel rank */
    return mpt_config_finish(cfg, 64 * (o->tp > 0 ? o->tp : 1), err);
}

static mpt_status validate_(const mpt_train_opts *o, const mpt_config *cfg, int T, int world,
                            mpt_error *err) {
    mpt_layout lay = {.size = {o->tp, 1, o->dp, 1, 1}};
    mpt_status st = mpt_layout_check(&lay, world, err);
    if (st) return st;
    if (cfg->n_head % o->tp != 0 || cfg->ffn % o->tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--tp %d must divide the attention heads (%d) and the MLP width --ffn "
                        "(%d): choose a tp that divides both",
                        o->tp, cfg->n_head, cfg->ffn);
    if (o->sp && o->tp < 2)
        return mpt_fail(err, MPT_ERR_INPUT, "--sp splits the sequence over the tensor-parallel "
                                            "ranks: it needs --tp 2 or more");
    if (o->sp && T % o->tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--sp splits the sequence over --tp %d ranks, but --seq-len %d is not "
                        "divisible by %d: choose a multiple of %d",
                        o->tp, T, o->tp, o->tp);
    if (o->zero < 0 || o->zero > 3)
        return mpt_fail(err, MPT_ERR_INPUT, "--zero %d: use 0, 1, 2 or 3", o->zero);
    if (o->batch < 1) return mpt_fail(err, MPT_ERR_INPUT, "--batch %d must be >= 1", o->batch);
    if (o->microbatches < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--microbatches %d must be >= 1", o->microbatches);
    if (o->batch % (o->dp * o->microbatches) != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--batch %d is not divisible by --dp %d x --microbatches %d: every replica "
                        "needs the same whole number of sequences per micro-batch",
                        o->batch, o->dp, o->microbatches);
    if (T < 1 || T > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--seq-len %d must be between 1 and the model's %d positions", T,
                        cfg->n_positions);
    if (o->steps < 0) return mpt_fail(err, MPT_ERR_INPUT, "--steps %ld must be >= 0", o->steps);
    if (o->resume && o->init_from)
        return mpt_fail(err, MPT_ERR_INPUT, "--resume and --init-from exclude each other");
    if (!(o->opt.lr > 0.0f)) return mpt_fail(err, MPT_ERR_INPUT, "--lr must be positive");
    if (o->opt.warmup < 0) return mpt_fail(err, MPT_ERR_INPUT, "--warmup must be >= 0");
    if (!(o->bucket_mb > 0.0)) return mpt_fail(err, MPT_ERR_INPUT, "--bucket-mb must be positive");
    if (o->dump_path && o->zero > 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--dump-step1 needs --zero 0 (whole gradients)");
    if (!o->data_path) return mpt_fail(err, MPT_ERR_INPUT, "no --data file given");
    return MPT_OK;
}

static cJSON *start_line_(const mpt_train_opts *o, const mpt_config *c, int T, long start,
                          const mpt_mem_plan *plan, double peak, int world) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "event", "start");
    cJSON_AddStringToObject(j, "model", o->model_name ? o->model_name : "custom");
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "d_model", c->d_model);
    cJSON_AddNumberToObject(j, "ffn", c->ffn);
    cJSON_AddNumberToObject(j, "vocab", c->vocab);
    cJSON_AddNumberToObject(j, "padded_vocab", c->padded_vocab);
    cJSON_AddNumberToObject(j, "seq_len", T);
    cJSON_AddNumberToObject(j, "params", (double)mpt_config_param_count(c));
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "microbatches", o->microbatches);
    cJSON_AddNumberToObject(j, "steps", (double)o->steps);
    cJSON_AddNumberToObject(j, "start_step", (double)start);
    cJSON_AddNumberToObject(j, "lr", o->opt.lr);
    cJSON_AddNumberToObject(j, "warmup", o->opt.warmup);
    cJSON_AddStringToObject(j, "lr_schedule", o->opt.cosine ? "cosine" : "constant");
    cJSON_AddNumberToObject(j, "weight_decay", o->opt.weight_decay);
    cJSON_AddNumberToObject(j, "grad_clip", o->opt.grad_clip);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddStringToObject(j, "data", o->data_path);
    cJSON *layout = cJSON_AddObjectToObject(j, "layout");
    cJSON_AddNumberToObject(layout, "dp", o->dp);
    cJSON_AddNumberToObject(layout, "tp", o->tp);
    cJSON_AddBoolToObject(layout, "sp", o->sp);
    const char *ones[] = {"pp", "cp", "ep"};
    for (int i = 0; i < 3; i++) cJSON_AddNumberToObject(layout, ones[i], 1);
    cJSON_AddNumberToObject(layout, "zero", o->zero);
    cJSON_AddNumberToObject(layout, "world", world);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "peak_flops", peak);
    cJSON *mem = cJSON_AddObjectToObject(j, "memory_plan_bytes");
    for (int k = 0; k < MPT_MEM_KINDS; k++)
        cJSON_AddNumberToObject(mem, mpt_mem_kind_name((mpt_mem_kind)k), (double)plan->bytes[k]);
    cJSON_AddNumberToObject(mem, "total", (double)plan->total);
    cJSON_AddNumberToObject(mem, "param_elements", (double)plan->param_elements);
    cJSON_AddNumberToObject(mem, "zero_pool_elements", (double)plan->pool_elements);
    return j;
}

/* Testing hook: every gradient of the first step under the Hugging Face names, before
 * clipping (whole tensors, assembled over tensor parallelism; zero 0 only, where every rank holds
 * the reduced gradients), and on one rank also the first micro-batch's logits -- what a PyTorch
 * reference or a run under another layout compares against. All ranks call; rank 0 writes. */
static mpt_status dump_(run_ *r, const char *path, const float *logits_copy, int Bm, int T,
                        mpt_error *err) {
    const mpt_param_table *full = &r->full;
    float *grads = malloc(full->total * sizeof *grads);
    mpt_st_entry *e = calloc(full->n + 1, sizeof *e);
    mpt_status st = grads && e ? MPT_OK : mpt_fail(err, MPT_ERR_RUN, "out of memory for the dump");
    if (!st)
        st = mpt_tp_assemble(&r->groups.dim[MPT_DIM_TP], &r->model.pt, r->model.grads, full,
                             grads, err);
    if (!st && r->rank0) {
        size_t n = full->n;
        for (size_t i = 0; i < n; i++) {
            const mpt_tensor *t = &full->t[i];
            e[i] = (mpt_st_entry){t->name, t->ndim, {t->shape[0], t->shape[1]},
                                  grads + t->offset};
        }
        if (logits_copy)
            e[n++] = (mpt_st_entry){"logits", 3,
                                    {(size_t)Bm, (size_t)T, (size_t)r->model.cfg.vocab},
                                    logits_copy};
        st = mpt_safetensors_write(path, e, n, NULL, 0, 0, err);
    }
    free(grads);
    free(e);
    return mpt_comm_agree(r->world, st, err);
}

/* Gathers the full state onto every rank (transient buffers, outside the training memory plan)
 * and writes it from world rank 0; all ranks return the agreed status. */
static mpt_status save_(const mpt_train_opts *o, run_ *r, long step, mpt_train_result *res,
                        mpt_error *err) {
    size_t P = r->model.pt.total, PF = r->full.total;
    float *buf = malloc(3 * P * sizeof(float)), *whole = malloc(3 * PF * sizeof(float));
    mpt_status st = buf && whole ? MPT_OK
                                 : mpt_fail(err, MPT_ERR_RUN, "out of memory for the checkpoint");
    st = mpt_comm_agree(r->world, st, err);
    if (st) {
        free(buf);
        free(whole);
        return st;
    }
    /* ZeRO slices -> this rank's tensor-parallel shards -> whole tensors */
    st = mpt_dp_gather(&r->dp, buf, buf + P, buf + 2 * P, err);
    mpt_comm *tp = &r->groups.dim[MPT_DIM_TP];
    for (int k = 0; k < 3 && !st; k++)
        st = mpt_tp_assemble(tp, &r->model.pt, buf + k * P, &r->full, whole + k * PF, err);
    if (!st && r->rank0) {
        mpt_train_state ts;
        memset(&ts, 0, sizeof ts);
        ts.step = step;
        ts.seed = o->seed;
        snprintf(ts.options_json, sizeof ts.options_json,
                 "{\"batch\":%d,\"microbatches\":%d,\"steps\":%ld,\"lr\":%g,\"warmup\":%d,"
                 "\"dp\":%d,\"tp\":%d,\"zero\":%d}",
                 o->batch, o->microbatches, o->steps, (double)o->opt.lr, o->opt.warmup, o->dp,
                 o->tp, o->zero);
        st = mpt_checkpoint_save(o->save_dir, o->keep, &r->model.cfg, &r->full, whole,
                                 whole + PF, whole + 2 * PF, &ts, res->saved_dir,
                                 sizeof res->saved_dir, err);
    }
    free(buf);
    free(whole);
    st = mpt_comm_agree(r->world, st, err);
    if (!st) st = mpt_bcast(r->world, res->saved_dir, sizeof res->saved_dir, 0, err);
    return st;
}

/* Everything that can fail before the first step; statuses are agreed by the caller. */
static mpt_status prepare_(run_ *r, const mpt_train_opts *o, mpt_config *cfg, char *ckpt,
                           size_t ckpt_n, int *T, mpt_train_result *res, mpt_error *err) {
    mpt_status st = resolve_config_(o, cfg, ckpt, ckpt_n, err);
    if (st) return st;
    *T = o->seq_len > 0 ? o->seq_len : cfg->n_positions;
    if ((st = validate_(o, cfg, *T, r->world->size, err))) return st;
    if ((st = mpt_tokfile_read(o->data_path, cfg->vocab, &r->data, err))) return st;
    if ((st = mpt_data_check(&r->data, *T, o->data_path, err))) return st;
    int Bm = o->batch / (o->dp * o->microbatches);
    size_t bucket = (size_t)(o->bucket_mb * 1024 * 1024 / sizeof(float));
    if ((st = mpt_memplan_train(cfg, Bm, *T, o->tp, o->sp, o->dp, o->zero, bucket, &res->plan, err)))
        return st;
    if (o->mem_limit && res->plan.total > o->mem_limit) {
        char need[512], lim[32];
        mpt_memplan_format(&res->plan, need, sizeof need);
        mpt_format_bytes(o->mem_limit, lim, sizeof lim);
        return mpt_fail(err, MPT_ERR_INPUT,
                        "the memory plan needs more than --mem-limit %s per rank (%s): use more "
                        "micro-batches, ZeRO, a shorter sequence or a smaller model",
                        lim, need);
    }
    return MPT_OK;
}

static mpt_status allocate_(run_ *r, const mpt_train_opts *o, const mpt_config *cfg, int T,
                            const char *ckpt, long *start, mpt_error *err) {
    int Bm = o->batch / (o->dp * o->microbatches);
    size_t bucket = (size_t)(o->bucket_mb * 1024 * 1024 / sizeof(float));
    mpt_layout lay = {.size = {o->tp, 1, o->dp, 1, 1}};
    mpt_status st = mpt_groups_init(&r->groups, &lay, r->world, err);
    if (st) return st;
    mpt_comm *tp = &r->groups.dim[MPT_DIM_TP], *dp = &r->groups.dim[MPT_DIM_DP];
    mpt_dp_plan plan;
    mpt_param_table local;
    if ((st = mpt_params_build_tp(&local, cfg, o->tp, tp->rank, mpt_dp_unit_align(o->dp), err)))
        return st;
    mpt_dp_plan_for(&local, o->dp, o->zero, bucket, &plan);
    mpt_params_free(&local);
    if ((st = mpt_params_build(&r->full, cfg, err))) return st;
    mpt_arena_init(&r->arena, o->mem_limit);
    mpt_gpt_place place = {.tp = tp, .sp = o->sp, .n_layers = cfg->n_layer, .first = 1,
                           .last = 1};
    if ((st = mpt_gpt_init(&r->model, cfg, Bm, T, plan.gpt_flags, mpt_dp_unit_align(o->dp),
                           &place, &r->arena, err)) ||
        (st = mpt_dp_init(&r->dp, &r->model, dp, tp, o->zero, bucket, &r->arena, err)))
        return st;
    r->batch_n = (size_t)Bm * T;
    if ((st = mpt_arena_alloc(&r->arena, MPT_MEM_WORKSPACE, r->batch_n, sizeof(int32_t),
                              &r->inputs, err)) ||
        (st = mpt_arena_alloc(&r->arena, MPT_MEM_WORKSPACE, r->batch_n, sizeof(int32_t),
                              &r->targets, err)))
        return st;
    *start = 0;
    if (!ckpt[0]) {
        mpt_dp_init_values(&r->dp, o->seed);
        return MPT_OK;
    }
    /* checkpoints hold whole tensors: load them (transient buffers), keep this rank's part */
    size_t P = r->model.pt.total, PF = r->full.total;
    float *whole = malloc(3 * PF * sizeof(float)), *buf = malloc(3 * P * sizeof(float));
    if (!whole || !buf) {
        free(whole);
        free(buf);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", ckpt);
    }
    mpt_train_state ts;
    int has_opt = 0;
    st = mpt_checkpoint_load(ckpt, &r->full, whole, o->resume ? whole + PF : NULL,
                             o->resume ? whole + 2 * PF : NULL, &has_opt,
                             o->resume ? &ts : NULL, err);
    if (!st) {
        for (int k = 0; k < 3; k++)
            mpt_tp_extract(&r->model.pt, &r->full, whole + k * PF, buf + k * P);
        mpt_dp_load(&r->dp, buf, has_opt ? buf + P : NULL, has_opt ? buf + 2 * P : NULL);
        if (o->resume) *start = ts.step;
    }
    free(whole);
    free(buf);
    if (!st && *start > o->steps)
        st = mpt_fail(err, MPT_ERR_INPUT,
                      "the checkpoint is at step %ld, past --steps %ld: ask for more steps",
                      *start, o->steps);
    return st;
}

static cJSON *step_line_(const mpt_step_info *info) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)info->step);
    cJSON_AddNumberToObject(j, "loss", info->loss);
    cJSON_AddNumberToObject(j, "lr", info->lr);
    cJSON_AddNumberToObject(j, "grad_norm", info->grad_norm);
    cJSON_AddNumberToObject(j, "tokens_per_s", info->tokens_per_s);
    cJSON_AddNumberToObject(j, "step_ms", info->step_ms);
    cJSON_AddNumberToObject(j, "mfu", info->mfu);
    cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)info->peak_mem_bytes);
    return j;
}

/* One optimizer step: micro-batches of this replica's slice, reduction, clipping, AdamW.
 * *loss gets the global mean loss, *norm the global gradient norm. */
static mpt_status step_(run_ *r, const mpt_train_opts *o, const mpt_adamw *opt, long step, int T,
                        float **logits_copy, double *loss, double *norm, float *lr,
                        mpt_error *err) {
    const mpt_config *cfg = &r->model.cfg;
    int B = o->batch, M = o->microbatches, Bm = B / (o->dp * M);
    int first = r->groups.coords.c[MPT_DIM_DP] * (B / o->dp);
    float dloss = 1.0f / ((float)B * (float)T);
    double loss_sum = 0.0;
    mpt_status st;
    mpt_comm_set_step(step + 1);
    if (o->stall_step == step + 1 && o->stall_rank == r->world->rank) {
        struct timespec ts = {(time_t)o->stall_seconds, 0};
        nanosleep(&ts, NULL);
    }
    mpt_dp_begin_step(&r->dp);
    for (int mb = 0; mb < M; mb++) {
        mpt_data_batch(&r->data, step, B, first + mb * Bm, Bm, T, r->inputs, r->targets);
        if (o->dump_path && step == 0 && mb == 0 && r->world->size == 1) {
            size_t nl = r->batch_n * (size_t)cfg->vocab;
            *logits_copy = malloc(nl * sizeof **logits_copy);
            if (!*logits_copy) return mpt_fail(err, MPT_ERR_RUN, "out of memory for the dump");
            if ((st = mpt_gpt_forward(&r->model, r->inputs, NULL, Bm, T, 0.0f, NULL, err)))
                return st;
            for (size_t i = 0; i < r->batch_n; i++)
                memcpy(*logits_copy + i * cfg->vocab,
                       r->model.cur->a[MPT_ACT_LOGITS] + i * cfg->padded_vocab,
                       (size_t)cfg->vocab * sizeof(float));
        }
        mpt_dp_set_last_microbatch(&r->dp, mb == M - 1);
        double mb_loss = 0.0;
        if ((st = mpt_gpt_forward(&r->model, r->inputs, r->targets, Bm, T, dloss, &mb_loss, err)) ||
            (st = mpt_gpt_backward(&r->model, r->inputs, Bm, T, err)))
            return st;
        loss_sum += mb_loss;
    }
    if ((st = mpt_dp_finish_grads(&r->dp, err))) return st;
    mpt_comm *dpc = &r->groups.dim[MPT_DIM_DP]; /* tp ranks hold the same loss */
    if (dpc->size > 1 && (st = mpt_allreduce_sum_f64(dpc, &loss_sum, 1, err))) return st;
    *loss = loss_sum / ((double)B * T);
    if (!isfinite(*loss))
        return mpt_fail(err, MPT_ERR_RUN,
                        "the loss became non-finite at step %ld: lower --lr or check the data; "
                        "the last checkpoint is intact",
                        step + 1);
    if (o->dump_path && step == 0 && (st = dump_(r, o->dump_path, *logits_copy, Bm, T, err)))
        return st;
    if ((st = mpt_dp_grad_norm(&r->dp, norm, err))) return st;
    *lr = mpt_adamw_lr(opt, step);
    return mpt_dp_update(&r->dp, opt, *lr, mpt_clip_factor(opt, *norm), step + 1, err);
}

mpt_status mpt_train(mpt_comm *world, const mpt_train_opts *o, mpt_start_fn on_start,
                     mpt_step_fn on_step, void *ctx, mpt_train_result *res, mpt_error *err) {
    run_ r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    r.world = world;
    r.rank0 = world->rank == 0;
    char ckpt[1024];
    mpt_config cfg;
    float *logits_copy = NULL;
    int T = 0;
    long start = 0;
    omp_set_num_threads(o->threads > 0 ? o->threads : 1);
    openblas_set_num_threads(o->threads > 0 ? o->threads : 1);
    mpt_status st = prepare_(&r, o, &cfg, ckpt, sizeof ckpt, &T, res, err);
    if (!(st = mpt_comm_agree(world, st, err)))
        st = mpt_comm_agree(world, allocate_(&r, o, &cfg, T, ckpt, &start, err), err);
    if (st) goto done;

    res->cfg = cfg;
    res->n_params = mpt_config_param_count(&cfg);
    double peak = mpt_measure_peak_flops(o->threads > 0 ? o->threads : 1, 0.05);
    res->peak_flops = peak;
    if ((st = mpt_allreduce_sum_f64(world, &res->peak_flops, 1, err))) goto done;
    st = r.rank0 ? mpt_jsonlog_open(&r.log, o->log_path, err) : MPT_OK;
    if (!st) st = mpt_jsonlog_write(&r.log, start_line_(o, &cfg, T, start, &res->plan,
                                                         res->peak_flops, world->size), err);
    if ((st = mpt_comm_agree(world, st, err))) goto done;
    if (on_start && r.rank0) on_start(res, ctx);

    mpt_adamw opt = o->opt;
    opt.total_steps = o->steps;
    int B = o->batch;
    double flops_step = flops_per_token_(&cfg, T) * (double)B * T, t_all = 0.0;
    res->first_step = start + 1;
    for (long step = start; step < o->steps; step++) {
        double t0 = now_(), loss = 0.0, norm = 0.0;
        float lr = 0.0f;
        if ((st = step_(&r, o, &opt, step, T, &logits_copy, &loss, &norm, &lr, err))) goto done;
        double dt = now_() - t0, peak_mem = (double)r.arena.peak_total;
        if ((st = mpt_allreduce_max_f64(world, &peak_mem, 1, err))) goto done;
        t_all += dt;
        mpt_step_info info = {.step = step + 1, .steps = o->steps, .loss = loss, .lr = lr,
                              .grad_norm = norm, .tokens_per_s = (double)B * T / dt,
                              .step_ms = dt * 1e3,
                              .mfu = res->peak_flops > 0 ? flops_step / dt / res->peak_flops : 0,
                              .peak_mem_bytes = (size_t)peak_mem};
        if (step == start) res->first_loss = loss;
        res->last_loss = loss;
        res->last_step = step + 1;
        st = mpt_jsonlog_write(&r.log, r.rank0 ? step_line_(&info) : NULL, err);
        if ((st = mpt_comm_agree(world, st, err))) goto done;
        if (on_step && r.rank0) on_step(&info, ctx);
        int last = step + 1 == o->steps;
        if (o->save_dir && (last || (o->save_every > 0 && (step + 1) % o->save_every == 0)) &&
            (st = save_(o, &r, step + 1, res, err)))
            goto done;
    }
    if (o->save_dir && start == o->steps && (st = save_(o, &r, start, res, err))) goto done;
    long ran = res->last_step >= res->first_step ? res->last_step - res->first_step + 1 : 0;
    res->seconds = t_all;
    res->tokens_per_s = t_all > 0 ? (double)ran * B * T / t_all : 0;
    res->mfu = t_all > 0 && res->peak_flops > 0 ? ran * flops_step / t_all / res->peak_flops : 0;
    double peaks[6];
    for (int k = 0; k < MPT_MEM_KINDS; k++) peaks[k] = (double)r.arena.peak[k];
    peaks[5] = (double)r.arena.peak_total;
    if ((st = mpt_allreduce_max_f64(world, peaks, 6, err))) goto done;
    for (int k = 0; k < 6; k++) res->peak[k] = (size_t)peaks[k];
    if (r.rank0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "event", "end");
        cJSON_AddNumberToObject(j, "steps", (double)res->last_step);
        cJSON_AddNumberToObject(j, "final_loss", res->last_loss);
        cJSON_AddNumberToObject(j, "seconds", t_all);
        cJSON_AddNumberToObject(j, "tokens_per_s", res->tokens_per_s);
        cJSON_AddNumberToObject(j, "mfu", res->mfu);
        cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)res->peak[5]);
        cJSON_AddNumberToObject(j, "planned_mem_bytes", (double)res->plan.total);
        cJSON *pk = cJSON_AddObjectToObject(j, "peak_mem_by_kind");
        for (int k = 0; k < MPT_MEM_KINDS; k++)
            cJSON_AddNumberToObject(pk, mpt_mem_kind_name((mpt_mem_kind)k), peaks[k]);
        if (res->saved_dir[0]) cJSON_AddStringToObject(j, "checkpoint", res->saved_dir);
        /* communication of world rank 0 over the whole run, by group and operation */
        cJSON *comm = cJSON_AddObjectToObject(j, "comm");
        for (int d = 0; d < MPT_DIMS; d++) {
            const mpt_comm *c = &r.groups.dim[d];
            if (c->size <= 1) continue;
            cJSON *g = cJSON_AddObjectToObject(comm, c->name);
            for (int op = 0; op < MPT_OP_KINDS; op++) {
                if (!c->stats.calls[op]) continue;
                cJSON *x = cJSON_AddObjectToObject(g, mpt_comm_op_name((mpt_comm_op)op));
                cJSON_AddNumberToObject(x, "calls", (double)c->stats.calls[op]);
                cJSON_AddNumberToObject(x, "bytes", c->stats.bytes[op]);
                cJSON_AddNumberToObject(x, "seconds", c->stats.seconds[op]);
            }
        }
        st = mpt_jsonlog_write(&r.log, j, err);
    }
    st = mpt_comm_agree(world, st, err);
done:
    free(logits_copy);
    run_free_(&r);
    return st;
}
