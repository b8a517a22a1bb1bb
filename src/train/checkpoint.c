/* checkpoint.c — writing checkpoint directories: atomic save, keep-K pruning, `latest`, the
 * manifest with XXH3-64 checksums (see checkpoint.h; reading is in checkpoint_load.c).
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
#include "train/hfconfig.h"
#include "train/safetensors.h"

/* ---------------------------------------------------------------- saving */

/* The safetensors entries of buf laid out by pt, names prefixed. e and names hold pt->n each. */
static void entries_(const mpt_param_table *pt, const float *buf, const char *prefix,
                     mpt_st_entry *e, char (*names)[MPT_CKPT_NAME_MAX]) {
    for (size_t i = 0; i < pt->n; i++) {
        const mpt_tensor *t = &pt->t[i];
        snprintf(names[i], MPT_CKPT_NAME_MAX, "%s%s", prefix, t->name);
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = names[i];
        e[i].ndim = t->ndim;
        e[i].shape[0] = t->shape[0];
        e[i].shape[1] = t->shape[1];
        e[i].data = buf ? buf + t->offset : NULL;   /* the first shape[0]*shape[1] */
    }
}

static mpt_status write_state_(const char *path, const mpt_train_state *s, mpt_error *err) {
    mpt_status st = MPT_OK;
    char num[2][24];
    char *text = NULL;   /* owned */
    size_t olen = strnlen(s->options_json, sizeof s->options_json);
    cJSON *opts = olen ? cJSON_ParseWithLength(s->options_json, olen) : cJSON_CreateObject();
    cJSON *root = cJSON_CreateObject();   /* owned; owns opts once added */
    if (!opts || !cJSON_IsObject(opts)) {
        cJSON_Delete(opts);
        st = mpt_fail(err, MPT_ERR_RUN, "%s: the run's options are not a JSON object", path);
        goto cleanup;
    }
    snprintf(num[0], sizeof num[0], "%" PRIu64, s->seed);
    snprintf(num[1], sizeof num[1], "%" PRIu64, s->rng_counter);
    if (!root || !cJSON_AddStringToObject(root, "format", "mptrain-trainer-state") ||
        !cJSON_AddNumberToObject(root, "version", 1) ||
        !cJSON_AddNumberToObject(root, "step", (double)s->step) ||
        !cJSON_AddStringToObject(root, "seed", num[0]) ||
        !cJSON_AddStringToObject(root, "rng_counter", num[1]) ||
        !cJSON_AddItemToObject(root, "options", opts)) {
        cJSON_Delete(opts);
        goto oom;
    }
    if (!(text = cJSON_Print(root))) goto oom;
    st = mpt_ckpt_write_text(path, text, err);
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "out of memory writing %s", path);
cleanup:
    free(text);
    cJSON_Delete(root);
    return st;
}

/* Hashes files[0..n) of dir and writes dir/manifest.json. known (NULL, or n entries): a file
 * whose entry has known[i].known set is listed with that size and hash, not read again. */
static mpt_status write_manifest_(const char *dir, const char *const *files, size_t n,
                                  const mpt_ckpt_file_hash *known, mpt_error *err) {
    mpt_status st = MPT_OK;
    char path[PATH_MAX], hex[24];
    char *text = NULL;                    /* owned */
    cJSON *root = cJSON_CreateObject();   /* owned */
    cJSON *list = NULL;
    if (!root || !cJSON_AddStringToObject(root, "format", "mptrain-manifest") ||
        !cJSON_AddNumberToObject(root, "version", 1) ||
        !cJSON_AddStringToObject(root, "hash", "xxh3_64") ||
        !(list = cJSON_AddObjectToObject(root, "files")))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        uint64_t h;
        size_t size;
        if (!mpt_ckpt_join(path, sizeof path, dir, files[i])) {
            st = mpt_fail(err, MPT_ERR_RUN, "%s: path too long", dir);
            goto cleanup;
        }
        if (known && known[i].known) {
            h = known[i].xxh3_64;
            size = (size_t)known[i].size;
        } else if ((st = mpt_ckpt_hash_file(path, &h, &size, err)) != MPT_OK) {
            goto cleanup;
        }
        snprintf(hex, sizeof hex, "%016" PRIx64, h);
        cJSON *o = cJSON_AddObjectToObject(list, files[i]);
        if (!o || !cJSON_AddNumberToObject(o, "size", (double)size) ||
            !cJSON_AddStringToObject(o, "xxh3_64", hex))
            goto oom;
    }
    if (!(text = cJSON_Print(root)) || !mpt_ckpt_join(path, sizeof path, dir, mpt_ckpt_manifest_file)) goto oom;
    st = mpt_ckpt_write_text(path, text, err);
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "out of memory writing %s/%s", dir, mpt_ckpt_manifest_file);
cleanup:
    free(text);
    cJSON_Delete(root);
    return st;
}

/* Moves the finished temporary directory tmp to final, replacing an older final atomically
 * (exchange, then delete the old one). */
static mpt_status publish_(const char *tmp, const char *final, mpt_error *err) {
    if (rename(tmp, final) == 0) return MPT_OK;
    if (errno != EEXIST && errno != ENOTEMPTY && errno != EISDIR && errno != ENOTDIR)
        return mpt_fail(err, MPT_ERR_RUN, "cannot rename %s to %s: %s", tmp, final,
                        strerror(errno));
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) != 0) {
        /* No exchange on this file system: move the old one aside first. */
        char old[PATH_MAX];
        if (snprintf(old, sizeof old, "%s.old-%ld", final, (long)getpid()) >= (int)sizeof old ||
            rename(final, old) != 0)
            return mpt_fail(err, MPT_ERR_RUN, "cannot replace %s: %s", final, strerror(errno));
        if (rename(tmp, final) != 0) {
            int e = errno;
            rename(old, final);   /* put the old one back */
            return mpt_fail(err, MPT_ERR_RUN, "cannot replace %s: %s", final, strerror(e));
        }
        mpt_ckpt_remove_tree(old);
        return MPT_OK;
    }
    mpt_ckpt_remove_tree(tmp);   /* now the old checkpoint */
    return MPT_OK;
}

/* Points root/latest at name: a new symlink renamed over the old one. */
static mpt_status point_latest_(const char *root, const char *name, mpt_error *err) {
    char link[PATH_MAX], tmp[PATH_MAX];
    if (!mpt_ckpt_join(link, sizeof link, root, "latest") ||
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", link, (long)getpid()) >= (int)sizeof tmp)
        return mpt_fail(err, MPT_ERR_RUN, "%s: path too long", root);
    unlink(tmp);
    if (symlink(name, tmp) != 0 || rename(tmp, link) != 0 || mpt_ckpt_fsync_dir(root) != 0) {
        int e = errno;
        unlink(tmp);
        return mpt_fail(err, MPT_ERR_RUN, "saved %s/%s but cannot point %s at it: %s", root, name,
                        link, strerror(e));
    }
    return MPT_OK;
}

typedef struct {
    unsigned long long step;
    char name[64];
} step_dir_;

static int cmp_step_desc_(const void *a, const void *b) {
    const step_dir_ *x = a, *y = b;
    return x->step > y->step ? -1 : x->step < y->step;
}

/* Keeps `just` and the newest keep-1 other step_N directories of root; deletes the rest (each
 * first renamed out of the step_ namespace, so a crash never leaves a half-deleted step). */
static mpt_status prune_(const char *root, int keep, const char *just, mpt_error *err) {
    mpt_status st = MPT_OK;
    step_dir_ *d = NULL;   /* owned */
    size_t n = 0, cap = 0;
    DIR *dir = NULL;   /* owned */
    if (keep <= 0) goto cleanup;
    if (!(dir = opendir(root))) {
        st = mpt_fail(err, MPT_ERR_RUN, "cannot list %s: %s", root, strerror(errno));
        goto cleanup;
    }
    struct dirent *de;
    while ((de = readdir(dir))) {
        const char *s = de->d_name;
        char path[PATH_MAX];
        struct stat sb;
        if (!mpt_ckpt_is_step_name(s) ||
            strcmp(s, just) == 0 || strlen(s) >= sizeof d->name || !mpt_ckpt_join(path, sizeof path, root, s) ||
            lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            step_dir_ *nd = realloc(d, nc * sizeof *d);   /* nc * size: no overflow at this scale */
            if (!nd) {
                st = mpt_fail(err, MPT_ERR_RUN, "out of memory listing %s", root);
                goto cleanup;
            }
            d = nd, cap = nc;
        }
        d[n].step = strtoull(s + 5, NULL, 10);
        memcpy(d[n].name, s, strlen(s) + 1);   /* fits: checked above */
        n++;
    }
    if (n > 1) qsort(d, n, sizeof *d, cmp_step_desc_);
    for (size_t i = (size_t)keep - 1; i < n; i++) {
        char path[PATH_MAX], gone[PATH_MAX];
        if (!mpt_ckpt_join(path, sizeof path, root, d[i].name) ||
            snprintf(gone, sizeof gone, "%s.deleting-%ld", path, (long)getpid()) >=
                (int)sizeof gone ||
            rename(path, gone) != 0 || mpt_ckpt_remove_tree(gone) != 0) {
            st = mpt_fail(err, MPT_ERR_RUN, "saved %s/%s but cannot delete the old checkpoint "
                          "%s: %s", root, just, path, strerror(errno));
            goto cleanup;
        }
    }
cleanup:
    if (dir) closedir(dir);
    free(d);
    return st;
}

/* ---------------------------------------------------------------- staging */

size_t mpt_checkpoint_stage_elems(const mpt_param_table *full) {
    size_t row = 1, largest = 1;
    for (size_t i = 0; i < full->n; i++) {
        const mpt_tensor *t = &full->t[i];
        size_t r = t->ndim == 2 ? t->shape[1] : mpt_tensor_ckpt_numel(t);
        size_t n = mpt_tensor_ckpt_numel(t);
        if (r > row) row = r;
        if (n > largest) largest = n;
    }
    size_t floor_ = largest < ((size_t)1 << 20) ? largest : (size_t)1 << 20;
    return 2 * row > floor_ ? 2 * row : floor_;
}

void mpt_checkpoint_buffers(const mpt_param_table *full, mpt_buflist *l, float **a, float **b) {
    size_t n = mpt_checkpoint_stage_elems(full);
    mpt_buflist_add(l, "ckpt_stage_in", MPT_MEM_WORKSPACE, MPT_F32, n, (void **)a);
    mpt_buflist_add(l, "ckpt_stage_out", MPT_MEM_WORKSPACE, MPT_F32, n, (void **)b);
}

/* ---------------------------------------------------------------- streaming save */

static const char *file_name_(int which) {
    return which == 2 ? mpt_ckpt_stash_file : which ? mpt_ckpt_optim_file : mpt_ckpt_model_file;
}

/* Opens file `which` (0 model, 1 optimizer, 2 stash) of the session: its header, from the
 * shapes. */
static mpt_status open_file_(mpt_ckpt_writer *w, int which, mpt_error *err) {
    const mpt_param_table *pt = w->pt;
    const mpt_st_meta meta = {"format", "pt"};   /* transformers requires it */
    char path[PATH_MAX + 32];
    size_t n = which == 1 ? 2 * pt->n : pt->n;
    mpt_st_entry *e = calloc(n + 1, sizeof *e);                  /* owned */
    char (*names)[MPT_CKPT_NAME_MAX] = calloc(n + 1, sizeof *names);   /* owned */
    mpt_status st = MPT_OK;
    if (!e || !names) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory saving a checkpoint");
        goto cleanup;
    }
    if (which == 1) {
        entries_(pt, NULL, "exp_avg.", e, names);
        entries_(pt, NULL, "exp_avg_sq.", e + pt->n, names + pt->n);
    } else {
        entries_(pt, NULL, which ? "stash." : "", e, names);
    }
    const char *file = file_name_(which);
    mpt_ckpt_join(path, sizeof path, w->tmp, file);   /* fits: see the size of path */
    if ((st = mpt_st_writer_open(&w->out, path, e, n, &meta, 1, err)) != MPT_OK) goto cleanup;
    w->left = w->out.expect;
    w->file = which;
cleanup:
    free(names);
    free(e);
    return st;
}

/* Closes the finished file and opens the next one (or marks the data done). */
static mpt_status next_file_(mpt_ckpt_writer *w, mpt_error *err) {
    mpt_status st = mpt_st_writer_close(&w->out, 1, err);
    if (st != MPT_OK) return st;
    w->files[w->nfiles++] = file_name_(w->file);
    if (w->file == 0 && w->with_opt) return open_file_(w, 1, err);
    if (w->file < 2 && w->with_stash) return open_file_(w, 2, err);
    w->file = 3;
    return MPT_OK;
}

mpt_status mpt_checkpoint_begin(mpt_ckpt_writer *w, const char *root, int keep, long step,
                                const mpt_config *cfg, const mpt_param_table *pt, int with_opt,
                                mpt_error *err) {
    char path[PATH_MAX + 32];
    memset(w, 0, sizeof *w);
    w->pt = pt;
    w->cfg = cfg;
    w->keep = keep;
    w->with_opt = with_opt;
    if (step < 0) return mpt_fail(err, MPT_ERR_RUN, "checkpoint save: bad step %ld", step);
    snprintf(w->name, sizeof w->name, "step_%06ld", step);
    if (snprintf(w->root, sizeof w->root, "%s", root) >= (int)sizeof w->root ||
        !mpt_ckpt_join(w->final, sizeof w->final, root, w->name) ||
        snprintf(w->tmp, sizeof w->tmp, "%s.tmp-%ld", w->final, (long)getpid()) >=
            (int)sizeof w->tmp)
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint directory %s: path too long", root);
    if (mpt_ckpt_mkdir_p(root) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create checkpoint directory %s: %s", root,
                        strerror(errno));
    if (mpt_ckpt_remove_tree(w->tmp) != 0 || mkdir(w->tmp, 0755) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", w->tmp, strerror(errno));
    w->have_tmp = 1;
    mpt_ckpt_join(path, sizeof path, w->tmp, mpt_ckpt_config_file);
    mpt_status st = mpt_hfconfig_write(path, cfg, 1, err);
    if (st == MPT_OK) {
        w->files[w->nfiles++] = mpt_ckpt_config_file;
        st = open_file_(w, 0, err);
    }
    if (st == MPT_OK && w->left == 0) st = next_file_(w, err);   /* a model of no elements */
    if (st != MPT_OK) mpt_checkpoint_abort(w);
    return st;
}

mpt_status mpt_checkpoint_put(mpt_ckpt_writer *w, const float *data, size_t n, mpt_error *err) {
    while (n > 0) {
        if (w->file == 3)
            return mpt_fail(err, MPT_ERR_RUN, "checkpoint save: %zu elements past the end", n);
        size_t m = n < w->left ? n : w->left;
        mpt_status st = mpt_st_writer_put(&w->out, data, m, err);
        if (st != MPT_OK) return st;
        data += m;
        n -= m;
        w->left -= m;
        if (w->left == 0 && (st = next_file_(w, err)) != MPT_OK) return st;
    }
    return MPT_OK;
}

void mpt_checkpoint_abort(mpt_ckpt_writer *w) {
    if (!w) return;
    mpt_st_writer_abort(&w->out);
    if (w->have_tmp) mpt_ckpt_remove_tree(w->tmp);
    w->have_tmp = 0;
    w->file = 3;
}

mpt_status mpt_checkpoint_commit(mpt_ckpt_writer *w, const mpt_train_state *st, char *out_dir,
                                 size_t out_dir_size, mpt_error *err) {
    mpt_status rc = MPT_OK;
    char path[PATH_MAX + 32];
    if (!st || w->file != 3 || !w->have_tmp) {
        rc = mpt_fail(err, MPT_ERR_RUN, "checkpoint save: %s", !st ? "no trainer state"
                      : w->have_tmp ? "not every tensor was written" : "no session");
        goto cleanup;
    }
    mpt_ckpt_join(path, sizeof path, w->tmp, mpt_ckpt_state_file);
    if ((rc = write_state_(path, st, err)) != MPT_OK) goto cleanup;
    w->files[w->nfiles++] = mpt_ckpt_state_file;
    if ((rc = write_manifest_(w->tmp, w->files, w->nfiles, NULL, err)) != MPT_OK) goto cleanup;
    if (mpt_ckpt_fsync_dir(w->tmp) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", w->tmp, strerror(errno));
        goto cleanup;
    }
    if ((rc = publish_(w->tmp, w->final, err)) != MPT_OK) goto cleanup;
    w->have_tmp = 0;
    if (mpt_ckpt_fsync_dir(w->root) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", w->root, strerror(errno));
        goto cleanup;
    }
    if ((rc = point_latest_(w->root, w->name, err)) != MPT_OK) goto cleanup;
    if ((rc = prune_(w->root, w->keep, w->name, err)) != MPT_OK) goto cleanup;
    if (out_dir && out_dir_size) snprintf(out_dir, out_dir_size, "%s", w->final);
cleanup:
    mpt_checkpoint_abort(w);
    return rc;
}

mpt_status mpt_checkpoint_begin_dir(const char *root, long step, const mpt_config *cfg,
                                    char *tmp, size_t tmp_size, mpt_error *err) {
    char final[PATH_MAX], path[PATH_MAX + 32], name[64];
    snprintf(name, sizeof name, "step_%06ld", step);
    if (step < 0 || !mpt_ckpt_join(final, sizeof final, root, name) ||
        snprintf(tmp, tmp_size, "%s.tmp-%ld", final, (long)getpid()) >= (int)tmp_size)
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint directory %s: path too long", root);
    if (mpt_ckpt_mkdir_p(root) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create checkpoint directory %s: %s", root,
                        strerror(errno));
    if (mpt_ckpt_remove_tree(tmp) != 0 || mkdir(tmp, 0755) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", tmp, strerror(errno));
    mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_config_file);
    mpt_status st = mpt_hfconfig_write(path, cfg, 1, err);
    if (st != MPT_OK) mpt_ckpt_remove_tree(tmp);
    return st;
}

void mpt_checkpoint_remove_dir(const char *tmp) { mpt_ckpt_remove_tree(tmp); }

mpt_status mpt_checkpoint_hash_file(const char *path, mpt_ckpt_file_hash *out, mpt_error *err) {
    size_t size = 0;
    memset(out, 0, sizeof *out);
    mpt_status st = mpt_ckpt_hash_file(path, &out->xxh3_64, &size, err);
    out->size = size;
    out->known = st == MPT_OK;
    return st;
}

mpt_status mpt_checkpoint_publish(const char *root, int keep, long step, const char *tmp,
                                  const char *const *files, size_t n, const mpt_train_state *st,
                                  char *out_dir, size_t out_dir_size, mpt_error *err) {
    return mpt_checkpoint_publish_hashed(root, keep, step, tmp, files, NULL, n, st, out_dir,
                                         out_dir_size, err);
}

mpt_status mpt_checkpoint_publish_hashed(const char *root, int keep, long step, const char *tmp,
                                         const char *const *files,
                                         const mpt_ckpt_file_hash *known, size_t n,
                                         const mpt_train_state *st, char *out_dir,
                                         size_t out_dir_size, mpt_error *err) {
    char final[PATH_MAX], path[PATH_MAX + 32], name[64];
    const char **all = calloc(n + 2, sizeof *all);
    mpt_ckpt_file_hash *kall = known ? calloc(n + 2, sizeof *kall) : NULL;
    mpt_status rc = MPT_OK;
    if (known && !kall) {
        rc = mpt_fail(err, MPT_ERR_RUN, "checkpoint save: out of memory");
        goto fail;
    }
    for (size_t i = 0; kall && i < n; i++) kall[i + 2] = known[i];
    snprintf(name, sizeof name, "step_%06ld", step);
    if (!all || !mpt_ckpt_join(final, sizeof final, root, name)) {
        rc = mpt_fail(err, MPT_ERR_RUN, "checkpoint save: out of memory or path too long");
        goto fail;
    }
    all[0] = mpt_ckpt_config_file;
    all[1] = mpt_ckpt_state_file;
    for (size_t i = 0; i < n; i++) all[i + 2] = files[i];
    mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_state_file);
    if ((rc = write_state_(path, st, err)) != MPT_OK ||
        (rc = write_manifest_(tmp, all, n + 2, kall, err)) != MPT_OK)
        goto fail;
    if (mpt_ckpt_fsync_dir(tmp) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = publish_(tmp, final, err)) != MPT_OK) goto fail;
    free(all);
    free(kall);
    if (mpt_ckpt_fsync_dir(root) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", root, strerror(errno));
    if ((rc = point_latest_(root, name, err)) != MPT_OK) return rc;
    if ((rc = prune_(root, keep, name, err)) != MPT_OK) return rc;
    if (out_dir && out_dir_size) snprintf(out_dir, out_dir_size, "%s", final);
    return MPT_OK;
fail:
    free(all);
    free(kall);
    mpt_ckpt_remove_tree(tmp);
    return rc;
}

mpt_status mpt_checkpoint_save(const char *root, int keep, const mpt_config *cfg,
                               const mpt_param_table *pt, const float *params, const float *m,
                               const float *v, const mpt_train_state *st, char *out_dir,
                               size_t out_dir_size, mpt_error *err) {
    mpt_ckpt_writer w;
    if (!st || st->step < 0 || (m == NULL) != (v == NULL))
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint save: bad arguments (step, or only one of "
                        "the two AdamW moments)");
    mpt_status rc = mpt_checkpoint_begin(&w, root, keep, st->step, cfg, pt, m != NULL, err);
    if (rc != MPT_OK) return rc;
    const float *bufs[3] = {params, m, v};
    for (int k = 0; k < (m ? 3 : 1); k++)
        for (size_t i = 0; rc == MPT_OK && i < pt->n; i++)
            rc = mpt_checkpoint_put(&w, bufs[k] + pt->t[i].offset,
                                    mpt_tensor_ckpt_numel(&pt->t[i]), err);
    if (rc != MPT_OK) {
        mpt_checkpoint_abort(&w);
        return rc;
    }
    return mpt_checkpoint_commit(&w, st, out_dir, out_dir_size, err);
}
