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
    mpt_arena arena;
    mpt_gpt model;
    float *m, *v;          /* AdamW moments, kind optimizer */
    int32_t *inputs, *targets; /* (B/M, T), kind workspace */
    mpt_tokfile data;
    mpt_jsonlog log;
    size_t batch_n;
} run_;

static void run_free_(run_ *r) {
    mpt_arena_release(&r->arena, MPT_MEM_OPTIMIZER, r->m, r->model.pt.total, sizeof(float));
    mpt_arena_release(&r->arena, MPT_MEM_OPTIMIZER, r->v, r->model.pt.total, sizeof(float));
    mpt_arena_release(&r->arena, MPT_MEM_WORKSPACE, r->inputs, r->batch_n, sizeof(int32_t));
    mpt_arena_release(&r->arena, MPT_MEM_WORKSPACE, r->targets, r->batch_n, sizeof(int32_t));
    mpt_gpt_free(&r->model);
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
    cfg->padded_vocab = 0;
    return mpt_config_finish(cfg, 64, err);
}

static mpt_status validate_(const mpt_train_opts *o, const mpt_config *cfg, int T,
                            mpt_error *err) {
    if (o->batch < 1) return mpt_fail(err, MPT_ERR_INPUT, "--batch %d must be >= 1", o->batch);
    if (o->microbatches < 1 || o->batch % o->microbatches != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--batch %d is not divisible by --microbatches %d: choose a divisor",
                        o->batch, o->microbatches);
    if (T < 1 || T > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--seq-len %d must be between 1 and the model's %d positions", T,
                        cfg->n_positions);
    if (o->steps < 0) return mpt_fail(err, MPT_ERR_INPUT, "--steps %ld must be >= 0", o->steps);
    if (o->resume && o->init_from)
        return mpt_fail(err, MPT_ERR_INPUT, "--resume and --init-from exclude each other");
    if (!(o->opt.lr > 0.0f)) return mpt_fail(err, MPT_ERR_INPUT, "--lr must be positive");
    if (o->opt.warmup < 0) return mpt_fail(err, MPT_ERR_INPUT, "--warmup must be >= 0");
    if (!o->data_path) return mpt_fail(err, MPT_ERR_INPUT, "no --data file given");
    return MPT_OK;
}

static cJSON *start_line_(const mpt_train_opts *o, const mpt_config *c, int T, long start,
                          const mpt_mem_plan *plan, double peak) {
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
    const char *dims[] = {"dp", "tp", "pp", "cp", "ep"};
    for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(layout, dims[i], 1);
    cJSON_AddNumberToObject(layout, "zero", 0);
    cJSON_AddNumberToObject(layout, "world", 1);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "peak_flops", peak);
    cJSON *mem = cJSON_AddObjectToObject(j, "memory_plan_bytes");
    for (int k = 0; k < MPT_MEM_KINDS; k++)
        cJSON_AddNumberToObject(mem, mpt_mem_kind_name((mpt_mem_kind)k), (double)plan->bytes[k]);
    cJSON_AddNumberToObject(mem, "total", (double)plan->total);
    return j;
}

/* Testing hook: the first micro-batch's logits and every gradient of the first step, under the
 * Hugging Face names, before clipping (what a PyTorch reference compares against). */
static mpt_status dump_(const char *path, const mpt_gpt *m, const float *logits_copy, int Bm,
                        int T, mpt_error *err) {
    size_t n = m->pt.n + 1;
    mpt_st_entry *e = calloc(n, sizeof *e);
    if (!e) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    for (size_t i = 0; i < m->pt.n; i++) {
        const mpt_tensor *t = &m->pt.t[i];
        e[i].name = t->name;
        e[i].ndim = t->ndim;
        e[i].shape[0] = t->shape[0];
        e[i].shape[1] = t->shape[1];
        e[i].data = m->grads + t->offset;
    }
    e[m->pt.n] = (mpt_st_entry){"logits", 3, {(size_t)Bm, (size_t)T, (size_t)m->cfg.vocab}, logits_copy};
    mpt_status st = mpt_safetensors_write(path, e, n, NULL, 0, 0, err);
    free(e);
    return st;
}

static mpt_status save_(const mpt_train_opts *o, run_ *r, long step, mpt_train_result *res,
                        mpt_error *err) {
    mpt_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.step = step;
    ts.seed = o->seed;
    snprintf(ts.options_json, sizeof ts.options_json,
             "{\"batch\":%d,\"microbatches\":%d,\"steps\":%ld,\"lr\":%g,\"warmup\":%d}", o->batch,
             o->microbatches, o->steps, (double)o->opt.lr, o->opt.warmup);
    return mpt_checkpoint_save(o->save_dir, o->keep, &r->model.cfg, &r->model.pt, r->model.params,
                               r->m, r->v, &ts, res->saved_dir, sizeof res->saved_dir, err);
}

mpt_status mpt_train(const mpt_train_opts *o, mpt_start_fn on_start, mpt_step_fn on_step,
                     void *ctx, mpt_train_result *res, mpt_error *err) {
    run_ r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    char ckpt[1024];
    mpt_config cfg;
    float *logits_copy = NULL;
    mpt_status st = resolve_config_(o, &cfg, ckpt, sizeof ckpt, err);
    if (st) return st;
    int T = o->seq_len > 0 ? o->seq_len : cfg.n_positions;
    if ((st = validate_(o, &cfg, T, err))) return st;
    int B = o->batch, M = o->microbatches, Bm = B / M;

    if ((st = mpt_tokfile_read(o->data_path, cfg.vocab, &r.data, err))) return st;
    if ((st = mpt_data_check(&r.data, T, o->data_path, err))) goto done;
    if ((st = mpt_memplan_single(&cfg, Bm, T, 1, &res->plan, err))) goto done;
    if (o->mem_limit && res->plan.total > o->mem_limit) {
        char need[512], lim[32];
        mpt_memplan_format(&res->plan, need, sizeof need);
        mpt_format_bytes(o->mem_limit, lim, sizeof lim);
        st = mpt_fail(err, MPT_ERR_INPUT,
                      "the memory plan needs more than --mem-limit %s per rank (%s): use more "
                      "micro-batches, a shorter sequence or a smaller model",
                      lim, need);
        goto done;
    }

    omp_set_num_threads(o->threads > 0 ? o->threads : 1);
    openblas_set_num_threads(o->threads > 0 ? o->threads : 1);
    mpt_arena_init(&r.arena, o->mem_limit);
    if ((st = mpt_gpt_init(&r.model, &cfg, Bm, T, 1, &r.arena, err))) goto done;
    size_t P = r.model.pt.total;
    r.batch_n = (size_t)Bm * T;
    if ((st = mpt_arena_alloc(&r.arena, MPT_MEM_OPTIMIZER, P, sizeof(float), &r.m, err)) ||
        (st = mpt_arena_alloc(&r.arena, MPT_MEM_OPTIMIZER, P, sizeof(float), &r.v, err)) ||
        (st = mpt_arena_alloc(&r.arena, MPT_MEM_WORKSPACE, r.batch_n, sizeof(int32_t), &r.inputs,
                              err)) ||
        (st = mpt_arena_alloc(&r.arena, MPT_MEM_WORKSPACE, r.batch_n, sizeof(int32_t), &r.targets,
                              err)))
        goto done;

    long start = 0;
    if (ckpt[0]) {
        mpt_train_state ts;
        int has_opt = 0;
        st = mpt_checkpoint_load(ckpt, &r.model.pt, r.model.params, o->resume ? r.m : NULL,
                                 o->resume ? r.v : NULL, &has_opt, o->resume ? &ts : NULL, err);
        if (st) goto done;
        if (o->resume) start = ts.step;
    } else {
        mpt_gpt_init_weights(&r.model, o->seed);
    }
    if (start > o->steps) {
        st = mpt_fail(err, MPT_ERR_INPUT,
                      "the checkpoint is at step %ld, past --steps %ld: ask for more steps",
                      start, o->steps);
        goto done;
    }

    res->cfg = cfg;
    res->n_params = mpt_config_param_count(&cfg);
    res->peak_flops = mpt_measure_peak_flops(o->threads > 0 ? o->threads : 1, 0.05);
    if ((st = mpt_jsonlog_open(&r.log, o->log_path, err))) goto done;
    if ((st = mpt_jsonlog_write(&r.log, start_line_(o, &cfg, T, start, &res->plan,
                                                     res->peak_flops), err)))
        goto done;
    if (on_start) on_start(res, ctx);

    mpt_adamw opt = o->opt;
    opt.total_steps = o->steps;
    float dloss = 1.0f / ((float)B * (float)T);
    double flops_step = flops_per_token_(&cfg, T) * (double)B * T, t_all = 0.0;
    res->first_step = start + 1;
    for (long step = start; step < o->steps; step++) {
        double t0 = now_(), loss_sum = 0.0;
        memset(r.model.grads, 0, P * sizeof(float));
        for (int mb = 0; mb < M; mb++) {
            mpt_data_batch(&r.data, step, B, mb * Bm, Bm, T, r.inputs, r.targets);
            if (o->dump_path && step == 0 && mb == 0) {
                size_t nl = r.batch_n * (size_t)cfg.vocab;
                logits_copy = malloc(nl * sizeof *logits_copy);
                if (!logits_copy) {
                    st = mpt_fail(err, MPT_ERR_RUN, "out of memory for the dump");
                    goto done;
                }
                mpt_gpt_forward(&r.model, r.inputs, NULL, Bm, T, 0.0f);
                for (size_t i = 0; i < r.batch_n; i++)
                    memcpy(logits_copy + i * cfg.vocab,
                           r.model.act[MPT_ACT_LOGITS] + i * cfg.padded_vocab,
                           (size_t)cfg.vocab * sizeof(float));
            }
            loss_sum += mpt_gpt_forward(&r.model, r.inputs, r.targets, Bm, T, dloss);
            mpt_gpt_backward(&r.model, r.inputs, Bm, T);
        }
        double loss = loss_sum / ((double)B * T);
        if (!isfinite(loss)) {
            st = mpt_fail(err, MPT_ERR_RUN,
                          "the loss became non-finite at step %ld: lower --lr or check the data; "
                          "the last checkpoint is intact",
                          step + 1);
            goto done;
        }
        if (o->dump_path && step == 0 &&
            (st = dump_(o->dump_path, &r.model, logits_copy, Bm, T, err)))
            goto done;
        double norm = sqrt(mpt_sum_squares(r.model.grads, P));
        float clip = mpt_clip_factor(&opt, norm), lr = mpt_adamw_lr(&opt, step);
        for (size_t i = 0; i < r.model.pt.n; i++) {
            const mpt_tensor *t = &r.model.pt.t[i];
            mpt_adamw_update(&opt, r.model.params + t->offset, r.model.grads + t->offset,
                             r.m + t->offset, r.v + t->offset, t->numel, lr,
                             t->decay ? opt.weight_decay : 0.0f, clip, step + 1);
        }
        double dt = now_() - t0;
        t_all += dt;
        mpt_step_info info = {.step = step + 1, .steps = o->steps, .loss = loss, .lr = lr,
                              .grad_norm = norm, .tokens_per_s = (double)B * T / dt,
                              .step_ms = dt * 1e3,
                              .mfu = res->peak_flops > 0 ? flops_step / dt / res->peak_flops : 0,
                              .peak_mem_bytes = r.arena.peak_total};
        if (step == start) res->first_loss = loss;
        res->last_loss = loss;
        res->last_step = step + 1;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)info.step);
        cJSON_AddNumberToObject(j, "loss", info.loss);
        cJSON_AddNumberToObject(j, "lr", info.lr);
        cJSON_AddNumberToObject(j, "grad_norm", info.grad_norm);
        cJSON_AddNumberToObject(j, "tokens_per_s", info.tokens_per_s);
        cJSON_AddNumberToObject(j, "step_ms", info.step_ms);
        cJSON_AddNumberToObject(j, "mfu", info.mfu);
        cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)info.peak_mem_bytes);
        if ((st = mpt_jsonlog_write(&r.log, j, err))) goto done;
        if (on_step) on_step(&info, ctx);
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
    for (int k = 0; k < MPT_MEM_KINDS; k++) res->peak[k] = r.arena.peak[k];
    res->peak[5] = r.arena.peak_total;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "event", "end");
    cJSON_AddNumberToObject(j, "steps", (double)res->last_step);
    cJSON_AddNumberToObject(j, "final_loss", res->last_loss);
    cJSON_AddNumberToObject(j, "seconds", t_all);
    cJSON_AddNumberToObject(j, "tokens_per_s", res->tokens_per_s);
    cJSON_AddNumberToObject(j, "mfu", res->mfu);
    cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)r.arena.peak_total);
    cJSON_AddNumberToObject(j, "planned_mem_bytes", (double)res->plan.total);
    if (res->saved_dir[0]) cJSON_AddStringToObject(j, "checkpoint", res->saved_dir);
    st = mpt_jsonlog_write(&r.log, j, err);
done:
    free(logits_copy);
    run_free_(&r);
    return st;
}
