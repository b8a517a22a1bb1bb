/* safetensors.c — safetensors writer (fp32) and validating reader (see safetensors.h). */
#include "train/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes tensor data in host order: little-endian hosts only"
#endif

#define MAX_HEADER_ ((size_t)100 << 20)   /* as the reference implementation: 100 MB */
#define MAX_EXACT_ 9007199254740992.0     /* 2^53: JSON numbers above this lose integers */

/* ---------------------------------------------------------------- writing */

/* Elements of e, checked for overflow (and so that the byte count fits too). */
static int entry_numel_(const mpt_st_entry *e, size_t *out) {
    size_t n = 1, bytes;
    for (int d = 0; d < e->ndim; d++)
        if (!mpt_size_mul(n, e->shape[d], &n)) return 0;
    if (!mpt_size_mul(n, sizeof(float), &bytes)) return 0;
    *out = n;
    return 1;
}

/* Builds the header JSON for e[0..n) (order kept) into a malloc'd string the caller frees. */
static mpt_status header_json_(const char *what, const mpt_st_entry *e, size_t n,
                               const mpt_st_meta *meta, size_t n_meta, char **out,
                               mpt_error *err) {
    mpt_status st = MPT_OK;
    cJSON *root = cJSON_CreateObject(), *mo = NULL;
    char raw[64 + 24 * MPT_ST_MAX_DIM];
    size_t offset = 0;
    *out = NULL;
    if (!root) goto oom;
    if (n_meta > 0) {
        if (!(mo = cJSON_AddObjectToObject(root, "__metadata__"))) goto oom;
        for (size_t i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(mo, meta[i].key, meta[i].value)) goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        size_t numel, bytes, end;
        if (!e[i].name || !e[i].name[0] || strcmp(e[i].name, "__metadata__") == 0 ||
            e[i].ndim < 0 || e[i].ndim > MPT_ST_MAX_DIM) {
            st = mpt_fail(err, MPT_ERR_RUN, "%s: tensor %zu has an invalid name or rank", what, i);
            goto cleanup;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(e[i].name, e[j].name) == 0) {
                st = mpt_fail(err, MPT_ERR_RUN, "%s: tensor name '%s' appears twice", what,
                              e[i].name);
                goto cleanup;
            }
        if (!entry_numel_(&e[i], &numel) || !mpt_size_mul(numel, sizeof(float), &bytes) ||
            !mpt_size_add(offset, bytes, &end) || (double)end > MAX_EXACT_) {
            st = mpt_fail(err, MPT_ERR_RUN, "%s: tensor '%s' is too large", what, e[i].name);
            goto cleanup;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o) goto oom;
        if (!cJSON_AddItemToObject(root, e[i].name, o)) {   /* on success root owns o */
            cJSON_Delete(o);
            goto oom;
        }
        if (!cJSON_AddStringToObject(o, "dtype", "F32")) goto oom;
        int len = snprintf(raw, sizeof raw, "[");
        for (int d = 0; d < e[i].ndim; d++)
            len += snprintf(raw + len, sizeof raw - (size_t)len, "%s%zu", d ? "," : "",
                            e[i].shape[d]);
        snprintf(raw + len, sizeof raw - (size_t)len, "]");
        if (!cJSON_AddRawToObject(o, "shape", raw)) goto oom;
        snprintf(raw, sizeof raw, "[%zu,%zu]", offset, end);
        if (!cJSON_AddRawToObject(o, "data_offsets", raw)) goto oom;
        offset = end;
    }
    if (!(*out = cJSON_PrintUnformatted(root))) goto oom;
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "%s: out of memory building the safetensors header", what);
cleanup:
    cJSON_Delete(root);
    return st;
}

/* Writes the length and the padded header of e[0..n) to f; *elements = the data elements. */
static mpt_status write_header_(FILE *f, const char *what, const mpt_st_entry *e, size_t n,
                                const mpt_st_meta *meta, size_t n_meta, size_t *elements,
                                mpt_error *err) {
    char *header = NULL;   /* owned, from header_json_ */
    mpt_status st = header_json_(what, e, n, meta, n_meta, &header, err);
    if (st != MPT_OK) return st;
    size_t len = strlen(header), padded = (len + 7) & ~(size_t)7, total = 0;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    for (size_t i = 0; i < n; i++) {
        size_t numel = 0;
        entry_numel_(&e[i], &numel);   /* checked in header_json_, and the sum is too */
        total += numel;
    }
    *elements = total;
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, len, f) != len ||
        fwrite(spaces, 1, padded - len, f) != padded - len)
        st = mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", what, strerror(errno));
    free(header);
    return st;
}

mpt_status mpt_safetensors_write_stream(FILE *f, const char *what, const mpt_st_entry *e,
                                        size_t n, const mpt_st_meta *meta, size_t n_meta,
                                        mpt_error *err) {
    size_t total;
    mpt_status st = write_header_(f, what, e, n, meta, n_meta, &total, err);
    for (size_t i = 0; st == MPT_OK && i < n; i++) {
        size_t numel = 0;
        entry_numel_(&e[i], &numel);
        if (numel && fwrite(e[i].data, sizeof(float), numel, f) != numel)
            st = mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", what, strerror(errno));
    }
    return st;
}

mpt_status mpt_st_writer_open(mpt_st_writer *w, const char *path, const mpt_st_entry *e,
                              size_t n, const mpt_st_meta *meta, size_t n_meta, mpt_error *err) {
    memset(w, 0, sizeof *w);
    if (!(w->path = strdup(path))) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    if (!(w->f = fopen(path, "wb"))) {
        mpt_status st = mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
        free(w->path);
        w->path = NULL;
        return st;
    }
    mpt_status st = write_header_(w->f, path, e, n, meta, n_meta, &w->expect, err);
    if (st != MPT_OK) mpt_st_writer_abort(w);
    return st;
}

mpt_status mpt_st_writer_put(mpt_st_writer *w, const float *data, size_t n, mpt_error *err) {
    if (!w->f) return mpt_fail(err, MPT_ERR_RUN, "safetensors writer: not open");
    if (n > w->expect - w->written)
        return mpt_fail(err, MPT_ERR_RUN, "%s: %zu more elements than the header announces",
                        w->path, n - (w->expect - w->written));
    if (n && fwrite(data, sizeof(float), n, w->f) != n)
        return mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", w->path, strerror(errno));
    w->written += n;
    return MPT_OK;
}

mpt_status mpt_st_writer_close(mpt_st_writer *w, int do_fsync, mpt_error *err) {
    mpt_status st = MPT_OK;
    if (!w->f) return mpt_fail(err, MPT_ERR_RUN, "safetensors writer: not open");
    if (w->written != w->expect)
        st = mpt_fail(err, MPT_ERR_RUN, "%s: %zu of %zu elements written", w->path, w->written,
                      w->expect);
    else if (fflush(w->f) != 0 || (do_fsync && fsync(fileno(w->f)) != 0))
        st = mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", w->path, strerror(errno));
    int closed = fclose(w->f);
    w->f = NULL;
    if (closed != 0 && st == MPT_OK)
        st = mpt_fail(err, MPT_ERR_RUN, "%s: close failed: %s", w->path, strerror(errno));
    if (st != MPT_OK) unlink(w->path);
    free(w->path);
    memset(w, 0, sizeof *w);
    return st;
}

void mpt_st_writer_abort(mpt_st_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->path);
    }
    free(w->path);
    memset(w, 0, sizeof *w);
}

mpt_status mpt_safetensors_write(const char *path, const mpt_st_entry *e, size_t n,
                                 const mpt_st_meta *meta, size_t n_meta, int do_fsync,
                                 mpt_error *err) {
    mpt_st_writer w;
    mpt_status st = mpt_st_writer_open(&w, path, e, n, meta, n_meta, err);
    for (size_t i = 0; st == MPT_OK && i < n; i++) {
        size_t numel = 0;
        entry_numel_(&e[i], &numel);   /* checked when the header was built */
        st = mpt_st_writer_put(&w, e[i].data, numel, err);
    }
    if (st == MPT_OK) return mpt_st_writer_close(&w, do_fsync, err);
    mpt_st_writer_abort(&w);
    return st;
}

/* ---------------------------------------------------------------- reading */

static const struct { const char *name; size_t size; mpt_st_dtype dtype; } dtypes_[] = {
    {"F32", 4, MPT_ST_F32},   {"F16", 2, MPT_ST_F16},   {"BF16", 2, MPT_ST_BF16},
    {"F64", 8, MPT_ST_F64},   {"BOOL", 1, MPT_ST_OTHER}, {"U8", 1, MPT_ST_OTHER},
    {"I8", 1, MPT_ST_OTHER},  {"F8_E4M3", 1, MPT_ST_OTHER}, {"F8_E5M2", 1, MPT_ST_OTHER},
    {"I16", 2, MPT_ST_OTHER}, {"U16", 2, MPT_ST_OTHER}, {"I32", 4, MPT_ST_OTHER},
    {"U32", 4, MPT_ST_OTHER}, {"I64", 8, MPT_ST_OTHER}, {"U64", 8, MPT_ST_OTHER},
};

/* A non-negative integral JSON number that a double holds exactly. */
static int json_size_(const cJSON *j, size_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > MAX_EXACT_ || d != floor(d)) return 0;
    *out = (size_t)d;
    return 1;
}

/* Fills t from header entry j (named j->string); messages name the file and tensor. */
static mpt_status parse_entry_(const mpt_safetensors *f, const cJSON *j, mpt_st_info *t,
                               mpt_error *err) {
    const char *p = f->path, *name = j->string;
    if (!cJSON_IsObject(j))
        return mpt_fail(err, MPT_ERR_INPUT, "%s: header entry '%s' is not an object", p, name);
    if (!(t->name = strdup(name))) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s: tensor '%s' lacks a string \"dtype\", an array \"shape\" or an "
                        "array \"data_offsets\"", p, name);
    size_t k = 0, nd = sizeof dtypes_ / sizeof dtypes_[0];
    while (k < nd && strcmp(dtypes_[k].name, dt->valuestring) != 0) k++;
    if (k == nd)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has unknown dtype '%.16s'", p, name,
                        dt->valuestring);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dtypes_[k].name);
    t->dtype = dtypes_[k].dtype;
    t->elem_size = dtypes_[k].size;
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > MPT_ST_MAX_DIM)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", p,
                        name, ndim, MPT_ST_MAX_DIM);
    t->ndim = ndim;
    t->numel = 1;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, sh) {
        if (!json_size_(d, &t->shape[i]) || !mpt_size_mul(t->numel, t->shape[i], &t->numel))
            return mpt_fail(err, MPT_ERR_INPUT,
                            "%s: tensor '%s': shape entry %d is not a valid size", p, name, i);
        i++;
    }
    size_t bytes;
    if (cJSON_GetArraySize(off) != 2 || !json_size_(off->child, &t->begin) ||
        !json_size_(off->child->next, &t->end) || t->end < t->begin)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s: tensor '%s': data_offsets must be two sizes [begin, end], begin <= "
                        "end", p, name);
    if (t->end > f->data_size)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s: tensor '%s': data_offsets [%zu, %zu] run past the %zu-byte data "
                        "buffer (file truncated?)", p, name, t->begin, t->end, f->data_size);
    if (!mpt_size_mul(t->numel, t->elem_size, &bytes) || bytes != t->end - t->begin)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s: tensor '%s': data_offsets span %zu bytes but dtype %s and its shape "
                        "need %zu elements of %zu bytes", p, name, t->end - t->begin,
                        t->dtype_name, t->numel, t->elem_size);
    return MPT_OK;
}

static int cmp_begin_(const void *a, const void *b) {
    const mpt_st_info *x = *(const mpt_st_info *const *)a, *y = *(const mpt_st_info *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name_(const void *a, const void *b) {
    const mpt_st_info *x = *(const mpt_st_info *const *)a, *y = *(const mpt_st_info *const *)b;
    return strcmp(x->name, y->name);
}

/* Parses the header of the mapped file into f->t / f->meta and checks names and overlaps. */
static mpt_status parse_header_(mpt_safetensors *f, const char *text, size_t hlen,
                               mpt_error *err) {
    mpt_status st = MPT_OK;
    const char *end = NULL, *p = f->path;
    const mpt_st_info **order = NULL;   /* owned: pointers into f->t for sorting */
    cJSON *root = cJSON_ParseWithLengthOpts(text, hlen, &end, 0);   /* owned */
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= text && at <= text + hlen ? (long)(at - text) : -1;
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: the header is not valid JSON (error near byte %ld "
                      "of %zu)", p, pos, hlen);
        goto cleanup;
    }
    for (const char *q = end; q && q < text + hlen; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: the header has bytes after its JSON object", p);
            goto cleanup;
        }
    if (!cJSON_IsObject(root)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: the header is not a JSON object", p);
        goto cleanup;
    }
    size_t count = (size_t)cJSON_GetArraySize(root);
    f->t = calloc(count + 1, sizeof *f->t);
    order = calloc(count + 1, sizeof *order);
    if (!f->t || !order) goto oom;
    const cJSON *j;
    cJSON_ArrayForEach(j, root) {
        if (strcmp(j->string, "__metadata__") != 0) {
            st = parse_entry_(f, j, &f->t[f->n], err);
            f->n++;   /* counted even on failure so that free releases its name */
            if (st != MPT_OK) goto cleanup;
            continue;
        }
        if (!cJSON_IsObject(j) || f->meta) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: \"__metadata__\" must be one object", p);
            goto cleanup;
        }
        size_t nm = (size_t)cJSON_GetArraySize(j);
        if (!(f->meta = calloc(nm + 1, sizeof *f->meta))) goto oom;
        const cJSON *m;
        cJSON_ArrayForEach(m, j) {
            if (!cJSON_IsString(m)) {
                st = mpt_fail(err, MPT_ERR_INPUT, "%s: metadata '%s' is not a string", p,
                              m->string);
                goto cleanup;
            }
            mpt_st_meta *kv = &f->meta[f->n_meta++];
            kv->key = strdup(m->string);
            kv->value = strdup(m->valuestring);
            if (!kv->key || !kv->value) goto oom;
        }
    }
    for (size_t i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, f->n, sizeof *order, cmp_name_);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' appears twice in the header", p,
                          order[i]->name);
            goto cleanup;
        }
    qsort(order, f->n, sizeof *order, cmp_begin_);
    const mpt_st_info *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (order[i]->begin == order[i]->end) continue;   /* empty tensors occupy nothing */
        if (prev && order[i]->begin < prev->end) {
            st = mpt_fail(err, MPT_ERR_INPUT,
                          "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", p,
                          prev->name, prev->begin, prev->end, order[i]->name, order[i]->begin,
                          order[i]->end);
            goto cleanup;
        }
        prev = order[i];
    }
    goto cleanup;
oom:
    st = mpt_fail(err, MPT_ERR_RUN, "%s: out of memory reading the header", p);
cleanup:
    free(order);
    cJSON_Delete(root);
    return st;
}

/* Reads bytes [off, off + n) of f's file into buf; a short file is MPT_ERR_INPUT. */
static mpt_status pread_all_(const mpt_safetensors *f, void *buf, size_t n, size_t off,
                             mpt_error *err) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = pread(f->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return mpt_fail(err, MPT_ERR_RUN, "%s: read failed: %s", f->path, strerror(errno));
        if (got == 0)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: the file ended early (truncated?)", f->path);
        p += got;
        n -= (size_t)got;
        off += (size_t)got;
    }
    return MPT_OK;
}

mpt_status mpt_safetensors_open(mpt_safetensors *f, const char *path, mpt_error *err) {
    mpt_status st = MPT_OK;
    struct stat sb;
    char *text = NULL;   /* owned: the header */
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);   /* owned by f from here */
    if (fd < 0) return mpt_fail(err, MPT_ERR_INPUT, "cannot open %s: %s", path, strerror(errno));
    f->fd = fd;
    f->has_fd = 1;
    if (!(f->path = strdup(path))) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
        goto cleanup;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a regular file", path);
        goto cleanup;
    }
    if (sb.st_size < 8) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: %lld bytes is too short for a safetensors file "
                      "(truncated?)", path, (long long)sb.st_size);
        goto cleanup;
    }
    f->file_size = (size_t)sb.st_size;
    unsigned char len8[8];
    if ((st = pread_all_(f, len8, 8, 0, err)) != MPT_OK) goto cleanup;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    if (hlen < 2 || hlen > MAX_HEADER_ || hlen > f->file_size - 8) {
        st = mpt_fail(err, MPT_ERR_INPUT,
                      "%s: header length %llu does not fit the %zu-byte file (truncated or not "
                      "a safetensors file?)", path, (unsigned long long)hlen, f->file_size);
        goto cleanup;
    }
    if (!(text = malloc((size_t)hlen + 1))) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: out of memory reading the header", path);
        goto cleanup;
    }
    if ((st = pread_all_(f, text, (size_t)hlen, 8, err)) != MPT_OK) goto cleanup;
    text[hlen] = '\0';
    f->data_offset = 8 + (size_t)hlen;
    f->data_size = f->file_size - 8 - (size_t)hlen;
    st = parse_header_(f, text, (size_t)hlen, err);
cleanup:
    free(text);
    if (st != MPT_OK) mpt_safetensors_free(f);
    return st;
}

void mpt_safetensors_free(mpt_safetensors *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free((char *)f->meta[i].key);
        free((char *)f->meta[i].value);
    }
    if (f->has_fd) close(f->fd);
    free(f->t);
    free(f->meta);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const mpt_st_info *mpt_safetensors_find(const mpt_safetensors *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *mpt_safetensors_meta(const mpt_safetensors *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

float mpt_f16_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {   /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (man << 13);   /* inf / NaN */
    else bits = sign | ((exp + 112u) << 23) | (man << 13);    /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float mpt_bf16_to_f32(unsigned short h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts n elements of dtype dt from src (possibly unaligned: memcpy only) to out. */
static void convert_(mpt_st_dtype dt, const unsigned char *src, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (dt == MPT_ST_F64) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d;
        } else {
            unsigned short h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = dt == MPT_ST_F16 ? mpt_f16_to_f32(h) : mpt_bf16_to_f32(h);
        }
    }
}

mpt_status mpt_safetensors_read_f32_range(const mpt_safetensors *f, const mpt_st_info *t,
                                          size_t first, size_t n, float *out, mpt_error *err) {
    if (first > t->numel || n > t->numel - first)
        return mpt_fail(err, MPT_ERR_RUN, "%s: tensor '%s' has %zu elements, asked for [%zu, "
                        "+%zu)", f->path, t->name, t->numel, first, n);
    size_t off = f->data_offset + t->begin + first * t->elem_size;
    switch (t->dtype) {
    case MPT_ST_F32:
        return n ? pread_all_(f, out, n * sizeof(float), off, err) : MPT_OK;
    case MPT_ST_F16:
    case MPT_ST_BF16:
    case MPT_ST_F64: {
        /* through a small stack buffer: the conversion needs no memory of its own */
        unsigned char raw[16384];
        size_t per = sizeof raw / t->elem_size;
        for (size_t i = 0; i < n; i += per) {
            size_t m = n - i < per ? n - i : per;
            mpt_status st = pread_all_(f, raw, m * t->elem_size, off + i * t->elem_size, err);
            if (st != MPT_OK) return st;
            convert_(t->dtype, raw, out + i, m);
        }
        return MPT_OK;
    }
    case MPT_ST_OTHER:
        break;
    }
    return mpt_fail(err, MPT_ERR_INPUT, "%s: tensor '%s' has dtype %s, which cannot be read as "
                    "floating point", f->path, t->name, t->dtype_name);
}

mpt_status mpt_safetensors_read_f32(const mpt_safetensors *f, const mpt_st_info *t, float *out,
                                    size_t n, mpt_error *err) {
    if (n != t->numel)
        return mpt_fail(err, MPT_ERR_RUN, "%s: tensor '%s' has %zu elements, asked for %zu",
                        f->path, t->name, t->numel, n);
    return mpt_safetensors_read_f32_range(f, t, 0, n, out, err);
}
