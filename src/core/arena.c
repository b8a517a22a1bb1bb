/* arena.c — accounted allocation (see arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

const char *mpt_mem_kind_name(mpt_mem_kind k) {
    static const char *names[MPT_MEM_KINDS] = {"params", "grads", "optimizer", "activations",
                                               "workspace"};
    return k < MPT_MEM_KINDS ? names[k] : "?";
}

void mpt_arena_init(mpt_arena *a, size_t limit) {
    memset(a, 0, sizeof *a);
    a->limit = limit;
}

mpt_status mpt_arena_alloc(mpt_arena *a, mpt_mem_kind kind, size_t count, mpt_dtype dtype,
                           void *out, mpt_error *err) {
    size_t bytes, total, padded, elem = mpt_dtype_size(dtype);
    *(void **)out = NULL;
    if (!mpt_size_mul(count, elem, &bytes) || !mpt_size_add(a->in_use_total, bytes, &total) ||
        !mpt_size_add(bytes, 63, &padded))
        return mpt_fail(err, MPT_ERR_RUN, "allocation of %zu x %zu bytes overflows", count, elem);
    if (a->limit && total > a->limit)
        return mpt_fail(err, MPT_ERR_RUN,
                        "out of the memory limit: %s needs %zu more bytes, %zu of %zu in use",
                        mpt_mem_kind_name(kind), bytes, a->in_use_total, a->limit);
    size_t rounded = padded / 64 * 64;
    void *p = aligned_alloc(64, rounded > 0 ? rounded : 64);
    if (!p)
        return mpt_fail(err, MPT_ERR_RUN, "out of memory allocating %zu bytes of %s", bytes,
                        mpt_mem_kind_name(kind));
    memset(p, 0, bytes);
    a->in_use[kind] += bytes;
    a->in_use_total = total;
    if (a->in_use[kind] > a->peak[kind]) a->peak[kind] = a->in_use[kind];
    if (total > a->peak_total) a->peak_total = total;
    *(void **)out = p;
    return MPT_OK;
}

void mpt_arena_release(mpt_arena *a, mpt_mem_kind kind, void *p, size_t count, mpt_dtype dtype) {
    if (!p) return;
    size_t bytes = count * mpt_dtype_size(dtype);
    a->in_use[kind] -= bytes;
    a->in_use_total -= bytes;
    free(p);
}
