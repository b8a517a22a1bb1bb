/* arena.h — per-rank memory with exact byte accounting by category.
 *
 * Every tensor the engine holds comes from here. The arena records, per category, the bytes
 * handed out now and their high-water mark (the measured peak: what was actually handed out,
 * not what was reserved), so that a wrong memory plan shows up as a difference between the
 * plan (plan/memplan.h) and the peak. A limit (--mem-limit) makes an allocation that would
 * take the total over it fail with MPT_ERR_RUN. Memory is 64-byte aligned and zeroed.
 * Not thread-safe: allocate from one thread. */
#ifndef MPT_ARENA_H
#define MPT_ARENA_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/status.h"

typedef enum mpt_mem_kind {
    MPT_MEM_PARAMS,
    MPT_MEM_GRADS,
    MPT_MEM_OPTIMIZER,
    MPT_MEM_ACTIVATIONS,
    MPT_MEM_WORKSPACE,
    MPT_MEM_KINDS
} mpt_mem_kind;

const char *mpt_mem_kind_name(mpt_mem_kind k);

typedef struct mpt_arena {
    size_t limit;                    /* 0 = none */
    size_t in_use[MPT_MEM_KINDS];
    size_t peak[MPT_MEM_KINDS];
    size_t in_use_total, peak_total;
} mpt_arena;

void mpt_arena_init(mpt_arena *a, size_t limit);
/* *out = zeroed memory for count elements of type dtype; fails on overflow, limit, or malloc. */
mpt_status mpt_arena_alloc(mpt_arena *a, mpt_mem_kind kind, size_t count, mpt_dtype dtype,
                           void *out, mpt_error *err);
/* Returns memory from mpt_arena_alloc of the same kind, count and dtype. p may be NULL. */
void mpt_arena_release(mpt_arena *a, mpt_mem_kind kind, void *p, size_t count, mpt_dtype dtype);

#endif
