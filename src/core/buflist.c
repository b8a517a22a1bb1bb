/* buflist.c — lists of buffers shared by the memory plan and the allocations (see buflist.h). */
#include "core/buflist.h"

#include <stdlib.h>
#include <string.h>

void mpt_buflist_init(mpt_buflist *l) { memset(l, 0, sizeof *l); }

void mpt_buflist_add(mpt_buflist *l, const char *name, mpt_mem_kind kind, mpt_dtype dtype,
                     size_t count, void **dst) {
    if (l->failed) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        mpt_buf *b = realloc(l->b, cap * sizeof *b);
        if (!b) {
            l->failed = 1;
            return;
        }
        l->b = b;
        l->cap = cap;
    }
    l->b[l->n++] = (mpt_buf){name, kind, dtype, count, dst};
}

void mpt_buflist_append(mpt_buflist *l, const mpt_buflist *src) {
    if (src->failed) l->failed = 1;
    for (size_t i = 0; i < src->n; i++) {
        const mpt_buf *b = &src->b[i];
        mpt_buflist_add(l, b->name, b->kind, b->dtype, b->count, b->dst);
    }
}

int mpt_buflist_bytes(const mpt_buflist *l, size_t bytes[MPT_MEM_KINDS]) {
    if (l->failed) return 0;
    for (size_t i = 0; i < l->n; i++) {
        size_t n;
        const mpt_buf *b = &l->b[i];
        if (!mpt_size_mul(b->count, mpt_dtype_size(b->dtype), &n) ||
            !mpt_size_add(bytes[b->kind], n, &bytes[b->kind]))
            return 0;
    }
    return 1;
}

mpt_status mpt_buflist_alloc(const mpt_buflist *l, mpt_arena *a, mpt_error *err) {
    if (l->failed) return mpt_fail(err, MPT_ERR_RUN, "out of memory listing buffers");
    for (size_t i = 0; i < l->n; i++) {
        const mpt_buf *b = &l->b[i];
        if (!b->dst) continue;
        *b->dst = NULL;
        if (!b->count) continue;
        mpt_status st = mpt_arena_alloc(a, b->kind, b->count, b->dtype, b->dst, err);
        if (st) {
            mpt_error_prefix(err, "buffer %s", b->name);
            for (size_t k = 0; k < i; k++) {
                const mpt_buf *c = &l->b[k];
                if (!c->dst) continue;
                mpt_arena_release(a, c->kind, *c->dst, c->count, c->dtype);
                *c->dst = NULL;
            }
            return st;
        }
    }
    return MPT_OK;
}

void mpt_buflist_release(const mpt_buflist *l, mpt_arena *a) {
    for (size_t i = 0; i < l->n; i++) {
        const mpt_buf *b = &l->b[i];
        if (!b->dst || !*b->dst) continue;
        mpt_arena_release(a, b->kind, *b->dst, b->count, b->dtype);
        *b->dst = NULL;
    }
}

void mpt_buflist_free(mpt_buflist *l) {
    if (!l) return;
    free(l->b);
    memset(l, 0, sizeof *l);
}
