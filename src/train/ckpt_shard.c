/* ckpt_shard.c — the index of a sharded checkpoint (shards.json) and the reader that serves
 * any range of a full tensor from the slices that hold it (see ckpt_shard.h). */
#include "train/ckpt_shard.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "train/checkpoint_internal.h"

static const char *const kind_name_[MPT_SHARD_KINDS] = {"param", "exp_avg", "exp_avg_sq"};
#define MAX_FILES_ 1048576
#define MAX_BOXES_ ((size_t)1 << 26)

void mpt_shard_file_name(int r, char *buf, size_t size) { snprintf(buf, size, "shard-%05d.bin", r); }

int mpt_shard_is_sharded(const char *dir) {
    char p[PATH_MAX];
    return mpt_ckpt_join(p, sizeof p, dir, MPT_SHARD_INDEX_FILE) && mpt_ckpt_exists(p);
}

/* [a] for a 1-D tensor, [a, b] for 2-D. */
static cJSON *pair_(int ndim, int64_t a, int64_t b) {
    cJSON *x = cJSON_CreateArray();
    if (ndim == 2) cJSON_AddItemToArray(x, cJSON_CreateNumber((double)a));
    cJSON_AddItemToArray(x, cJSON_CreateNumber((double)b));
    return x;
}

mpt_status mpt_shard_write_index(const char *dir, const mpt_param_table *full, int nfiles,
                                 int with_opt, const mpt_shard_box *boxes, size_t n,
                                 mpt_error *err) {
    char path[PATH_MAX], name[32];
    cJSON *root = cJSON_CreateObject(), *files = NULL, *tensors = NULL;
    cJSON **slices = calloc(full->n + 1, sizeof *slices);
    mpt_status st = MPT_OK;
    char *text = NULL;
    if (!root || !slices || !cJSON_AddStringToObject(root, "format", "mptrain-shards") ||
        !cJSON_AddNumberToObject(root, "version", 1) ||
        !cJSON_AddBoolToObject(root, "optimizer", with_opt) ||
        !(files = cJSON_AddArrayToObject(root, "files")) ||
        !(tensors = cJSON_AddArrayToObject(root, "tensors")))
        goto oom;
    for (int r = 0; r < nfiles; r++) {
        mpt_shard_file_name(r, name, sizeof name);
        cJSON_AddItemToArray(files, cJSON_CreateString(name));
    }
    for (size_t i = 0; i < full->n; i++) {
        const mpt_tensor *t = &full->t[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) goto oom;
        cJSON_AddItemToArray(tensors, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddItemToObject(o, "shape", pair_(t->ndim, (int64_t)t->shape[0],
                                                t->ndim == 2 ? (int64_t)t->shape[1] : (int64_t)t->shape[0]));
        cJSON_AddStringToObject(o, "dtype", "F32");
        if (!(slices[i] = cJSON_AddArrayToObject(o, "slices"))) goto oom;
    }
    for (size_t k = 0; k < n; k++) {
        const mpt_shard_box *b = &boxes[k];
        if (b->tensor < 0 || (size_t)b->tensor >= full->n || b->kind < 0 || b->kind >= MPT_SHARD_KINDS) {
            st = mpt_fail(err, MPT_ERR_RUN, "sharded save: slice %zu names no tensor", k);
            goto cleanup;
        }
        int nd = full->t[b->tensor].ndim;
        cJSON *s = cJSON_CreateObject();
        if (!s) goto oom;
        cJSON_AddItemToArray(slices[b->tensor], s);
        cJSON_AddStringToObject(s, "kind", kind_name_[b->kind]);
        cJSON_AddNumberToObject(s, "file", (double)b->file);
        cJSON_AddItemToObject(s, "offset", pair_(nd, b->row0, b->col0));
        cJSON_AddItemToObject(s, "length", pair_(nd, b->nrows, b->ncols));
        cJSON_AddNumberToObject(s, "byte", (double)b->byte);
    }
    if (!(text = cJSON_PrintUnformatted(root))) goto oom;
    if (!mpt_ckpt_join(path, sizeof path, dir, MPT_SHARD_INDEX_FILE)) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: path too long", dir);
        goto cleanup;
    }
    st = mpt_ckpt_write_text(path, text, err);
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "out of memory writing %s/%s", dir, MPT_SHARD_INDEX_FILE);
cleanup:
    free(text);
    free(slices);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- reading */

struct mpt_shards {
    const mpt_param_table *full;  /* not owned */
    int nfiles, has_opt;
    int *fd;                      /* owned: one per file */
    uint64_t *want;               /* owned: each file's XXH3-64 from manifest.json */
    char *checked;                /* owned: 1 once this rank verified the file's checksum */
    char (*fname)[64];            /* owned: each file's name, for messages */
    mpt_shard_box *box;           /* owned, sorted by (kind, tensor) */
    size_t nbox;
    size_t *first;                /* owned: boxes of (kind, tensor) are [first[j], first[j+1]) */
};

int mpt_shards_has_opt(const mpt_shards *s) { return s->has_opt; }

void mpt_shards_close(mpt_shards *s) {
    if (!s) return;
    for (int i = 0; s->fd && i < s->nfiles; i++)
        if (s->fd[i] >= 0) close(s->fd[i]);
    free(s->fd);
    free(s->want);
    free(s->checked);
    free(s->fname);
    free(s->box);
    free(s->first);
    free(s);
}

/* A JSON integer in [0, 2^53) into *v; 0 when it is not one. */
static int int_(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > 9007199254740992.0 ||
        j->valuedouble != (double)(int64_t)j->valuedouble)
        return 0;
    *v = (int64_t)j->valuedouble;
    return 1;
}

/* An array of ndim such integers into v[2] (1-D: v[0] = 0 or `one`, v[1] the value). */
static int pair_read_(const cJSON *j, int ndim, int64_t one, int64_t v[2]) {
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != ndim) return 0;
    if (ndim == 1) {
        v[0] = one;
        return int_(cJSON_GetArrayItem(j, 0), &v[1]);
    }
    return int_(cJSON_GetArrayItem(j, 0), &v[0]) && int_(cJSON_GetArrayItem(j, 1), &v[1]);
}

static int cmp_box_(const void *a, const void *b) {
    const mpt_shard_box *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->tensor != y->tensor) return x->tensor < y->tensor ? -1 : 1;
    if (x->row0 != y->row0) return x->row0 < y->row0 ? -1 : 1;
    return x->col0 < y->col0 ? -1 : x->col0 > y->col0;
}

static int overlap_(const mpt_shard_box *a, const mpt_shard_box *b) {
    return a->row0 < b->row0 + b->nrows && b->row0 < a->row0 + a->nrows &&
           a->col0 < b->col0 + b->ncols && b->col0 < a->col0 + a->ncols;
}

/* Parses the slices of tensor ti (JSON array sl) into s->box; checks each against the tensor
 * and its file. */
static mpt_status slices_(mpt_shards *s, const char *p, size_t ti, const cJSON *sl,
                          const int64_t *fsize, size_t *cap, mpt_error *err) {
    const mpt_tensor *t = &s->full->t[ti];
    const cJSON *x;
    int64_t rows = (int64_t)(t->ndim == 2 ? t->shape[0] : 1);
    int64_t cols = (int64_t)(t->ndim == 2 ? t->shape[1] : t->shape[0]);
    cJSON_ArrayForEach(x, sl) {
        mpt_shard_box b = {.tensor = (int64_t)ti};
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(x, "kind");
        int64_t off[2], len[2];
        b.kind = -1;
        for (int j = 0; cJSON_IsString(k) && j < MPT_SHARD_KINDS; j++)
            if (strcmp(k->valuestring, kind_name_[j]) == 0) b.kind = j;
        if (b.kind < 0 || !int_(cJSON_GetObjectItemCaseSensitive(x, "file"), &b.file) ||
            !int_(cJSON_GetObjectItemCaseSensitive(x, "byte"), &b.byte) ||
            !pair_read_(cJSON_GetObjectItemCaseSensitive(x, "offset"), t->ndim, 0, off) ||
            !pair_read_(cJSON_GetObjectItemCaseSensitive(x, "length"), t->ndim, 1, len))
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: a malformed slice (kind, file, "
                            "offset, length and byte are needed)", p, t->name);
        b.row0 = off[0];
        b.col0 = off[1];
        b.nrows = len[0];
        b.ncols = len[1];
        if (b.nrows <= 0 || b.ncols <= 0 || b.row0 + b.nrows > rows || b.col0 + b.ncols > cols)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: a %s slice at [%lld, %lld] of "
                            "[%lld, %lld] lies outside its shape [%lld, %lld]", p, t->name,
                            kind_name_[b.kind], (long long)b.row0, (long long)b.col0,
                            (long long)b.nrows, (long long)b.ncols, (long long)rows, (long long)cols);
        if (b.file >= s->nfiles)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: a slice in file %lld of %d",
                            p, t->name, (long long)b.file, s->nfiles);
        if (b.byte + b.nrows * b.ncols * 4 > fsize[b.file])
            return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: a slice ends past the end of "
                            "shard file %lld (%lld bytes): truncated shard?", p, t->name,
                            (long long)b.file, (long long)fsize[b.file]);
        if (s->nbox == *cap) {
            size_t nc = *cap ? 2 * *cap : 256;
            mpt_shard_box *nb = nc < MAX_BOXES_ ? realloc(s->box, nc * sizeof *nb) : NULL;
            if (!nb) return mpt_fail(err, MPT_ERR_INPUT, "%s: too many slices", p);
            s->box = nb;
            *cap = nc;
        }
        s->box[s->nbox++] = b;
    }
    return MPT_OK;
}

/* Every tensor and kind covered exactly once (boxes sorted). */
static mpt_status coverage_(mpt_shards *s, const char *p, mpt_error *err) {
    size_t nt = s->full->n;
    for (int kind = 0; kind < MPT_SHARD_KINDS; kind++)
        for (size_t ti = 0; ti < nt; ti++) {
            size_t j = (size_t)kind * nt + ti, a = s->first[j], b = s->first[j + 1];
            const mpt_tensor *t = &s->full->t[ti];
            if (kind > 0 && !s->has_opt) {
                if (a != b) return mpt_fail(err, MPT_ERR_INPUT, "%s: optimizer slices of %s but "
                                            "\"optimizer\" is false", p, t->name);
                continue;
            }
            uint64_t area = 0;
            for (size_t x = a; x < b; x++) {
                area += (uint64_t)s->box[x].nrows * (uint64_t)s->box[x].ncols;
                for (size_t y = x + 1; y < b; y++)
                    if (overlap_(&s->box[x], &s->box[y]))
                        return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: two %s slices overlap "
                                        "(at [%lld, %lld] and [%lld, %lld]): a damaged index",
                                        p, t->name, kind_name_[kind], (long long)s->box[x].row0,
                                        (long long)s->box[x].col0, (long long)s->box[y].row0,
                                        (long long)s->box[y].col0);
            }
            if (area != mpt_tensor_ckpt_numel(t))
                return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: the %s slices cover %llu of "
                                "its %zu elements: a shard is missing", p, t->name,
                                kind_name_[kind], (unsigned long long)area, mpt_tensor_ckpt_numel(t));
        }
    return MPT_OK;
}

/* *want = the XXH3-64 that manifest man lists for file name (p: the index, for messages). */
static mpt_status want_hash_(const cJSON *man, const char *name, uint64_t *want, const char *p,
                             mpt_error *err) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(man, "files");
    const cJSON *e = cJSON_IsObject(files) ? cJSON_GetObjectItemCaseSensitive(files, name) : NULL;
    const cJSON *h = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "xxh3_64") : NULL;
    if (!cJSON_IsString(h) || strlen(h->valuestring) != 16 ||
        strspn(h->valuestring, "0123456789abcdef") != 16)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: shard file %s is not listed in %s with a "
                        "checksum: its data cannot be verified; use another checkpoint", p, name,
                        mpt_ckpt_manifest_file);
    *want = strtoull(h->valuestring, NULL, 16);
    return MPT_OK;
}

/* Verifies file f's checksum against the manifest, once per reader (the first read from it on
 * this rank). */
static mpt_status check_file_(const mpt_shards *s, int f, mpt_error *err) {
    if (s->checked[f]) return MPT_OK;
    unsigned char *buf = malloc((size_t)1 << 20);
    XXH3_state_t *h = XXH3_createState();
    mpt_status st = MPT_OK;
    if (!buf || !h || XXH3_64bits_reset(h) != XXH_OK) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory hashing shard file %s", s->fname[f]);
        goto done;
    }
    for (off_t at = 0;;) {
        ssize_t k = pread(s->fd[f], buf, (size_t)1 << 20, at);
        if (k < 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "shard file %s: read failed", s->fname[f]);
            goto done;
        }
        if (k == 0) break;
        XXH3_64bits_update(h, buf, (size_t)k);
        at += k;
    }
    uint64_t got = XXH3_64bits_digest(h);
    if (got != s->want[f])
        st = mpt_fail(err, MPT_ERR_INPUT, "shard file %s: checksum mismatch (xxh3_64 %016llx, "
                      "%s says %016llx): the file is corrupt; use another checkpoint",
                      s->fname[f], (unsigned long long)got, mpt_ckpt_manifest_file,
                      (unsigned long long)s->want[f]);
    else
        s->checked[f] = 1;
done:
    XXH3_freeState(h);
    free(buf);
    return st;
}

mpt_status mpt_shards_open(mpt_shards **out, const char *dir, const mpt_param_table *full,
                           mpt_error *err) {
    char p[PATH_MAX], fp[PATH_MAX], mp[PATH_MAX];
    cJSON *root = NULL, *man = NULL;   /* owned: the index, manifest.json */
    int64_t *fsize = NULL;
    size_t cap = 0;
    *out = NULL;
    if (!mpt_ckpt_join(p, sizeof p, dir, MPT_SHARD_INDEX_FILE))
        return mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    mpt_shards *s = calloc(1, sizeof *s);
    if (!s) return mpt_fail(err, MPT_ERR_RUN, "out of memory opening %s", p);
    s->full = full;
    mpt_status st = mpt_ckpt_read_json(p, &root, err);
    if (!st && !mpt_ckpt_join(mp, sizeof mp, dir, mpt_ckpt_manifest_file))
        st = mpt_fail(err, MPT_ERR_INPUT, "checkpoint %s: path too long", dir);
    if (!st) st = mpt_ckpt_read_json(mp, &man, err);
    if (st) goto fail;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(root, "optimizer");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "mptrain-shards") != 0 ||
        !cJSON_IsNumber(ver) || ver->valuedouble != 1 || !cJSON_IsArray(files) ||
        !cJSON_IsArray(tensors) || !cJSON_IsBool(opt)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a version-1 mptrain shard index (format, "
                      "version, optimizer, files and tensors are needed)", p);
        goto fail;
    }
    s->has_opt = cJSON_IsTrue(opt);
    s->nfiles = cJSON_GetArraySize(files);
    if (s->nfiles < 1 || s->nfiles > MAX_FILES_) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: %d shard files", p, s->nfiles);
        goto fail;
    }
    s->fd = malloc((size_t)s->nfiles * sizeof *s->fd);
    s->want = calloc((size_t)s->nfiles, sizeof *s->want);
    s->checked = calloc((size_t)s->nfiles, 1);
    s->fname = calloc((size_t)s->nfiles, sizeof *s->fname);
    fsize = calloc((size_t)s->nfiles, sizeof *fsize);
    s->first = calloc((size_t)MPT_SHARD_KINDS * full->n + 1, sizeof *s->first);
    if (!s->fd || !s->want || !s->checked || !s->fname || !fsize || !s->first) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory opening %s", p);
        goto fail;
    }
    for (int i = 0; i < s->nfiles; i++) s->fd[i] = -1;
    for (int i = 0; i < s->nfiles; i++) {
        const cJSON *f = cJSON_GetArrayItem(files, i);
        struct stat sb;
        if (!cJSON_IsString(f) || !f->valuestring[0] || strchr(f->valuestring, '/') ||
            f->valuestring[0] == '.' || !mpt_ckpt_join(fp, sizeof fp, dir, f->valuestring)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: file %d is not a plain file name", p, i);
            goto fail;
        }
        if ((s->fd[i] = open(fp, O_RDONLY | O_CLOEXEC)) < 0 || fstat(s->fd[i], &sb) != 0 ||
            !S_ISREG(sb.st_mode)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: shard file %s is missing or unreadable: use "
                          "another checkpoint", p, fp);
            goto fail;
        }
        fsize[i] = (int64_t)sb.st_size;
        snprintf(s->fname[i], sizeof s->fname[i], "%.63s", f->valuestring);
        if ((st = want_hash_(man, f->valuestring, &s->want[i], p, err))) goto fail;
    }
    /* tensors: every one of the model, by name, with its shape */
    char *seen = calloc(full->n + 1, 1);
    if (!seen) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory opening %s", p);
        goto fail;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, tensors) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(x, "shape");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(x, "dtype");
        const mpt_tensor *t = cJSON_IsString(nm) ? mpt_params_find(full, nm->valuestring) : NULL;
        if (!t) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%.96s' is not in this model (an index "
                          "from another model?)", p, cJSON_IsString(nm) ? nm->valuestring : "?");
            break;
        }
        size_t ti = (size_t)(t - full->t);
        int64_t shp[2];
        if (!pair_read_(sh, t->ndim, 1, shp) || shp[0] != (int64_t)(t->ndim == 2 ? t->shape[0] : 1) ||
            shp[1] != (int64_t)(t->ndim == 2 ? t->shape[1] : t->shape[0])) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: its shape differs from this "
                          "model's (an index from another model?)", p, t->name);
            break;
        }
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") != 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s: dtype must be F32", p, t->name);
            break;
        }
        if (seen[ti]++) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s listed twice", p, t->name);
            break;
        }
        if ((st = slices_(s, p, ti, cJSON_GetObjectItemCaseSensitive(x, "slices"), fsize, &cap,
                          err)))
            break;
    }
    for (size_t i = 0; !st && i < full->n; i++)
        if (!seen[i])
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor %s is missing", p, full->t[i].name);
    free(seen);
    if (st) goto fail;
    qsort(s->box, s->nbox, sizeof *s->box, cmp_box_);
    for (size_t k = 0, j = 0; j <= (size_t)MPT_SHARD_KINDS * full->n; j++) {
        while (k < s->nbox && (size_t)(s->box[k].kind * (int64_t)full->n + s->box[k].tensor) < j) k++;
        s->first[j] = k;
    }
    if ((st = coverage_(s, p, err))) goto fail;
    cJSON_Delete(root);
    cJSON_Delete(man);
    free(fsize);
    *out = s;
    return MPT_OK;
fail:
    cJSON_Delete(root);
    cJSON_Delete(man);
    free(fsize);
    mpt_shards_close(s);
    return st;
}

mpt_status mpt_shards_read(const mpt_shards *s, int kind, size_t i, size_t first, size_t n,
                           float *out, mpt_error *err) {
    if (kind < 0 || kind >= MPT_SHARD_KINDS || i >= s->full->n)
        return mpt_fail(err, MPT_ERR_RUN, "shard read: no tensor %d/%zu", kind, i);
    const mpt_tensor *t = &s->full->t[i];
    size_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0], last = first + n;
    if (n == 0) return MPT_OK;
    size_t j = (size_t)kind * s->full->n + i;
    for (size_t x = s->first[j]; x < s->first[j + 1]; x++) {
        const mpt_shard_box *b = &s->box[x];
        size_t r0 = (size_t)b->row0, r1 = r0 + (size_t)b->nrows;
        size_t ra = first / cols, rb = (last - 1) / cols + 1;
        if (ra > r0) r0 = ra;
        if (rb < r1) r1 = rb;
        for (size_t r = r0; r < r1; r++) {
            /* columns of row r inside both the box and [first, last) */
            size_t c0 = (size_t)b->col0, c1 = c0 + (size_t)b->ncols;
            size_t lo = r * cols, hi = lo + cols;
            if (first > lo && first - lo > c0) c0 = first - lo;
            if (last < hi && last - lo < c1) c1 = last - lo;
            if (c1 <= c0) continue;
            off_t at = (off_t)b->byte +
                       (off_t)(((r - (size_t)b->row0) * (size_t)b->ncols + (c0 - (size_t)b->col0)) * 4);
            mpt_status cs = check_file_(s, (int)b->file, err);
            if (cs) return cs;
            size_t want = (c1 - c0) * 4, got = 0;
            char *dst = (char *)(out + (lo + c0 - first));
            while (got < want) {
                ssize_t k = pread(s->fd[b->file], dst + got, want - got, at + (off_t)got);
                if (k <= 0)
                    return mpt_fail(err, MPT_ERR_INPUT, "tensor %s: reading shard file %lld "
                                    "failed (truncated?)", t->name, (long long)b->file);
                got += (size_t)k;
            }
        }
    }
    return MPT_OK;
}
