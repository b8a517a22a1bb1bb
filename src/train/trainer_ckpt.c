/* trainer_ckpt.c — a training run's state on disk: loading a checkpoint into this rank's part
 * of the model and optimizer, saving one (whole tensors, assembled over ZeRO slices, tensor-
 * parallel shards and pipeline stages), and the step-1 gradient dump of the reference tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/tp.h"
#include "train/checkpoint.h"
#include "train/safetensors.h"
#include "train/trainer_internal.h"

mpt_status mpt_run_load(mpt_run *r, long *start, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    mpt_status st;
    *start = 0;
    if (!r->ckpt[0]) {
        mpt_dp_init_values(&r->dp, o->seed);
        return MPT_OK;
    }
    /* checkpoints hold whole tensors: load them (transient buffers), keep this rank's part */
    size_t P = r->model.pt.total, PF = r->full.total;
    float *whole = malloc(3 * PF * sizeof(float)), *buf = malloc(3 * P * sizeof(float));
    if (!whole || !buf) {
        free(whole);
        free(buf);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", r->ckpt);
    }
    mpt_train_state ts;
    int has_opt = 0;
    st = mpt_checkpoint_load(r->ckpt, &r->full, whole, o->resume ? whole + PF : NULL,
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

/* Whole tensors of this rank's stage (ZeRO slices gathered over dp, tensor-parallel shards over
 * tp) summed over the pipeline stages, so every rank ends with the whole model in `whole`
 * (n buffers of full.total, from n buffers laid out like the model's table). */
static mpt_status assemble_(mpt_run *r, float *local, float *whole, int n, mpt_error *err) {
    size_t P = r->model.pt.total, PF = r->full.total;
    mpt_status st = MPT_OK;
    for (int k = 0; k < n && !st; k++)
        st = mpt_tp_assemble(&r->groups.dim[MPT_DIM_TP], &r->model.pt, local + k * P, &r->full,
                             whole + k * PF, err);
    if (!st && r->o->pp > 1)
        st = mpt_allreduce_sum(&r->groups.dim[MPT_DIM_PP], whole, (size_t)n * PF, err);
    return st;
}

mpt_status mpt_run_save(mpt_run *r, long step, mpt_train_result *res, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    size_t P = r->model.pt.total, PF = r->full.total;
    float *buf = malloc(3 * P * sizeof(float)), *whole = malloc(3 * PF * sizeof(float));
    mpt_status st = buf && whole ? MPT_OK
                                 : mpt_fail(err, MPT_ERR_RUN, "out of memory for the checkpoint");
    st = mpt_comm_agree(r->world, st, err);
    if (!st) st = mpt_dp_gather(&r->dp, buf, buf + P, buf + 2 * P, err);
    if (!st) st = assemble_(r, buf, whole, 3, err);
    if (!st && r->rank0) {
        mpt_train_state ts;
        memset(&ts, 0, sizeof ts);
        ts.step = step;
        ts.seed = o->seed;
        snprintf(ts.options_json, sizeof ts.options_json,
                 "{\"batch\":%d,\"microbatches\":%d,\"steps\":%ld,\"lr\":%g,\"warmup\":%d,"
                 "\"dp\":%d,\"tp\":%d,\"pp\":%d,\"zero\":%d}",
                 o->batch, o->microbatches, o->steps, (double)o->opt.lr, o->opt.warmup, o->dp,
                 o->tp, o->pp, o->zero);
        st = mpt_checkpoint_save(o->save_dir, o->keep, &r->cfg, &r->full, whole, whole + PF,
                                 whole + 2 * PF, &ts, res->saved_dir, sizeof res->saved_dir, err);
    }
    free(buf);
    free(whole);
    st = mpt_comm_agree(r->world, st, err);
    if (!st) st = mpt_bcast(r->world, res->saved_dir, sizeof res->saved_dir, 0, err);
    return st;
}

mpt_status mpt_run_dump(mpt_run *r, const float *logits_copy, mpt_error *err) {
    const mpt_param_table *full = &r->full;
    float *grads = malloc(full->total * sizeof *grads);
    mpt_st_entry *e = calloc(full->n + 1, sizeof *e);
    mpt_status st = grads && e ? MPT_OK : mpt_fail(err, MPT_ERR_RUN, "out of memory for the dump");
    if (!st) st = assemble_(r, r->model.grads, grads, 1, err);
    if (!st && r->rank0) {
        size_t n = full->n;
        for (size_t i = 0; i < n; i++) {
            const mpt_tensor *t = &full->t[i];
            e[i] = (mpt_st_entry){t->name, t->ndim, {t->shape[0], t->shape[1]},
                                  grads + t->offset};
        }
        if (logits_copy)
            e[n++] = (mpt_st_entry){"logits", 3, {(size_t)r->Bm, (size_t)r->T,
                                                  (size_t)r->cfg.vocab}, logits_copy};
        st = mpt_safetensors_write(r->o->dump_path, e, n, NULL, 0, 0, err);
    }
    free(grads);
    free(e);
    return mpt_comm_agree(r->world, st, err);
}
