/* cmd_convert.c — `mptrain convert`: a sharded checkpoint (train/ckpt_shard.h) into one
 * directory in the single format (config.json + model.safetensors, which Hugging Face
 * transformers loads, + optimizer.safetensors and trainer_state.json when the input has them),
 * and back: a single-format or Hugging Face GPT-2 directory into a sharded one (one shard file
 * holding every tensor whole). Runs on one process, without MPI; streams every tensor through a
 * buffer of at most CHUNK_ floats, so converting never holds the model. The output is a
 * checkpoint root written like a training save (OUT/step_NNNNNN, OUT/latest, crash-safe), so
 * `--resume OUT` and `from_pretrained("OUT/latest")` both take it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "model/params.h"
#include "train/checkpoint.h"
#include "train/ckpt_shard.h"

#define CHUNK_ ((size_t)1 << 20)

typedef struct conv_ {
    mpt_config cfg;
    mpt_param_table full;
    mpt_ckpt_reader rd;
    mpt_train_state ts;
    int kinds;               /* 1 weights only, 3 with the AdamW moments */
    float *buf;              /* CHUNK_ floats */
} conv_;

/* Single format (and Hugging Face): the checkpoint writer takes every kind in file order. */
static mpt_status to_single_(conv_ *c, const char *out, mpt_error *err) {
    mpt_ckpt_writer w;
    mpt_status st = mpt_checkpoint_begin(&w, out, 0, c->ts.step, &c->cfg, &c->full,
                                         c->kinds == 3, err);
    for (int k = 0; !st && k < c->kinds; k++)
        for (size_t i = 0; !st && i < c->full.n; i++) {
            size_t n = mpt_tensor_ckpt_numel(&c->full.t[i]);
            for (size_t a = 0; !st && a < n; a += CHUNK_) {
                size_t m = n - a < CHUNK_ ? n - a : CHUNK_;
                st = mpt_checkpoint_read(&c->rd, k, i, a, m, c->buf, err);
                if (!st) st = mpt_checkpoint_put(&w, c->buf, m, err);
            }
        }
    if (st) {
        mpt_checkpoint_abort(&w);
        return st;
    }
    return mpt_checkpoint_commit(&w, &c->ts, NULL, 0, err);
}

/* Sharded: one file, every tensor of every kind one whole box. */
static mpt_status to_sharded_(conv_ *c, const char *out, mpt_error *err) {
    char tmp[PATH_MAX], path[PATH_MAX + 32], name[32];
    size_t nb = (size_t)c->kinds * c->full.n;
    mpt_shard_box *box = calloc(nb + 1, sizeof *box);
    if (!box) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    mpt_status st = mpt_checkpoint_begin_dir(out, c->ts.step, &c->cfg, tmp, sizeof tmp, err);
    if (st) {
        free(box);
        return st;
    }
    mpt_shard_file_name(0, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "wb");
    if (!f) st = mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
    int64_t pos = 0;
    for (int k = 0; !st && k < c->kinds; k++)
        for (size_t i = 0; !st && i < c->full.n; i++) {
            const mpt_tensor *t = &c->full.t[i];
            size_t n = mpt_tensor_ckpt_numel(t);
            box[(size_t)k * c->full.n + i] = (mpt_shard_box){
                .kind = k, .tensor = (int64_t)i, .file = 0, .row0 = 0,
                .nrows = t->ndim == 2 ? (int64_t)t->shape[0] : 1, .col0 = 0,
                .ncols = t->ndim == 2 ? (int64_t)t->shape[1] : (int64_t)n, .byte = pos};
            for (size_t a = 0; !st && a < n; a += CHUNK_) {
                size_t m = n - a < CHUNK_ ? n - a : CHUNK_;
                st = mpt_checkpoint_read(&c->rd, k, i, a, m, c->buf, err);
                if (!st && fwrite(c->buf, sizeof *c->buf, m, f) != m)
                    st = mpt_fail(err, MPT_ERR_RUN, "cannot write %s: %s", path, strerror(errno));
                pos += (int64_t)(m * sizeof *c->buf);
            }
        }
    if (f && !st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = mpt_fail(err, MPT_ERR_RUN, "cannot write %s: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !st)
        st = mpt_fail(err, MPT_ERR_RUN, "cannot write %s: %s", path, strerror(errno));
    if (!st) st = mpt_shard_write_index(tmp, &c->full, 1, c->kinds == 3, box, nb, err);
    free(box);
    if (st) {
        mpt_checkpoint_remove_dir(tmp);
        return st;
    }
    const char *files[2] = {MPT_SHARD_INDEX_FILE, name};
    return mpt_checkpoint_publish(out, 0, c->ts.step, tmp, files, 2, &c->ts, NULL, 0, err);
}

int mpt_cli_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *to = NULL;
    int help = 0;
    mpt_error err = {0};
    const mpt_arg args[] = {
        {"in", MPT_ARG_STRING, &in, "checkpoint to convert: a step directory, a --save root (its latest) or a Hugging Face GPT-2 directory", NULL, MPT_NO_RANGE},
        {"out", MPT_ARG_STRING, &out, "checkpoint root to write (OUT/step_NNNNNN and OUT/latest)", NULL, MPT_NO_RANGE},
        {"to", MPT_ARG_STRING, &to, "single | sharded (default: the other format than --in's)", NULL, MPT_NO_RANGE},
    };
    size_t nargs = sizeof args / sizeof *args;
    mpt_status st = mpt_args_parse(args, nargs, argc, argv, 2, &help, "convert", &err);
    if (help) {
        printf("usage: mptrain convert --in DIR --out ROOT [--to single|sharded]\n\n"
               "Turns a sharded checkpoint into one directory holding config.json and\n"
               "model.safetensors (Hugging Face GPT-2 names; plus the optimizer state and step\n"
               "when present), or such a directory into a sharded checkpoint.\n\n");
        mpt_args_usage(args, nargs);
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    if (!in || !out) {
        mpt_fail(&err, MPT_ERR_INPUT, "convert needs --in DIR and --out ROOT (see --help)");
        return mpt_cli_report(&err);
    }
    char dir[PATH_MAX];
    conv_ c;
    memset(&c, 0, sizeof c);
    if ((st = mpt_checkpoint_resolve(in, dir, sizeof dir, &err)) ||
        (st = mpt_checkpoint_read_config(dir, &c.cfg, &err)))
        return mpt_cli_report(&err);
    c.cfg.padded_vocab = 0;
    int sharded_in = mpt_shard_is_sharded(dir), sharded_out = !sharded_in;
    if (to && strcmp(to, "single") == 0) sharded_out = 0;
    else if (to && strcmp(to, "sharded") == 0) sharded_out = 1;
    else if (to) {
        mpt_fail(&err, MPT_ERR_INPUT, "--to %s: use single or sharded", to);
        return mpt_cli_report(&err);
    }
    if (!(st = mpt_config_finish(&c.cfg, 1, &err)) && !(st = mpt_params_build(&c.full, &c.cfg, &err)))
        st = mpt_checkpoint_open(&c.rd, dir, &c.full, 1, &err);
    if (!st && c.rd.managed) st = mpt_checkpoint_read_state(dir, &c.ts, &err);
    c.kinds = !st && c.rd.has_opt ? 3 : 1;
    if (!st) { /* --out ROOT whose step directory is --in itself: the save would replace it */
        char target[PATH_MAX + 32], real_in[PATH_MAX], real_out[PATH_MAX];
        snprintf(target, sizeof target, "%s/step_%06ld", out, c.ts.step);
        if (realpath(dir, real_in) && realpath(target, real_out) && strcmp(real_in, real_out) == 0)
            st = mpt_fail(&err, MPT_ERR_INPUT, "--out %s would replace the checkpoint it "
                          "converts (%s): choose another --out", out, dir);
    }
    if (!st && !(c.buf = malloc(CHUNK_ * sizeof *c.buf))) st = mpt_fail(&err, MPT_ERR_RUN, "out of memory");
    if (!st) st = sharded_out ? to_sharded_(&c, out, &err) : to_single_(&c, out, &err);
    free(c.buf);
    mpt_checkpoint_close(&c.rd);
    mpt_params_free(&c.full);
    if (st) return mpt_cli_report(&err);
    printf("converted %s (%s) to %s/step_%06ld (%s%s)\n", dir, sharded_in ? "sharded" : "single",
           out, c.ts.step, sharded_out ? "sharded" : "single",
           c.kinds == 3 ? ", with the optimizer state" : ", weights only");
    return 0;
}
