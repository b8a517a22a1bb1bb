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
        e[i].data = buf + t->offset;   /* the first shape[0]*shape[1]: no padding rows */
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

/* Hashes files[0..n) of dir and writes dir/manifest.json. */
static mpt_status write_manifest_(const char *dir, const char *const *files, size_t n,
                                  mpt_error *err) {
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
        if ((st = mpt_ckpt_hash_file(path, &h, &size, err)) != MPT_OK) goto cleanup;
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
        if (strncmp(s, "step_", 5) != 0 || !s[5] || strspn(s + 5, "0123456789") != strlen(s + 5) ||
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

mpt_status mpt_checkpoint_save(const char *root, int keep, const mpt_config *cfg,
                               const mpt_param_table *pt, const float *params, const float *m,
                               const float *v, const mpt_train_state *st, char *out_dir,
                               size_t out_dir_size, mpt_error *err) {
    mpt_status rc = MPT_OK;
    char name[64], tmp[PATH_MAX], final[PATH_MAX], path[PATH_MAX + 32];   /* tmp + a file */
    int have_tmp = 0;   /* tmp exists and is ours to remove on failure */
    mpt_st_entry *e = NULL;           /* owned: 2 * pt->n entries */
    char (*names)[MPT_CKPT_NAME_MAX] = NULL;  /* owned: their names */
    const mpt_st_meta meta = {"format", "pt"};   /* transformers requires it */
    const char *files[5];
    size_t nfiles = 0;
    if (!st || st->step < 0 || (m == NULL) != (v == NULL))
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint save: bad arguments (step, or only one of "
                        "the two AdamW moments)");
    snprintf(name, sizeof name, "step_%06ld", st->step);
    if (!mpt_ckpt_join(final, sizeof final, root, name) ||
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", final, (long)getpid()) >= (int)sizeof tmp)
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint directory %s: path too long", root);
    if (mpt_ckpt_mkdir_p(root) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create checkpoint directory %s: %s", root,
                        strerror(errno));
    if (mpt_ckpt_remove_tree(tmp) != 0 || mkdir(tmp, 0755) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    have_tmp = 1;
    e = calloc(2 * pt->n + 1, sizeof *e);
    names = calloc(2 * pt->n + 1, sizeof *names);
    if (!e || !names) {
        rc = mpt_fail(err, MPT_ERR_RUN, "out of memory saving a checkpoint");
        goto cleanup;
    }
    mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_config_file);   /* fits: see the size of path */
    if ((rc = mpt_hfconfig_write(path, cfg, 1, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = mpt_ckpt_config_file;
    entries_(pt, params, "", e, names);
    mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_model_file);
    if ((rc = mpt_safetensors_write(path, e, pt->n, &meta, 1, 1, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = mpt_ckpt_model_file;
    if (m) {
        entries_(pt, m, "exp_avg.", e, names);
        entries_(pt, v, "exp_avg_sq.", e + pt->n, names + pt->n);
        mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_optim_file);
        if ((rc = mpt_safetensors_write(path, e, 2 * pt->n, &meta, 1, 1, err)) != MPT_OK)
            goto cleanup;
        files[nfiles++] = mpt_ckpt_optim_file;
    }
    mpt_ckpt_join(path, sizeof path, tmp, mpt_ckpt_state_file);
    if ((rc = write_state_(path, st, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = mpt_ckpt_state_file;
    if ((rc = write_manifest_(tmp, files, nfiles, err)) != MPT_OK) goto cleanup;
    if (mpt_ckpt_fsync_dir(tmp) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if ((rc = publish_(tmp, final, err)) != MPT_OK) goto cleanup;
    have_tmp = 0;
    if (mpt_ckpt_fsync_dir(root) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", root, strerror(errno));
        goto cleanup;
    }
    if ((rc = point_latest_(root, name, err)) != MPT_OK) goto cleanup;
    if ((rc = prune_(root, keep, name, err)) != MPT_OK) goto cleanup;
    if (out_dir && out_dir_size) snprintf(out_dir, out_dir_size, "%s", final);
cleanup:
    if (have_tmp) mpt_ckpt_remove_tree(tmp);
    free(names);
    free(e);
    return rc;
}

