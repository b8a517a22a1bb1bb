/* data.c — the token stream over mapped files and batches in the contract's order (see
 * data.h). */
#include "train/data.h"

#include <stdlib.h>
#include <string.h>

void mpt_data_free(mpt_data *d) {
    if (!d) return;
    for (int f = 0; d->files && f < d->nf; f++) mpt_tokfile_free(&d->files[f]);
    free(d->files);
    free(d->start);
    memset(d, 0, sizeof *d);
    d->max_token = -1;
}

mpt_status mpt_data_open(mpt_data *d, const char *const *paths, int n, int vocab,
                         mpt_error *err) {
    memset(d, 0, sizeof *d);
    d->max_token = -1;
    if (n < 1) return mpt_fail(err, MPT_ERR_INPUT, "no --data file given");
    d->files = calloc((size_t)n, sizeof *d->files);
    d->start = calloc((size_t)n + 1, sizeof *d->start);
    if (!d->files || !d->start) {
        mpt_data_free(d);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for %d data files", n);
    }
    for (int f = 0; f < n; f++) {
        mpt_status st = mpt_tokfile_read(paths[f], vocab, &d->files[f], err);
        if (st) {
            mpt_data_free(d);
            return st;
        }
        d->nf = f + 1;
        d->start[f] = d->total;
        d->total += d->files[f].n; /* each file < 2^31 tokens, n < 2^31 files: no overflow */
        d->start[f + 1] = d->total;
        if (d->files[f].max_token > d->max_token) d->max_token = d->files[f].max_token;
    }
    return MPT_OK;
}

mpt_data_view mpt_data_all(const mpt_data *d) {
    return (mpt_data_view){.d = d, .first = 0, .n = d->total};
}

mpt_data_view mpt_data_range(const mpt_data *d, size_t first, size_t n) {
    if (first > d->total) first = d->total;
    if (n > d->total - first) n = d->total - first;
    return (mpt_data_view){.d = d, .first = first, .n = n};
}

mpt_status mpt_data_check(const mpt_data_view *v, int T, const char *what, mpt_error *err) {
    if (v->n <= (size_t)T + 1)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s holds %zu tokens, fewer than one sequence of %d + 1: use more text or "
                        "a shorter --seq-len",
                        what, v->n, T);
    return MPT_OK;
}

/* The file holding stream token pos (binary search over the offsets). */
static int file_of_(const mpt_data *d, size_t pos) {
    int lo = 0, hi = d->nf - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->start[mid] <= pos) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Copies stream tokens [pos, pos + len) into out (as int32), across file boundaries. */
static void copy_tokens_(const mpt_data *d, size_t pos, size_t len, int32_t *out) {
    int f = file_of_(d, pos);
    while (len > 0) {
        while (pos >= d->start[f + 1]) f++; /* skips empty files too */
        size_t off = pos - d->start[f], m = d->start[f + 1] - pos;
        if (m > len) m = len;
        const uint16_t *src = d->files[f].tokens + off;
        for (size_t i = 0; i < m; i++) out[i] = src[i];
        out += m;
        pos += m;
        len -= m;
    }
}

void mpt_data_batch(const mpt_data_view *v, long step, int B, int first, int count, int T,
                    int32_t *inputs, int32_t *targets) {
    unsigned __int128 span = v->n - (size_t)T - 1;
    for (int i = 0; i < count; i++) {
        unsigned __int128 g = (unsigned __int128)step * (unsigned)B + (unsigned)(first + i);
        size_t start = v->first + (size_t)((g * (unsigned)T) % span);
        if (inputs) copy_tokens_(v->d, start, (size_t)T, inputs + (size_t)i * T);
        if (targets) copy_tokens_(v->d, start + 1, (size_t)T, targets + (size_t)i * T);
    }
}

void mpt_data_batch_cp(const mpt_data_view *v, long step, int B, int first, int count, int T,
                       int cp, int cp_rank, int32_t *inputs, int32_t *targets) {
    if (cp <= 1) {
        mpt_data_batch(v, step, B, first, count, T, inputs, targets);
        return;
    }
    unsigned __int128 span = v->n - (size_t)T - 1;
    size_t Tc = (size_t)T / (2 * (size_t)cp), Tl = 2 * Tc;
    size_t chunk[2] = {(size_t)cp_rank, 2 * (size_t)cp - 1 - (size_t)cp_rank};
    for (int i = 0; i < count; i++) {
        unsigned __int128 g = (unsigned __int128)step * (unsigned)B + (unsigned)(first + i);
        size_t start = v->first + (size_t)((g * (unsigned)T) % span);
        for (int k = 0; k < 2; k++) {
            size_t at = start + chunk[k] * Tc, out = (size_t)i * Tl + (size_t)k * Tc;
            if (inputs) copy_tokens_(v->d, at, Tc, inputs + out);
            if (targets) copy_tokens_(v->d, at + 1, Tc, targets + out);
        }
    }
}

void mpt_data_buffers(size_t tokens, int32_t **inputs, int32_t **targets, mpt_buflist *l) {
    mpt_buflist_add(l, "inputs", MPT_MEM_WORKSPACE, MPT_I32, tokens, (void **)inputs);
    mpt_buflist_add(l, "targets", MPT_MEM_WORKSPACE, MPT_I32, tokens, (void **)targets);
}
