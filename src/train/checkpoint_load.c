/* checkpoint_load.c — reading checkpoint directories: DIR or DIR/latest, the manifest's
 * checksums, our own and Hugging Face directories (see checkpoint.h).
 *
 * Files of a step directory: config.json (train/hfconfig.c), model.safetensors and
 * optimizer.safetensors (train/safetensors.c), trainer_state.json, manifest.json. The data
 * position needs no file of its own: the data order is a function of the step (CONTRACT §4).
 */
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "train/checkpoint_internal.h"
#include "train/ckpt_shard.h"
#include "train/hfconfig.h"
#include "train/safetensors.h"

/* ---------------------------------------------------------------- resolving and loading */

mpt_status mpt_checkpoint_resolve(const char *path, char *out, size_t out_size, mpt_error *err) {
    char p[PATH_MAX], target[PATH_MAX], dir[PATH_MAX];
    if (!mpt_ckpt_is_dir(path))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: %s: name the --save directory of a "
                        "run (its latest step), one of its step_NNNNNN directories or a Hugging "
                        "Face GPT-2 directory", path,
                        mpt_ckpt_exists(path) ? "not a directory" : "no such directory");
    if (!mpt_ckpt_join(p, sizeof p, path, mpt_ckpt_config_file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", path);
    if (mpt_ckpt_exists(p)) {
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        mpt_ckpt_join(p, sizeof p, path, "latest");
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n < 0 && !mpt_ckpt_is_dir(p))
            return mpt_fail(err, MPT_ERR_INPUT, "%s holds neither a config.json nor a `latest` "
                            "link: name a checkpoint directory (DIR/step_NNNNNN) or the --save "
                            "directory of a run", path);
        if (n < 0) snprintf(dir, sizeof dir, "%s", p);   /* latest is a plain directory */
        else {
            target[n] = '\0';
            int fit = target[0] == '/' ? snprintf(dir, sizeof dir, "%s", target) < (int)sizeof dir
                                       : mpt_ckpt_join(dir, sizeof dir, path, target);
            if (!fit) return mpt_fail(err, MPT_ERR_INPUT, "%s: path too long", p);
        }
        if (!mpt_ckpt_join(p, sizeof p, dir, mpt_ckpt_config_file) || !mpt_ckpt_exists(p))
            return mpt_fail(err, MPT_ERR_INPUT, "%s/latest points to %s, which is not a "
                            "checkpoint directory (no config.json): name one of %s's "
                            "step_NNNNNN directories instead", path, dir, path);
    }
    if (strlen(dir) >= out_size)
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    memcpy(out, dir, strlen(dir) + 1);
    return MPT_OK;
}

mpt_status mpt_checkpoint_read_config(const char *dir, mpt_config *cfg, mpt_error *err) {
    char p[PATH_MAX];
    if (!mpt_ckpt_join(p, sizeof p, dir, mpt_ckpt_config_file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    return mpt_hfconfig_read(p, cfg, err);
}

/* Verifies every file manifest.json lists; *has_opt: optimizer.safetensors is listed;
 * *has_stash: 2bw_stash.safetensors. */
static mpt_status verify_manifest_(const char *dir, int *has_opt, int *has_stash,
                                   mpt_error *err) {
    char p[PATH_MAX];
    cJSON *root = NULL;   /* owned */
    if (!mpt_ckpt_join(p, sizeof p, dir, mpt_ckpt_manifest_file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    mpt_status st = mpt_ckpt_read_json(p, &root, err);
    if (st != MPT_OK) return st;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files"), *f;
    const char *need[] = {mpt_ckpt_config_file, mpt_ckpt_model_file, mpt_ckpt_state_file};
    if (mpt_shard_is_sharded(dir)) need[1] = MPT_SHARD_INDEX_FILE; /* its data: shard-*.bin */
    for (size_t i = 0; i < 3; i++)
        if (!cJSON_IsObject(files) || !cJSON_GetObjectItemCaseSensitive(files, need[i])) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: does not list %s (corrupt manifest?)", p,
                          need[i]);
            goto cleanup;
        }
    *has_opt = cJSON_GetObjectItemCaseSensitive(files, mpt_ckpt_optim_file) != NULL;
    *has_stash = cJSON_GetObjectItemCaseSensitive(files, mpt_ckpt_stash_file) != NULL;
    /* a sharded checkpoint's data files are checked here for presence and size only: each
     * rank verifies the checksum of a shard when it first reads from it (ckpt_shard.c), so
     * no rank reads the shards it does not need */
    int sharded = mpt_shard_is_sharded(dir);
    cJSON_ArrayForEach(f, files) {
        const char *name = f->string;
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(f, "size");
        const cJSON *jh = cJSON_GetObjectItemCaseSensitive(f, "xxh3_64");
        uint64_t want_size, got_hash;
        size_t size;
        char *end;
        if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            !mpt_ckpt_json_u64(js, &want_size) || !cJSON_IsString(jh) ||
            strlen(jh->valuestring) != 16 || strspn(jh->valuestring, "0123456789abcdef") != 16) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: malformed entry '%.64s'", p, name);
            goto cleanup;
        }
        uint64_t want_hash = strtoull(jh->valuestring, &end, 16);
        char fp[PATH_MAX];
        if (!mpt_ckpt_join(fp, sizeof fp, dir, name)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: path too long", dir);
            goto cleanup;
        }
        if (!mpt_ckpt_exists(fp)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: missing (listed in %s)", fp, mpt_ckpt_manifest_file);
            goto cleanup;
        }
        int deferred = sharded && strcmp(name, need[0]) != 0 && strcmp(name, need[1]) != 0 &&
                       strcmp(name, need[2]) != 0;
        struct stat sb;
        if (deferred) {
            if (stat(fp, &sb) != 0) {
                st = mpt_fail(err, MPT_ERR_INPUT, "%s: cannot read: %s", fp, strerror(errno));
                goto cleanup;
            }
            size = (size_t)sb.st_size;
            got_hash = want_hash;
        } else if ((st = mpt_ckpt_hash_file(fp, &got_hash, &size, err)) != MPT_OK) {
            goto cleanup;
        }
        if (size != want_size) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: %zu bytes, the manifest says %" PRIu64
                          " (truncated or damaged file): use another checkpoint", fp, size,
                          want_size);
            goto cleanup;
        }
        if (got_hash != want_hash) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: checksum mismatch (xxh3_64 %016" PRIx64
                          ", the manifest says %016" PRIx64 "): the file is corrupt; use another "
                          "checkpoint", fp, got_hash, want_hash);
            goto cleanup;
        }
    }
cleanup:
    cJSON_Delete(root);
    return st;
}

/* Where file tensor `name` (prefix already removed) goes: an index into pt->t or -1. Takes the
 * name as is or with "transformer." in front (Hugging Face GPT2Model names). */
static long map_name_(const mpt_param_table *pt, const char *name) {
    char full[MPT_CKPT_NAME_MAX + 16];
    const mpt_tensor *t = mpt_params_find(pt, name);
    if (!t && snprintf(full, sizeof full, "transformer.%s", name) < (int)sizeof full)
        t = mpt_params_find(pt, full);
    return t ? (long)(t - pt->t) : -1;
}

/* Attention mask buffers of Hugging Face GPT-2: not parameters. */
static int is_buffer_(const char *name) {
    size_t n = strlen(name);
    return (n >= 10 && strcmp(name + n - 10, ".attn.bias") == 0) ||
           (n >= 17 && strcmp(name + n - 17, ".attn.masked_bias") == 0);
}

static void shape_text_(char *buf, size_t size, int ndim, const size_t *shape) {
    int len = snprintf(buf, size, "[");
    for (int d = 0; d < ndim && (size_t)len < size; d++)
        len += snprintf(buf + len, size - (size_t)len, "%s%zu", d ? ", " : "", shape[d]);
    if ((size_t)len < size) snprintf(buf + len, size - (size_t)len, "]");
}

/* Matches the tensors of f to pt: a tensor named prefix[k] + <pt name> is src[k * pt->n + i]
 * (nk targets). Every pt tensor must come exactly once per target, in the model's shape and a
 * floating-point dtype; other tensors are errors, except mask buffers and, in a tied model, an
 * lm_head.weight equal to wte (compared here, through a small stack buffer). */
static mpt_status match_file_(const mpt_safetensors *f, const mpt_param_table *pt,
                              const char *const *prefix, int nk, const mpt_st_info **src,
                              mpt_error *err) {
    mpt_status st = MPT_OK;
    const mpt_st_info *head = NULL;   /* a tied model's duplicate lm_head.weight */
    char a[128], b[128];
    for (size_t i = 0; i < (size_t)nk * pt->n; i++) src[i] = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const mpt_st_info *x = &f->t[i];
        int k = 0;
        size_t plen = 0;
        for (; k < nk; k++)
            if (strncmp(x->name, prefix[k], plen = strlen(prefix[k])) == 0) break;
        long idx = k < nk ? map_name_(pt, x->name + plen) : -1;
        if (idx < 0 && is_buffer_(x->name)) continue;
        if (idx < 0 && nk == 1 && strcmp(x->name, "lm_head.weight") == 0) {
            head = x;
            continue;
        }
        if (idx < 0)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: unexpected tensor '%s': the checkpoint does "
                            "not match the model (layers, tying or experts differ?)", f->path,
                            x->name);
        const mpt_tensor *t = &pt->t[idx];
        if (src[(size_t)k * pt->n + (size_t)idx])
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' appears twice (with and without "
                            "the \"transformer.\" prefix)", f->path, x->name);
        src[(size_t)k * pt->n + (size_t)idx] = x;
        if (x->ndim != t->ndim || x->shape[0] != t->shape[0] ||
            (t->ndim == 2 && x->shape[1] != t->shape[1])) {
            shape_text_(a, sizeof a, x->ndim, x->shape);
            shape_text_(b, sizeof b, t->ndim, t->shape);
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has shape %s, the model expects "
                            "%s (config and weights disagree)", f->path, x->name, a, b);
        }
        if (x->dtype == MPT_ST_OTHER)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has dtype %s, which cannot be "
                            "read as floating point", f->path, x->name, x->dtype_name);
    }
    for (int k = 0; k < nk; k++)
        for (size_t i = 0; i < pt->n; i++)
            if (!src[(size_t)k * pt->n + i]) {
                shape_text_(b, sizeof b, pt->t[i].ndim, pt->t[i].shape);
                return mpt_fail(err, MPT_ERR_INPUT, "%s: missing tensor '%s%s' %s", f->path,
                                prefix[k], pt->t[i].name, b);
            }
    if (head) {   /* tied model: lm_head.weight must just repeat wte */
        const mpt_tensor *w = &pt->t[pt->wte];
        const mpt_st_info *x = src[pt->wte];
        size_t n = mpt_tensor_ckpt_numel(w);
        int same = head->ndim == 2 && head->shape[0] == w->shape[0] &&
                   head->shape[1] == w->shape[1] && head->dtype != MPT_ST_OTHER;
        float ha[1024], wa[1024];
        for (size_t i = 0; same && i < n; i += 1024) {
            size_t m = n - i < 1024 ? n - i : 1024;
            if ((st = mpt_safetensors_read_f32_range(f, head, i, m, ha, err)) != MPT_OK ||
                (st = mpt_safetensors_read_f32_range(f, x, i, m, wa, err)) != MPT_OK)
                return st;
            same = memcmp(ha, wa, m * sizeof *ha) == 0;
        }
        if (!same)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: holds an lm_head.weight that differs from "
                            "wte, but the config ties them (set tie_word_embeddings false)",
                            f->path);
    }
    return MPT_OK;
}

/* Opens dir/file into f and matches it as match_file_ does. */
static mpt_status open_path_(const char *dir, const char *file, const mpt_param_table *pt,
                             const char *const *prefix, int nk, mpt_safetensors *f,
                             const mpt_st_info **src, mpt_error *err) {
    char p[PATH_MAX];
    if (!mpt_ckpt_join(p, sizeof p, dir, file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    mpt_status st = mpt_safetensors_open(f, p, err);
    if (st == MPT_OK) st = match_file_(f, pt, prefix, nk, src, err);
    return st;
}

mpt_status mpt_checkpoint_read_state(const char *dir, mpt_train_state *s, mpt_error *err) {
    char p[PATH_MAX];
    cJSON *root = NULL;   /* owned */
    if (!mpt_ckpt_join(p, sizeof p, dir, mpt_ckpt_state_file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    if (!mpt_ckpt_exists(p))
        return mpt_fail(err, MPT_ERR_INPUT, "%s holds weights only (no %s): start from it with "
                        "--init-from instead of --resume", dir, mpt_ckpt_state_file);
    mpt_status st = mpt_ckpt_read_json(p, &root, err);
    if (st != MPT_OK) return st;
    uint64_t step;
    memset(s, 0, sizeof *s);
    if (!mpt_ckpt_json_u64(cJSON_GetObjectItemCaseSensitive(root, "step"), &step) || step > LONG_MAX ||
        !mpt_ckpt_json_u64(cJSON_GetObjectItemCaseSensitive(root, "seed"), &s->seed) ||
        !mpt_ckpt_json_u64(cJSON_GetObjectItemCaseSensitive(root, "rng_counter"), &s->rng_counter)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: step, seed and rng_counter must be non-negative "
                      "integers", p);
        goto cleanup;
    }
    s->step = (long)step;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    char *text = cJSON_IsObject(opts) ? cJSON_PrintUnformatted(opts) : NULL;   /* owned */
    if (text && strlen(text) < sizeof s->options_json)
        memcpy(s->options_json, text, strlen(text) + 1);   /* informational: dropped if too long */
    free(text);
cleanup:
    cJSON_Delete(root);
    return st;
}

mpt_status mpt_checkpoint_open(mpt_ckpt_reader *rd, const char *dir, const mpt_param_table *pt,
                                int want_opt, mpt_error *err) {
    char p[PATH_MAX];
    mpt_status rc;
    memset(rd, 0, sizeof *rd);
    rd->pt = pt;
    if (!mpt_ckpt_join(p, sizeof p, dir, mpt_ckpt_manifest_file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    if (mpt_ckpt_exists(p)) {
        rd->managed = 1;
        if ((rc = verify_manifest_(dir, &rd->has_opt, &rd->has_stash, err)) != MPT_OK) return rc;
    }
    if (mpt_shard_is_sharded(dir)) {
        if (!rd->managed)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: a sharded checkpoint without %s: its "
                            "files cannot be verified; use another checkpoint", dir,
                            mpt_ckpt_manifest_file);
        if ((rc = mpt_shards_open(&rd->sh, dir, pt, err)) != MPT_OK) return rc;
        rd->has_opt = mpt_shards_has_opt(rd->sh);
        rd->has_stash = 0; /* (a sharded save holds no stash) */
        return MPT_OK;
    }
    if (!(rd->src = calloc(4 * pt->n + 1, sizeof *rd->src)))
        return mpt_fail(err, MPT_ERR_RUN, "out of memory opening %s", dir);
    const char *plain[1] = {""}, *pre[2] = {"exp_avg.", "exp_avg_sq."};
    rc = open_path_(dir, mpt_ckpt_model_file, pt, plain, 1, &rd->f[0], rd->src, err);
    if (rc == MPT_OK && want_opt && rd->has_opt)
        rc = open_path_(dir, mpt_ckpt_optim_file, pt, pre, 2, &rd->f[1], rd->src + pt->n, err);
    const char *stash[1] = {"stash."};
    if (rc == MPT_OK && want_opt && rd->has_stash)
        rc = open_path_(dir, mpt_ckpt_stash_file, pt, stash, 1, &rd->f[2], rd->src + 3 * pt->n,
                        err);
    if (rc != MPT_OK) mpt_checkpoint_close(rd);
    return rc;
}

mpt_status mpt_checkpoint_read(const mpt_ckpt_reader *rd, int kind, size_t i, size_t first,
                               size_t n, float *out, mpt_error *err) {
    if (rd->sh) return mpt_shards_read(rd->sh, kind, i, first, n, out, err);
    const mpt_st_info *x = kind >= 0 && kind < 4 && i < rd->pt->n ? rd->src[kind * rd->pt->n + i]
                                                                   : NULL;
    if (!x) return mpt_fail(err, MPT_ERR_RUN, "checkpoint read: no tensor %d/%zu open", kind, i);
    return mpt_safetensors_read_f32_range(&rd->f[kind == 3 ? 2 : kind > 0], x, first, n, out,
                                          err);
}

void mpt_checkpoint_close(mpt_ckpt_reader *rd) {
    if (!rd) return;
    mpt_safetensors_free(&rd->f[0]);
    mpt_safetensors_free(&rd->f[1]);
    mpt_safetensors_free(&rd->f[2]);
    mpt_shards_close(rd->sh);
    free(rd->src);
    memset(rd, 0, sizeof *rd);
}

mpt_status mpt_checkpoint_load(const char *dir, const mpt_param_table *pt, float *params,
                               float *m, float *v, int *has_optimizer, mpt_train_state *st,
                               mpt_error *err) {
    mpt_ckpt_reader rd;
    mpt_status rc = mpt_checkpoint_open(&rd, dir, pt, m && v, err);
    if (rc != MPT_OK) return rc;
    float *bufs[3] = {params, m, v};
    int kinds = m && v ? 3 : 1;
    for (int k = 0; k < kinds; k++) {
        memset(bufs[k], 0, pt->total * sizeof *bufs[k]);   /* padding rows and units stay zero */
        for (size_t i = 0; rc == MPT_OK && (k == 0 || rd.has_opt) && i < pt->n; i++)
            rc = mpt_checkpoint_read(&rd, k, i, 0, mpt_tensor_ckpt_numel(&pt->t[i]),
                                     bufs[k] + pt->t[i].offset, err);
    }
    if (has_optimizer) *has_optimizer = rd.has_opt;
    if (rc == MPT_OK && st) {
        if (!rd.managed)
            rc = mpt_fail(err, MPT_ERR_INPUT, "%s holds weights only (no %s): start from it "
                          "with --init-from instead of --resume", dir, mpt_ckpt_manifest_file);
        else
            rc = mpt_checkpoint_read_state(dir, st, err);
    }
    mpt_checkpoint_close(&rd);
    return rc;
}
