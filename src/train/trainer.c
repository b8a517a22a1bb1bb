/* trainer.c — the training loop: steps, the log and the progress callbacks (see trainer.h);
 * set-up and checkpoints are in trainer_setup.c. */
#include "train/trainer.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/gemm_bf16.h"
#include "core/peak.h"
#include "parallel/pp_eval.h"
#include "train/data.h"
#include "train/trainer_internal.h"

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
    o->eval_batches = 4;
    o->dp = 1;
    o->tp = 1;
    o->pp = 1;
    o->cp = 1;
    o->ep = 1;
    o->schedule = "1f1b";
    o->virtual_stages = 1;
    o->partition = "uniform";
    o->bucket_mb = 0.0; /* by node: parallel/dp_node.c */
}

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process (all its threads). */
static double cpu_now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The ranks' CPU seconds over dt x the cores they could use (the step line's cpu_share). */
static double cpu_share_(double cpu, double dt, int ranks, int threads) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double want = (double)ranks * (threads > 0 ? threads : 1);
    if (cores > 0 && want > (double)cores) want = (double)cores;
    return dt > 0 ? cpu / (dt * want) : 0.0;
}

/* Model FLOPs of one token's forward+backward (PaLM appendix B): 6 per weight of every matmul
 * (the embedding lookup wpe excluded, the tied head counted) + 12*L*T*D for attention. */
static double flops_per_token_(const mpt_config *c, int T) {
    double D = c->d_model, F = c->ffn, L = c->n_layer, V = c->vocab;
    double matmul = L * (D * 3 * D + D * D + 2 * D * F) + V * D;
    for (int i = 0; i < c->n_layer; i++) /* an MoE block: K active experts and the router */
        if (mpt_config_is_moe_layer(c, i))
            matmul += (c->top_k - 1) * 2 * D * F + D * c->experts;
    return 6.0 * matmul + 12.0 * L * T * D;
}

static cJSON *start_line_(const mpt_run *r, long start, const mpt_mem_plan *plan, double peak) {
    const mpt_train_opts *o = r->o;
    const mpt_config *c = &r->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "event", "start");
    cJSON_AddStringToObject(j, "model", o->model_name ? o->model_name : "custom");
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "d_model", c->d_model);
    cJSON_AddNumberToObject(j, "ffn", c->ffn);
    cJSON_AddNumberToObject(j, "vocab", c->vocab);
    cJSON_AddNumberToObject(j, "padded_vocab", c->padded_vocab);
    cJSON_AddNumberToObject(j, "seq_len", r->T);
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
    cJSON_AddStringToObject(j, "on_nan", o->on_nan_skip ? "skip" : "stop");
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddStringToObject(j, "data", o->data_path ? o->data_path : o->data_paths[0]);
    cJSON_AddNumberToObject(j, "data_files", r->data.nf);
    cJSON_AddNumberToObject(j, "train_tokens", (double)r->train_view.n);
    if (o->val_path) cJSON_AddStringToObject(j, "val_data", o->val_path);
    cJSON_AddNumberToObject(j, "val_fraction", o->val_fraction);
    cJSON_AddNumberToObject(j, "val_tokens", (double)r->val_view.n);
    cJSON_AddNumberToObject(j, "eval_every", (double)o->eval_every);
    cJSON_AddNumberToObject(j, "eval_batches", o->eval_batches);
    if (c->experts > 0) { /* MoE (model/moe.h); the dispatch bound the plan sized for */
        cJSON *moe = cJSON_AddObjectToObject(j, "moe");
        cJSON_AddNumberToObject(moe, "experts", c->experts);
        cJSON_AddNumberToObject(moe, "top_k", c->top_k);
        cJSON_AddNumberToObject(moe, "moe_every", c->moe_every);
        cJSON_AddNumberToObject(moe, "capacity_factor", c->capacity_factor);
        cJSON_AddNumberToObject(moe, "aux_loss_coef", c->aux_loss_coef);
        cJSON_AddNumberToObject(moe, "z_loss_coef", c->z_loss_coef);
        cJSON_AddNumberToObject(moe, "dispatch_rows_bound",
                                (double)mpt_moe_max_rows(c, r->batch_n,
                                                         r->place.layout.size[MPT_DIM_EP]));
    }
    cJSON *layout = cJSON_AddObjectToObject(j, "layout");
    cJSON_AddNumberToObject(layout, "dp", o->dp);
    cJSON_AddNumberToObject(layout, "tp", o->tp);
    cJSON_AddBoolToObject(layout, "sp", o->sp);
    cJSON_AddNumberToObject(layout, "pp", o->pp);
    cJSON_AddNumberToObject(layout, "cp", o->cp);
    cJSON_AddNumberToObject(layout, "ep", r->place.layout.size[MPT_DIM_EP]);
    cJSON_AddNumberToObject(layout, "zero", o->zero);
    if (o->zero == 3) cJSON_AddStringToObject(layout, "zero3_gather", r->z3_whole ? "step" : "layer");
    const char *rc[] = {"none", "selective", "full"};
    cJSON_AddStringToObject(layout, "recompute", rc[o->recompute]);
    cJSON_AddNumberToObject(layout, "world", r->world->size);
    if (r->bucket_mb > 0) cJSON_AddNumberToObject(layout, "bucket_mb", r->bucket_mb);
    else cJSON_AddStringToObject(layout, "bucket_mb", "whole");
    if (o->pp > 1) {
        cJSON_AddStringToObject(layout, "schedule", mpt_pp_kind_name(r->kind));
        if (r->v > 1) cJSON_AddNumberToObject(layout, "virtual_stages", r->v);
        cJSON *stages = cJSON_AddArrayToObject(layout, "stage_layers");
        for (int s = 0; s < o->pp; s++)
            cJSON_AddItemToArray(stages, cJSON_CreateNumber(r->stage_count[s]));
    }
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddStringToObject(j, "dtype", o->dtype == MPT_BF16 ? "bf16" : "fp32");
    if (o->dtype == MPT_BF16) cJSON_AddStringToObject(j, "bf16_gemm", mpt_gemm_bf16_describe());
    cJSON_AddStringToObject(j, "grad_reduce_dtype", o->grad_reduce_dtype == MPT_BF16 ? "bf16" : "fp32");
    cJSON_AddNumberToObject(j, "peak_flops", peak);
    cJSON *mem = cJSON_AddObjectToObject(j, "memory_plan_bytes");
    for (int k = 0; k < MPT_MEM_KINDS; k++)
        cJSON_AddNumberToObject(mem, mpt_mem_kind_name((mpt_mem_kind)k), (double)plan->bytes[k]);
    cJSON_AddNumberToObject(mem, "total", (double)plan->total);
    cJSON_AddNumberToObject(mem, "param_elements", (double)plan->param_elements);
    cJSON_AddNumberToObject(mem, "zero_pool_elements", (double)plan->pool_elements);
    return j;
}

/* MoE fields of a step line: aux_loss (load balancing + z-loss, as added to the training loss),
 * z_loss, expert_tokens (assignments per expert over every MoE block and micro-batch of the
 * step, before capacity), moe_imbalance (max / mean of those), moe_dropped (assignments dropped
 * at capacity) and moe_dropped_frac. */
static void moe_line_(cJSON *j, const mpt_moe_stats *s, int E) {
    cJSON_AddNumberToObject(j, "aux_loss", s->aux_loss + s->z_loss);
    cJSON_AddNumberToObject(j, "z_loss", s->z_loss);
    cJSON *t = cJSON_AddArrayToObject(j, "expert_tokens");
    double mx = 0.0, sum = 0.0;
    for (int e = 0; e < E; e++) {
        if (t) cJSON_AddItemToArray(t, cJSON_CreateNumber(s->tokens[e]));
        mx = s->tokens[e] > mx ? s->tokens[e] : mx;
        sum += s->tokens[e];
    }
    cJSON_AddNumberToObject(j, "moe_imbalance", sum > 0 ? mx / (sum / E) : 0.0);
    cJSON_AddNumberToObject(j, "moe_dropped", s->dropped);
    cJSON_AddNumberToObject(j, "moe_dropped_frac",
                            s->assignments > 0 ? s->dropped / s->assignments : 0.0);
}

static cJSON *step_line_(const mpt_step_info *info) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)info->step);
    cJSON_AddNumberToObject(j, "loss", info->loss);
    cJSON_AddNumberToObject(j, "lr", info->lr);
    cJSON_AddNumberToObject(j, "grad_norm", info->grad_norm);
    cJSON_AddNumberToObject(j, "tokens_per_s", info->tokens_per_s);
    cJSON_AddNumberToObject(j, "step_ms", info->step_ms);
    cJSON_AddNumberToObject(j, "cpu_share", info->cpu_share);
    cJSON_AddNumberToObject(j, "mfu", info->mfu);
    cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)info->peak_mem_bytes);
    if (info->skipped)
        cJSON_AddStringToObject(j, "skipped_non_finite", info->skipped == 1 ? "loss" : "grad_norm");
    if (info->bubble >= 0) cJSON_AddNumberToObject(j, "bubble", info->bubble);
    if (info->bubble_sim >= 0) cJSON_AddNumberToObject(j, "bubble_sim", info->bubble_sim);
    if (info->bubble_sim_mean >= 0)
        cJSON_AddNumberToObject(j, "bubble_sim_mean", info->bubble_sim_mean);
    if (info->val_loss >= 0) {
        cJSON_AddNumberToObject(j, "val_loss", info->val_loss);
        cJSON_AddNumberToObject(j, "val_ppl", exp(info->val_loss));
    }
    if (info->moe) moe_line_(j, info->moe, info->experts);
    if (info->probe_pair > 0) {
        cJSON_AddNumberToObject(j, "probe_solo", info->probe_solo);
        cJSON_AddNumberToObject(j, "probe_pair", info->probe_pair);
    }
    return j;
}

/* The pipeline executor's data: this replica's micro-batch mb of the running step. */
static void batch_(void *ctx, int mb, int32_t *inputs, int32_t *targets) {
    mpt_run *r = ctx;
    const mpt_train_opts *o = r->o;
    int first = r->place.coords.c[MPT_DIM_DP] * (o->batch / o->dp);
    /* cp > 1: this rank's chunks of the replica's sequences */
    mpt_data_batch_cp(&r->train_view, r->step, o->batch, first + mb * r->Bm, r->Bm, r->T, o->cp,
                      r->place.coords.c[MPT_DIM_CP], inputs, targets);
}

void mpt_run_batch(void *ctx, int mb, int32_t *inputs, int32_t *targets) {
    batch_(ctx, mb, inputs, targets);
}

/* Evaluation's data: micro-batch k of this replica is micro-batch k % M of evaluation batch
 * k / M, in the same order rule over the validation set (batch k / M in place of the step). */
static void val_batch_(void *ctx, int k, int32_t *inputs, int32_t *targets) {
    mpt_run *r = ctx;
    const mpt_train_opts *o = r->o;
    int M = o->microbatches;
    int first = r->place.coords.c[MPT_DIM_DP] * (o->batch / o->dp) + (k % M) * r->Bm;
    mpt_data_batch_cp(&r->val_view, k / M, o->batch, first, r->Bm, r->T, o->cp,
                      r->place.coords.c[MPT_DIM_CP], inputs, targets);
}

/* The mean token loss over the K evaluation batches (all ranks call, between steps): forward
 * only, through the same stages, shards and hooks as training. Changes no training state: the
 * gradients are zeroed by the next step anyway, and ZeRO-3 working copies are settled and
 * forgotten before and after. */
static mpt_status eval_(mpt_run *r, double *val_loss, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    double sum = 0.0;
    mpt_status st = mpt_dp_settle(&r->dp, err);
    if (!st) st = mpt_pp_eval(&r->pp, val_batch_, r, o->eval_batches * o->microbatches, r->inputs,
                              r->targets, r->Bm, r->Tl, &sum, err);
    if (!st) st = mpt_dp_settle(&r->dp, err);
    mpt_comm *ppc = &r->groups.dim[MPT_DIM_PP], *dpc = &r->groups.dim[MPT_DIM_DP];
    mpt_comm *cpc = &r->groups.dim[MPT_DIM_CP];
    if (!st && ppc->size > 1) st = mpt_allreduce_sum_f64(ppc, &sum, 1, err);
    if (!st && dpc->size > 1) st = mpt_allreduce_sum_f64(dpc, &sum, 1, err);
    if (!st && cpc->size > 1) st = mpt_allreduce_sum_f64(cpc, &sum, 1, err);
    if (st) return st;
    *val_loss = sum / ((double)o->eval_batches * o->batch * r->T);
    return MPT_OK;
}

/* The pipeline executor's compute events, for the trace: "F3", "B3", "W3"; with several
 * chunks per rank (interleaved, zb-v) the chunk too: "F3.1". */
static void pp_event_(void *ctx, const mpt_pp_action *a, double t0, double t1) {
    mpt_run *r = ctx;
    char name[24];
    mpt_pp_action_str(a, r->pp.v, name, sizeof name);
    mpt_trace_add(&r->trace, MPT_TRACE_COMPUTE, name, NULL, -1, t0, t1);
}

/* --dump-step1 on one rank: before step 1's first forward, the logits of micro-batch 0 (an
 * inference forward into the same activation set), kept in r->logits_copy for mpt_run_dump. */
static mpt_status dump_logits_(void *ctx, int mb, mpt_gpt *model, const int32_t *inputs,
                               mpt_error *err) {
    mpt_run *r = ctx;
    const mpt_config *cfg = &r->cfg;
    if (!r->o->dump_path || r->step != 0 || mb != 0 || r->world->size != 1 || r->logits_copy)
        return MPT_OK;
    size_t nl = r->batch_n * (size_t)cfg->vocab;
    r->logits_copy = malloc(nl * sizeof *r->logits_copy);
    if (!r->logits_copy) return mpt_fail(err, MPT_ERR_RUN, "out of memory for the dump");
    mpt_status st = mpt_gpt_forward(model, inputs, NULL, r->Bm, r->T, 0.0f, NULL, err);
    if (st) return st;
    const float *logits = model->cur->a[MPT_ACT_LOGITS]; /* (Bm*T, padded_vocab) */
    for (size_t i = 0; i < r->batch_n; i++)
        memcpy(r->logits_copy + i * cfg->vocab, logits + i * cfg->padded_vocab,
               (size_t)cfg->vocab * sizeof(float));
    return MPT_OK;
}

/* The schedule replayed on the step's measured costs (pipeline ranks, every one calls): the
 * bubble the schedule itself has with this run's F, B and transfer times, bubble[0] on every
 * action's own duration, bubble[1] on the stages' means (parallel/pp_replay.h). */
static mpt_status bubble_sim_(mpt_run *r, double busy[2], double bubble[2], mpt_error *err) {
    double costs[64 * MPT_PP_COSTS];
    mpt_pp_timeline t;
    memset(&t, 0, sizeof t);
    /* (busy: this rank's in, the pipeline's busy sum and longest wall out) */
    mpt_status st = mpt_pp_measure(&r->pp, costs, &busy[0], &busy[1], err);
    if (!st && r->stash) /* 2bw: this step's window of its segment */
        return mpt_run_2bw_sim(r, (int)(r->step - r->bw.first), r->pp.msg, costs, bubble, err);
    if (!st) st = mpt_pp_simulate_replay(r->kind, r->pp.p, r->pp.m, r->v, costs, &t, err);
    if (!st) bubble[1] = t.bubble;
    if (!st) st = mpt_pp_replay_bubble(r->kind, r->pp.p, r->pp.m, r->v, r->pp.msg, &bubble[0], err);
    mpt_pp_timeline_free(&t);
    return st;
}

/* One optimizer step: this replica's micro-batches through the pipeline executor (one stage
 * when pp == 1), the reductions, clipping and AdamW. *loss: the global mean loss; *norm: the
 * global gradient norm; busy: this rank's compute seconds and the pipelined part's wall time. */
static mpt_status step_(mpt_run *r, const mpt_adamw *opt, long step, double *loss, double *norm,
                        float *lr, double busy[2], int *skipped, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    if (r->grads2) return mpt_run_2bw_step(r, opt, step, loss, norm, lr, busy, skipped, err);
    int B = o->batch, T = r->T;
    float dloss = 1.0f / ((float)B * (float)T);
    /* testing (--debug-nan): the last world rank (on the last stage) poisons this step */
    int poison = o->nan_step == step + 1 && r->world->rank == r->world->size - 1;
    if (poison && o->nan_grad) dloss = NAN;
    double loss_sum = 0.0;
    mpt_status st;
    r->step = step;
    mpt_comm_set_step(step + 1);
    if (o->stall_step == step + 1 && o->stall_rank == r->world->rank) {
        struct timespec ts = {(time_t)o->stall_seconds, 0};
        nanosleep(&ts, NULL);
    }
    mpt_dp_begin_step(&r->dp);
    memset(&r->model.moe, 0, sizeof r->model.moe);
    if (r->ep.comm) mpt_ep_grads_zero(&r->ep);
    if (r->stash) { /* 2bw: this step's window of a segment without a flush (pp_2bw.h) */
        if (mpt_pp_2bw_ended(&r->bw, step) &&
            (st = mpt_pp_2bw_begin(&r->bw, &r->pp, step, mpt_run_2bw_segment(r, step),
                                   mpt_run_2bw_live(r), r->stash, err)))
            return st;
        if (poison && o->nan_grad) r->bw.nan_step = step; /* (its forwards only) */
        st = mpt_pp_2bw_run(&r->bw, step, batch_, r, &r->step, r->inputs, r->targets, r->Bm,
                            r->Tl, poison ? 1.0f / ((float)B * (float)T) : dloss, &loss_sum, err);
        r->step = step;
    } else
        st = mpt_pp_step(&r->pp, batch_, r, r->inputs, r->targets, r->Bm, r->Tl, dloss,
                         &loss_sum, err);
    busy[0] = r->pp.busy;
    busy[1] = r->pp.wall;
    if (st || (st = mpt_dp_finish_grads(&r->dp, err))) return st;
    if (poison && !o->nan_grad) loss_sum = NAN;
    if (r->ep.comm && (st = mpt_ep_grads_finish(&r->ep, err))) return st; /* experts over edp */
    /* 2bw: W(step) moves to the stash (the next step's micro-batches run on it) and the update
     * makes W(step + 1) of it in params */
    if (r->stash) {
        memcpy(r->stash, mpt_run_2bw_live(r), mpt_run_2bw_version_n(r) * sizeof(float));
        r->bw.ver = step + 1;
    }
    /* the last stage has the loss; tp ranks hold the same one; replicas and cp ranks (their
     * tokens) add theirs */
    mpt_comm *ppc = &r->groups.dim[MPT_DIM_PP], *dpc = &r->groups.dim[MPT_DIM_DP];
    mpt_comm *cpc = &r->groups.dim[MPT_DIM_CP];
    if (ppc->size > 1 && (st = mpt_allreduce_sum_f64(ppc, &loss_sum, 1, err))) return st;
    if (dpc->size > 1 && (st = mpt_allreduce_sum_f64(dpc, &loss_sum, 1, err))) return st;
    if (cpc->size > 1 && (st = mpt_allreduce_sum_f64(cpc, &loss_sum, 1, err))) return st;
    if (r->cfg.experts > 0) { /* MoE statistics: every stage's blocks, every replica's tokens */
        r->moe = r->model.moe;
        size_t n = 4 + (size_t)r->cfg.experts; /* aux, z, dropped, assignments, tokens[E] */
        if (ppc->size > 1 && (st = mpt_allreduce_sum_f64(ppc, &r->moe.aux_loss, n, err))) return st;
        if (dpc->size > 1 && (st = mpt_allreduce_sum_f64(dpc, &r->moe.aux_loss, n, err))) return st;
        if (cpc->size > 1 && (st = mpt_allreduce_sum_f64(cpc, &r->moe.aux_loss, n, err))) return st;
        mpt_comm *tpc = &r->groups.dim[MPT_DIM_TP]; /* sp: each tp rank routed its own rows */
        if (o->sp && tpc->size > 1 && (st = mpt_allreduce_sum_f64(tpc, &r->moe.aux_loss, n, err)))
            return st;
    }
    *loss = loss_sum / ((double)B * T);
    if (o->dump_path && step == 0 && (st = mpt_run_dump(r, r->logits_copy, err))) return st;
    double t0 = mpt_comm_clock();
    if ((st = mpt_dp_grad_norm(&r->dp, norm, err))) return st;
    if (r->ep.comm && o->zero == 0 && /* ZeRO 1-3: the dp module's norm counts every expert */
        (st = mpt_ep_fix_norm(&r->ep, &r->groups.dim[MPT_DIM_TP], ppc, norm, err)))
        return st;
    *lr = mpt_adamw_lr(opt, step);
    /* the loss and the norm are sums over the ranks that hold parts of them; the verdict is
     * agreed over every rank anyway (one small all-reduce), so all take the same branch even
     * when only some of them saw the non-finite value (tp ranks do not sum the loss) */
    int32_t bad[2] = {!isfinite(*loss), !isfinite(*norm)};
    if ((st = mpt_allreduce_dt(r->world, bad, 2, MPT_I32, MPT_RED_MAX, err))) return st;
    if ((bad[0] || bad[1]) && !o->on_nan_skip)
        return mpt_fail(err, MPT_ERR_RUN,
                        "the %s became non-finite at step %ld: lower --lr or check the data "
                        "(--on-nan skip skips such steps); nothing of this step was saved and "
                        "the last checkpoint is intact",
                        bad[0] ? "loss" : "gradient norm", step + 1);
    *skipped = bad[0] ? 1 : bad[1] ? 2 : 0;
    if (*skipped) return MPT_OK; /* parameters and AdamW state stay as they were */
    st = mpt_dp_update(&r->dp, opt, *lr, mpt_clip_factor(opt, *norm), step + 1, err);
    mpt_trace_add(&r->trace, MPT_TRACE_COMPUTE, "optimizer", NULL, -1, t0, mpt_comm_clock());
    return st;
}

/* This process's resident high-water mark (VmHWM of /proc/self/status) in bytes; 0 where the
 * kernel does not report it. */
static double rss_peak_(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0.0;
    if (!f) return 0.0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return kib * 1024.0;
}

/* Figures per world rank in mpt_run.rank_mem: plan, arena peak, planned and measured
 * activations, resident high-water mark, the bf16 GEMMs' temporaries outside the plan. */
enum { RANK_FIGS_ = 6 };

static cJSON *end_line_(mpt_run *r, const mpt_train_result *res, const double peaks[6],
                        double t_all) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "event", "end");
    cJSON_AddNumberToObject(j, "steps", (double)res->last_step);
    cJSON_AddNumberToObject(j, "final_loss", res->last_loss);
    if (res->val_loss >= 0) {
        cJSON_AddNumberToObject(j, "val_loss", res->val_loss);
        cJSON_AddNumberToObject(j, "val_ppl", exp(res->val_loss));
        cJSON_AddNumberToObject(j, "val_step", (double)res->val_step);
    }
    cJSON_AddNumberToObject(j, "seconds", t_all);
    cJSON_AddNumberToObject(j, "tokens_per_s", res->tokens_per_s);
    cJSON_AddNumberToObject(j, "mfu", res->mfu);
    cJSON_AddNumberToObject(j, "peak_mem_bytes", (double)res->peak[5]);
    cJSON_AddNumberToObject(j, "planned_mem_bytes", r->plan_max);
    if (r->o->cp > 1) /* rank 0's time waiting on the ring after its local compute */
        cJSON_AddNumberToObject(j, "cp_ring_wait_seconds", r->cp.wait_seconds);
    cJSON *pk = cJSON_AddObjectToObject(j, "peak_mem_by_kind");
    for (int k = 0; k < MPT_MEM_KINDS; k++)
        cJSON_AddNumberToObject(pk, mpt_mem_kind_name((mpt_mem_kind)k), peaks[k]);
    if (res->saved_dir[0]) cJSON_AddStringToObject(j, "checkpoint", res->saved_dir);
    /* every rank's plan and measured arena peak (total and activations) beside its resident
     * high-water mark (CONTRACT §7) */
    cJSON *ranks = cJSON_AddArrayToObject(j, "ranks");
    for (int i = 0; r->rank_mem && i < r->world->size; i++) {
        const double *f = r->rank_mem + RANK_FIGS_ * i;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "planned_mem_bytes", f[0]);
        cJSON_AddNumberToObject(x, "peak_mem_bytes", f[1]);
        cJSON_AddNumberToObject(x, "planned_activation_bytes", f[2]);
        cJSON_AddNumberToObject(x, "peak_activation_bytes", f[3]);
        cJSON_AddNumberToObject(x, "rss_peak_bytes", f[4]);
        if (r->o->dtype == MPT_BF16) /* the process's count (core/gemm_bf16.h): 0 when the
                                      * plan sized every GEMM's scratch */
            cJSON_AddNumberToObject(x, "bf16_scratch_allocs", f[5]);
        cJSON_AddItemToArray(ranks, x);
    }
    /* communication of world rank 0 over the whole run, by group and operation */
    cJSON *comm = cJSON_AddObjectToObject(j, "comm");
    for (int d = 0; d < MPT_DIMS; d++) {
        const mpt_comm *c = &r->groups.dim[d];
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
    /* the exposed part: seconds blocked in waits, by group (comm.h wait_seconds) */
    cJSON *cw = cJSON_AddObjectToObject(j, "comm_wait_seconds");
    for (int d = 0; d < MPT_DIMS; d++) {
        const mpt_comm *c = &r->groups.dim[d];
        if (c->size > 1) cJSON_AddNumberToObject(cw, c->name, c->stats.wait_seconds);
    }
    return j;
}

mpt_status mpt_train(mpt_comm *world, const mpt_train_opts *o, mpt_start_fn on_start,
                     mpt_step_fn on_step, void *ctx, mpt_train_result *res, mpt_error *err) {
    mpt_run r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    r.world = world;
    r.o = o;
    r.rank0 = world->rank == 0;
    long start = 0;
    omp_set_num_threads(o->threads > 0 ? o->threads : 1);
    openblas_set_num_threads(o->threads > 0 ? o->threads : 1);
    mpt_status st = mpt_comm_agree(world, mpt_run_prepare(&r, res, err), err);
    if (!st) st = mpt_comm_agree(world, mpt_run_allocate(&r, &start, err), err);
    if (!st) st = mpt_trace_init(&r.trace, world, o->trace_path != NULL, err);
    if (st) goto done;
    mpt_trace_observe_comm(&r.trace);
    r.pp.on_event = pp_event_;
    r.pp.event_ctx = &r;
    r.pp.before_forward = dump_logits_;
    r.pp.forward_ctx = &r;

    res->cfg = r.cfg;
    res->n_params = mpt_config_param_count(&r.cfg);
    res->peak_flops = mpt_measure_peak_flops(o->threads > 0 ? o->threads : 1, 0.2);
    r.plan_max = (double)res->plan.total; /* the largest rank's plan */
    if ((st = mpt_allreduce_sum_f64(world, &res->peak_flops, 1, err)) ||
        (st = mpt_allreduce_max_f64(world, &r.plan_max, 1, err)))
        goto done;
    st = r.rank0 ? mpt_jsonlog_open(&r.log, o->log_path, err) : MPT_OK;
    if (!st)
        st = mpt_jsonlog_write(&r.log, r.rank0 ? start_line_(&r, start, &res->plan, res->peak_flops)
                                               : NULL,
                               err);
    if ((st = mpt_comm_agree(world, st, err))) goto done;
    if (on_start && r.rank0) on_start(res, ctx);

    mpt_adamw opt = o->opt;
    opt.total_steps = o->steps;
    int B = o->batch, T = r.T;
    double flops_step = flops_per_token_(&r.cfg, T) * (double)B * T, t_all = 0.0;
    res->first_step = start + 1;
    res->val_loss = -1.0;
    for (long step = start; step < o->steps; step++) {
        double t0 = now_(), loss = 0.0, norm = 0.0, busy[2] = {0.0, 0.0}, c0 = cpu_now_();
        float lr = 0.0f;
        int skipped = 0;
        if ((st = step_(&r, &opt, step, &loss, &norm, &lr, busy, &skipped, err))) goto done;
        double dt = now_() - t0, peak_mem = (double)r.arena.peak_total, cpu = cpu_now_() - c0;
        double bubble_sim[2] = {-1.0, -1.0}; /* per action, per stage mean */
        int async = mpt_run_stats_async(&r, step); /* 2bw: window k-1's figures, no barrier */
        if (async &&
            (st = mpt_run_stats_swap(&r, step, &dt, &peak_mem, &cpu, busy, bubble_sim, err)))
            goto done;
        if (!async && ((st = mpt_allreduce_max_f64(world, &peak_mem, 1, err)) ||
                       (st = mpt_allreduce_sum_f64(world, &cpu, 1, err)) ||
                       (st = mpt_run_stats_finish(&r, &cpu, err))))
            goto done;
        /* the pipeline's measured bubble: the idle share of p ranks over the pipelined part of
         * the step, which lasts as long as its slowest rank's (the theory's p x makespan); the
         * busy sum and the longest wall come with the replay's costs, in one sum */
        if (!async && o->pp > 1 &&
            (st = mpt_comm_agree(world, bubble_sim_(&r, busy, bubble_sim, err), err)))
            goto done;
        if (!async) {
            r.stats.last_peak = peak_mem;
            r.stats.last_cpu = cpu;
            /* 2bw: a window, two steps */
            mpt_run_2bw_attribute(&r, step, &dt, &cpu, busy, bubble_sim);
        }
        t_all += dt;
        mpt_step_info info = {.step = step + 1, .steps = o->steps, .loss = loss, .lr = lr,
                              .grad_norm = norm, .tokens_per_s = (double)B * T / dt,
                              .step_ms = dt * 1e3,
                              .mfu = res->peak_flops > 0 ? flops_step / dt / res->peak_flops : 0,
                              .peak_mem_bytes = (size_t)peak_mem,
                              .bubble = o->pp > 1 && busy[1] > 0 ? 1.0 - busy[0] / (o->pp * busy[1]) : -1.0,
                              .bubble_sim = bubble_sim[0], .bubble_sim_mean = bubble_sim[1],
                              .val_loss = -1.0,
                              .cpu_share = cpu_share_(cpu, dt, world->size, o->threads),
                              .skipped = skipped,
                              .moe = r.cfg.experts > 0 ? &r.moe : NULL,
                              .experts = r.cfg.experts};
        /* --debug-probe-seconds: the machine's state between two steps, after this step's
         * clock stopped (not after the last: the bench probes right after the run) */
        if (o->probe_seconds > 0 && step + 1 < o->steps &&
            (st = mpt_run_probe(&r, o->probe_seconds, o->threads, &info.probe_solo,
                                &info.probe_pair, err)))
            goto done;
        int last = step + 1 == o->steps;
        if (o->eval_every > 0 && (last || (step + 1) % o->eval_every == 0)) {
            if ((st = mpt_comm_agree(world, eval_(&r, &info.val_loss, err), err))) goto done;
            res->val_loss = info.val_loss;
            res->val_step = step + 1;
        }
        if (step == start) res->first_loss = loss;
        res->last_loss = loss;
        res->last_step = step + 1;
        st = mpt_jsonlog_write(&r.log, r.rank0 ? step_line_(&info) : NULL, err);
        if ((st = mpt_run_stats_log(&r, step, st, err))) goto done;
        if (on_step && r.rank0) on_step(&info, ctx);
        if (o->save_dir && (last || (o->save_every > 0 && (step + 1) % o->save_every == 0)) &&
            (st = mpt_run_save(&r, step + 1, res, err)))
            goto done;
    }
    if (o->save_dir && start == o->steps && (st = mpt_run_save(&r, start, res, err))) goto done;
    long ran = res->last_step >= res->first_step ? res->last_step - res->first_step + 1 : 0;
    res->seconds = t_all;
    res->tokens_per_s = t_all > 0 ? (double)ran * B * T / t_all : 0;
    res->mfu = t_all > 0 && res->peak_flops > 0 ? ran * flops_step / t_all / res->peak_flops : 0;
    double peaks[6], mine[RANK_FIGS_] = {(double)res->plan.total, (double)r.arena.peak_total,
                                         (double)res->plan.bytes[MPT_MEM_ACTIVATIONS],
                                         (double)r.arena.peak[MPT_MEM_ACTIVATIONS], rss_peak_(),
                                         (double)mpt_gemm_bf16_scratch_allocs()};
    for (int k = 0; k < MPT_MEM_KINDS; k++) peaks[k] = (double)r.arena.peak[k];
    peaks[5] = (double)r.arena.peak_total;
    r.rank_mem = calloc(RANK_FIGS_ * (size_t)world->size, sizeof(double));
    if (!r.rank_mem) st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
    if ((st = mpt_comm_agree(world, st, err)) ||
        (st = mpt_allreduce_max_f64(world, peaks, 6, err)))
        goto done;
    memcpy(r.rank_mem + RANK_FIGS_ * world->rank, mine, sizeof mine);
    if ((st = mpt_allreduce_sum_f64(world, r.rank_mem, RANK_FIGS_ * (size_t)world->size, err)))
        goto done;
    for (int k = 0; k < 6; k++) res->peak[k] = (size_t)peaks[k];
    if (r.rank0) st = mpt_jsonlog_write(&r.log, end_line_(&r, res, peaks, t_all), err);
    st = mpt_comm_agree(world, st, err);
    res->plan_max = (size_t)r.plan_max;
    mpt_trace_observe_comm(NULL);
    if (!st && o->trace_path) st = mpt_trace_write(&r.trace, world, o->trace_path, err);
done:
    free(r.logits_copy);
    free(r.rank_mem);
    mpt_run_free(&r);
    return st;
}
