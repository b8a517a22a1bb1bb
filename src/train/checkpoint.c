/* checkpoint.c — checkpoint directories: atomic save, keep-K pruning, `latest`, manifest with
 * XXH3-64 checksums, and loading of our own and Hugging Face directories (see checkpoint.h).
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

#include "train/hfconfig.h"
#include "train/safetensors.h"

#define MAX_JSON_BYTES_ ((size_t)1 << 24)
#define NAME_MAX_ 128   /* "exp_avg_sq." + a tensor name (< 96) */

static const char *const model_file_ = "model.safetensors", *const optim_file_ =
    "optimizer.safetensors", *const state_file_ = "trainer_state.json", *const config_file_ =
    "config.json", *const manifest_file_ = "manifest.json";

/* ---------------------------------------------------------------- file-system helpers */

/* out = a "/" b; 0 when it does not fit. */
static int join_(char *out, size_t size, const char *a, const char *b) {
    int n = snprintf(out, size, "%s/%s", a, b);
    return n >= 0 && (size_t)n < size;
}

static int exists_(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int is_dir_(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int fsync_dir_(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkdir -p; 0 on success (errno set otherwise). */
static int mkdir_p_(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return errno = ENAMETOOLONG, -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return is_dir_(buf) ? 0 : (errno = ENOTDIR, -1);
}

static int rm_entry_(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p) != 0 ? -1 : 0;
}

/* rm -rf path (symlinks are removed, never followed); 0 on success or when absent. */
static int remove_tree_(const char *path) {
    if (!exists_(path)) return 0;
    return nftw(path, rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to path and fsyncs it. */
static mpt_status write_text_(const char *path, const char *text, mpt_error *err) {
    FILE *f = fopen(path, "wb");   /* owned */
    if (!f) return mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0) ok = 0;
    if (!ok) return mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", path, strerror(e));
    return MPT_OK;
}

/* Reads a JSON file into a cJSON tree the caller deletes. Bad JSON is MPT_ERR_INPUT. */
static mpt_status read_json_(const char *path, cJSON **out, mpt_error *err) {
    mpt_status st = MPT_OK;
    char *text = NULL;            /* owned */
    FILE *f = fopen(path, "rb");  /* owned */
    *out = NULL;
    if (!f) return mpt_fail(err, MPT_ERR_INPUT, "cannot open %s: %s", path, strerror(errno));
    if (!(text = malloc(MAX_JSON_BYTES_ + 1))) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory reading %s", path);
        goto cleanup;
    }
    size_t len = fread(text, 1, MAX_JSON_BYTES_ + 1, f);
    if (ferror(f) || len > MAX_JSON_BYTES_ || !(*out = cJSON_ParseWithLength(text, len)) ||
        !cJSON_IsObject(*out)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a readable JSON object (corrupt file?)", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
cleanup:
    free(text);
    fclose(f);
    return st;
}

/* XXH3-64 and size of the file at path. */
static mpt_status hash_file_(const char *path, uint64_t *hash, size_t *size, mpt_error *err) {
    mpt_status st = MPT_OK;
    unsigned char *buf = malloc((size_t)1 << 20);   /* owned */
    XXH3_state_t *h = XXH3_createState();            /* owned */
    FILE *f = fopen(path, "rb");                     /* owned */
    if (!f) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!buf || !h || XXH3_64bits_reset(h) != XXH_OK) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory hashing %s", path);
        goto cleanup;
    }
    size_t got, total = 0;
    while ((got = fread(buf, 1, (size_t)1 << 20, f)) > 0) {
        XXH3_64bits_update(h, buf, got);
        total += got;
    }
    if (ferror(f)) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: read failed", path);
        goto cleanup;
    }
    *hash = XXH3_64bits_digest(h);
    *size = total;
cleanup:
    if (f) fclose(f);
    XXH3_freeState(h);
    free(buf);
    return st;
}

/* A JSON integer that keeps 64 bits: a decimal string, or a number below 2^53. */
static int json_u64_(const cJSON *j, uint64_t *out) {
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring;
        char *end;
        if (*s < '0' || *s > '9') return 0;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end) return 0;
        *out = v;
        return 1;
    }
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0) || j->valuedouble > 9007199254740992.0 ||
        j->valuedouble != floor(j->valuedouble))
        return 0;
    *out = (uint64_t)j->valuedouble;
    return 1;
}

/* ---------------------------------------------------------------- saving */

/* The safetensors entries of buf laid out by pt, names prefixed. e and names hold pt->n each. */
static void entries_(const mpt_param_table *pt, const float *buf, const char *prefix,
                     mpt_st_entry *e, char (*names)[NAME_MAX_]) {
    for (size_t i = 0; i < pt->n; i++) {
        const mpt_tensor *t = &pt->t[i];
        snprintf(names[i], NAME_MAX_, "%s%s", prefix, t->name);
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
    st = write_text_(path, text, err);
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
        if (!join_(path, sizeof path, dir, files[i])) {
            st = mpt_fail(err, MPT_ERR_RUN, "%s: path too long", dir);
            goto cleanup;
        }
        if ((st = hash_file_(path, &h, &size, err)) != MPT_OK) goto cleanup;
        snprintf(hex, sizeof hex, "%016" PRIx64, h);
        cJSON *o = cJSON_AddObjectToObject(list, files[i]);
        if (!o || !cJSON_AddNumberToObject(o, "size", (double)size) ||
            !cJSON_AddStringToObject(o, "xxh3_64", hex))
            goto oom;
    }
    if (!(text = cJSON_Print(root)) || !join_(path, sizeof path, dir, manifest_file_)) goto oom;
    st = write_text_(path, text, err);
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "out of memory writing %s/%s", dir, manifest_file_);
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
        remove_tree_(old);
        return MPT_OK;
    }
    remove_tree_(tmp);   /* now the old checkpoint */
    return MPT_OK;
}

/* Points root/latest at name: a new symlink renamed over the old one. */
static mpt_status point_latest_(const char *root, const char *name, mpt_error *err) {
    char link[PATH_MAX], tmp[PATH_MAX];
    if (!join_(link, sizeof link, root, "latest") ||
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", link, (long)getpid()) >= (int)sizeof tmp)
        return mpt_fail(err, MPT_ERR_RUN, "%s: path too long", root);
    unlink(tmp);
    if (symlink(name, tmp) != 0 || rename(tmp, link) != 0 || fsync_dir_(root) != 0) {
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
            strcmp(s, just) == 0 || strlen(s) >= sizeof d->name || !join_(path, sizeof path, root, s) ||
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
        if (!join_(path, sizeof path, root, d[i].name) ||
            snprintf(gone, sizeof gone, "%s.deleting-%ld", path, (long)getpid()) >=
                (int)sizeof gone ||
            rename(path, gone) != 0 || remove_tree_(gone) != 0) {
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
    char (*names)[NAME_MAX_] = NULL;  /* owned: their names */
    const mpt_st_meta meta = {"format", "pt"};   /* transformers requires it */
    const char *files[5];
    size_t nfiles = 0;
    if (!st || st->step < 0 || (m == NULL) != (v == NULL))
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint save: bad arguments (step, or only one of "
                        "the two AdamW moments)");
    snprintf(name, sizeof name, "step_%06ld", st->step);
    if (!join_(final, sizeof final, root, name) ||
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", final, (long)getpid()) >= (int)sizeof tmp)
        return mpt_fail(err, MPT_ERR_RUN, "checkpoint directory %s: path too long", root);
    if (mkdir_p_(root) != 0)
        return mpt_fail(err, MPT_ERR_RUN, "cannot create checkpoint directory %s: %s", root,
                        strerror(errno));
    if (remove_tree_(tmp) != 0 || mkdir(tmp, 0755) != 0) {
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
    join_(path, sizeof path, tmp, config_file_);   /* fits: see the size of path */
    if ((rc = mpt_hfconfig_write(path, cfg, 1, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = config_file_;
    entries_(pt, params, "", e, names);
    join_(path, sizeof path, tmp, model_file_);
    if ((rc = mpt_safetensors_write(path, e, pt->n, &meta, 1, 1, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = model_file_;
    if (m) {
        entries_(pt, m, "exp_avg.", e, names);
        entries_(pt, v, "exp_avg_sq.", e + pt->n, names + pt->n);
        join_(path, sizeof path, tmp, optim_file_);
        if ((rc = mpt_safetensors_write(path, e, 2 * pt->n, &meta, 1, 1, err)) != MPT_OK)
            goto cleanup;
        files[nfiles++] = optim_file_;
    }
    join_(path, sizeof path, tmp, state_file_);
    if ((rc = write_state_(path, st, err)) != MPT_OK) goto cleanup;
    files[nfiles++] = state_file_;
    if ((rc = write_manifest_(tmp, files, nfiles, err)) != MPT_OK) goto cleanup;
    if (fsync_dir_(tmp) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if ((rc = publish_(tmp, final, err)) != MPT_OK) goto cleanup;
    have_tmp = 0;
    if (fsync_dir_(root) != 0) {
        rc = mpt_fail(err, MPT_ERR_RUN, "cannot sync %s: %s", root, strerror(errno));
        goto cleanup;
    }
    if ((rc = point_latest_(root, name, err)) != MPT_OK) goto cleanup;
    if ((rc = prune_(root, keep, name, err)) != MPT_OK) goto cleanup;
    if (out_dir && out_dir_size) snprintf(out_dir, out_dir_size, "%s", final);
cleanup:
    if (have_tmp) remove_tree_(tmp);
    free(names);
    free(e);
    return rc;
}

/* ---------------------------------------------------------------- resolving and loading */

mpt_status mpt_checkpoint_resolve(const char *path, char *out, size_t out_size, mpt_error *err) {
    char p[PATH_MAX], target[PATH_MAX], dir[PATH_MAX];
    if (!is_dir_(path))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: %s", path,
                        exists_(path) ? "not a directory" : "no such directory");
    if (!join_(p, sizeof p, path, config_file_))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", path);
    if (exists_(p)) {
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        join_(p, sizeof p, path, "latest");
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n < 0 && !is_dir_(p))
            return mpt_fail(err, MPT_ERR_INPUT, "%s holds neither a config.json nor a `latest` "
                            "link: name a checkpoint directory (DIR/step_NNNNNN) or the --save "
                            "directory of a run", path);
        if (n < 0) snprintf(dir, sizeof dir, "%s", p);   /* latest is a plain directory */
        else {
            target[n] = '\0';
            int fit = target[0] == '/' ? snprintf(dir, sizeof dir, "%s", target) < (int)sizeof dir
                                       : join_(dir, sizeof dir, path, target);
            if (!fit) return mpt_fail(err, MPT_ERR_INPUT, "%s: path too long", p);
        }
        if (!join_(p, sizeof p, dir, config_file_) || !exists_(p))
            return mpt_fail(err, MPT_ERR_INPUT, "%s/latest points to %s, which is not a "
                            "checkpoint directory (no config.json)", path, dir);
    }
    if (strlen(dir) >= out_size)
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    memcpy(out, dir, strlen(dir) + 1);
    return MPT_OK;
}

mpt_status mpt_checkpoint_read_config(const char *dir, mpt_config *cfg, mpt_error *err) {
    char p[PATH_MAX];
    if (!join_(p, sizeof p, dir, config_file_))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    return mpt_hfconfig_read(p, cfg, err);
}

/* Verifies every file manifest.json lists; *has_opt: optimizer.safetensors is listed. */
static mpt_status verify_manifest_(const char *dir, int *has_opt, mpt_error *err) {
    char p[PATH_MAX];
    cJSON *root = NULL;   /* owned */
    if (!join_(p, sizeof p, dir, manifest_file_))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    mpt_status st = read_json_(p, &root, err);
    if (st != MPT_OK) return st;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files"), *f;
    const char *need[] = {config_file_, model_file_, state_file_};
    for (size_t i = 0; i < 3; i++)
        if (!cJSON_IsObject(files) || !cJSON_GetObjectItemCaseSensitive(files, need[i])) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: does not list %s (corrupt manifest?)", p,
                          need[i]);
            goto cleanup;
        }
    *has_opt = cJSON_GetObjectItemCaseSensitive(files, optim_file_) != NULL;
    cJSON_ArrayForEach(f, files) {
        const char *name = f->string;
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(f, "size");
        const cJSON *jh = cJSON_GetObjectItemCaseSensitive(f, "xxh3_64");
        uint64_t want_size, got_hash;
        size_t size;
        char *end;
        if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            !json_u64_(js, &want_size) || !cJSON_IsString(jh) ||
            strlen(jh->valuestring) != 16 || strspn(jh->valuestring, "0123456789abcdef") != 16) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: malformed entry '%.64s'", p, name);
            goto cleanup;
        }
        uint64_t want_hash = strtoull(jh->valuestring, &end, 16);
        char fp[PATH_MAX];
        if (!join_(fp, sizeof fp, dir, name)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: path too long", dir);
            goto cleanup;
        }
        if (!exists_(fp)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: missing (listed in %s)", fp, manifest_file_);
            goto cleanup;
        }
        if ((st = hash_file_(fp, &got_hash, &size, err)) != MPT_OK) goto cleanup;
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
    char full[NAME_MAX_ + 16];
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

/* Loads the tensors of f into bufs: a tensor named prefix[k] + <pt name> goes to bufs[k]
 * (nk targets). Every pt tensor must come exactly once per target; other tensors are errors,
 * except mask buffers and, in a tied model, an lm_head.weight equal to wte. Each buffer is
 * zeroed first, so padding rows and the padding between units come out zero. */
static mpt_status load_file_(const mpt_safetensors *f, const mpt_param_table *pt,
                             const char *const *prefix, float *const *bufs, int nk,
                             mpt_error *err) {
    mpt_status st = MPT_OK;
    unsigned char *seen = calloc((size_t)nk * pt->n + 1, 1);   /* owned */
    float *tmp = NULL;                                           /* owned */
    const mpt_st_info *head = NULL;   /* a tied model's duplicate lm_head.weight */
    char a[128], b[128];
    if (!seen) return mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", f->path);
    for (int k = 0; k < nk; k++) memset(bufs[k], 0, pt->total * sizeof *bufs[k]);
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
        if (idx < 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: unexpected tensor '%s': the checkpoint does "
                          "not match the model (layers, tying or experts differ?)", f->path,
                          x->name);
            goto cleanup;
        }
        const mpt_tensor *t = &pt->t[idx];
        if (seen[(size_t)k * pt->n + (size_t)idx]++) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' appears twice (with and without "
                          "the \"transformer.\" prefix)", f->path, x->name);
            goto cleanup;
        }
        if (x->ndim != t->ndim || x->shape[0] != t->shape[0] ||
            (t->ndim == 2 && x->shape[1] != t->shape[1])) {
            shape_text_(a, sizeof a, x->ndim, x->shape);
            shape_text_(b, sizeof b, t->ndim, t->shape);
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has shape %s, the model expects "
                          "%s (config and weights disagree)", f->path, x->name, a, b);
            goto cleanup;
        }
        float *dst = bufs[k] + t->offset;   /* rows past the checkpoint's stay zero */
        if ((st = mpt_safetensors_read_f32(f, x, dst, mpt_tensor_ckpt_numel(t), err)) != MPT_OK)
            goto cleanup;
    }
    for (int k = 0; k < nk; k++)
        for (size_t i = 0; i < pt->n; i++)
            if (!seen[(size_t)k * pt->n + i]) {
                shape_text_(b, sizeof b, pt->t[i].ndim, pt->t[i].shape);
                st = mpt_fail(err, MPT_ERR_INPUT, "%s: missing tensor '%s%s' %s", f->path,
                              prefix[k], pt->t[i].name, b);
                goto cleanup;
            }
    if (head) {   /* tied model: lm_head.weight must just repeat wte */
        const mpt_tensor *w = &pt->t[pt->wte];
        size_t n = mpt_tensor_ckpt_numel(w);
        int same = head->ndim == 2 && head->shape[0] == w->shape[0] &&
                   head->shape[1] == w->shape[1];
        if (same && !(tmp = malloc(n * sizeof *tmp + 1))) {
            st = mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", f->path);
            goto cleanup;
        }
        if (same && (st = mpt_safetensors_read_f32(f, head, tmp, n, err)) != MPT_OK) goto cleanup;
        if (!same || memcmp(tmp, bufs[0] + w->offset, n * sizeof *tmp) != 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: holds an lm_head.weight that differs from "
                          "wte, but the config ties them (set tie_word_embeddings false)",
                          f->path);
            goto cleanup;
        }
    }
cleanup:
    free(tmp);
    free(seen);
    return st;
}

/* Opens dir/file and loads it as load_file_ does. */
static mpt_status load_path_(const char *dir, const char *file, const mpt_param_table *pt,
                             const char *const *prefix, float *const *bufs, int nk,
                             mpt_error *err) {
    char p[PATH_MAX];
    mpt_safetensors f;   /* owns its mapping until freed */
    if (!join_(p, sizeof p, dir, file))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    mpt_status st = mpt_safetensors_open(&f, p, err);
    if (st == MPT_OK) st = load_file_(&f, pt, prefix, bufs, nk, err);
    mpt_safetensors_free(&f);
    return st;
}

static mpt_status read_state_(const char *dir, mpt_train_state *s, mpt_error *err) {
    char p[PATH_MAX];
    cJSON *root = NULL;   /* owned */
    if (!join_(p, sizeof p, dir, state_file_))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    if (!exists_(p))
        return mpt_fail(err, MPT_ERR_INPUT, "%s holds weights only (no %s): start from it with "
                        "--init-from instead of --resume", dir, state_file_);
    mpt_status st = read_json_(p, &root, err);
    if (st != MPT_OK) return st;
    uint64_t step;
    memset(s, 0, sizeof *s);
    if (!json_u64_(cJSON_GetObjectItemCaseSensitive(root, "step"), &step) || step > LONG_MAX ||
        !json_u64_(cJSON_GetObjectItemCaseSensitive(root, "seed"), &s->seed) ||
        !json_u64_(cJSON_GetObjectItemCaseSensitive(root, "rng_counter"), &s->rng_counter)) {
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

mpt_status mpt_checkpoint_load(const char *dir, const mpt_param_table *pt, float *params,
                               float *m, float *v, int *has_optimizer, mpt_train_state *st,
                               mpt_error *err) {
    char p[PATH_MAX];
    int managed = 0, has_opt = 0;   /* managed: ours, with a manifest */
    mpt_status rc;
    if (!join_(p, sizeof p, dir, manifest_file_))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    if (exists_(p)) {
        managed = 1;
        if ((rc = verify_manifest_(dir, &has_opt, err)) != MPT_OK) return rc;
    }
    const char *plain[1] = {""};
    float *pbuf[1] = {params};
    if ((rc = load_path_(dir, model_file_, pt, plain, pbuf, 1, err)) != MPT_OK) return rc;
    if (m && v) {
        if (has_opt) {
            const char *pre[2] = {"exp_avg.", "exp_avg_sq."};
            float *mv[2] = {m, v};
            if ((rc = load_path_(dir, optim_file_, pt, pre, mv, 2, err)) != MPT_OK) return rc;
        } else {
            memset(m, 0, pt->total * sizeof *m);
            memset(v, 0, pt->total * sizeof *v);
        }
    }
    if (has_optimizer) *has_optimizer = has_opt;
    if (st) {
        if (!managed)
            return mpt_fail(err, MPT_ERR_INPUT, "%s holds weights only (no %s): start from it "
                            "with --init-from instead of --resume", dir, manifest_file_);
        if ((rc = read_state_(dir, st, err)) != MPT_OK) return rc;
    }
    return MPT_OK;
}
