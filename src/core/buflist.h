/* buflist.h — a module's list of buffers: the one statement of what it allocates.
 *
 * Every module that holds training state describes its buffers as a list of entries (name,
 * memory category, dtype, element count, and where the pointer goes). The same list serves
 * twice: the memory plan sums it (mpt_buflist_bytes) before anything exists, and the module's
 * init allocates exactly it from the arena (mpt_buflist_alloc). So no size is computed in two
 * places, and the arena's measured peak can be compared with the plan to the byte.
 *
 *   mpt_buflist l;  mpt_buflist_init(&l);
 *   mpt_buflist_add(&l, "m", MPT_MEM_OPTIMIZER, MPT_F32, n, (void **)&dp->m);
 *   ... more entries (a plan passes NULL as the destination) ...
 *   if (l.failed) -> out of memory building the list (mpt_buflist_alloc reports it too)
 *   mpt_buflist_bytes(&l, plan->bytes);        // the plan: += bytes by category
 *   mpt_buflist_alloc(&l, arena, err);         // init: every *dst = zeroed arena memory
 *   ... later, mpt_buflist_release(&l, arena); mpt_buflist_free(&l);
 * Entries with count 0 take no memory and leave *dst NULL. Local; not thread-safe. */
#ifndef MPT_BUFLIST_H
#define MPT_BUFLIST_H

#include <stddef.h>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/status.h"

typedef struct mpt_buf {
    const char *name;   /* static string, for messages and the plan's breakdown */
    mpt_mem_kind kind;
    mpt_dtype dtype;
    size_t count;       /* elements */
    void **dst;         /* where mpt_buflist_alloc stores the block; NULL in a plan */
} mpt_buf;

typedef struct mpt_buflist {
    mpt_buf *b;         /* owned, n entries */
    size_t n, cap;
    int failed;         /* an add ran out of memory: the list is incomplete */
} mpt_buflist;

void mpt_buflist_init(mpt_buflist *l);
/* Appends an entry (dst may be NULL). On out-of-memory sets l->failed. */
void mpt_buflist_add(mpt_buflist *l, const char *name, mpt_mem_kind kind, mpt_dtype dtype,
                     size_t count, void **dst);
/* Appends every entry of src. */
void mpt_buflist_append(mpt_buflist *l, const mpt_buflist *src);
/* bytes[kind] += the list's bytes of that category. Returns 0 on size overflow or a failed list. */
int mpt_buflist_bytes(const mpt_buflist *l, size_t bytes[MPT_MEM_KINDS]);
/* Allocates every entry with a destination from the arena (zeroed). On failure releases what
 * it took and returns the arena's status (MPT_ERR_RUN). */
mpt_status mpt_buflist_alloc(const mpt_buflist *l, mpt_arena *a, mpt_error *err);
/* Returns every allocated entry to the arena and sets its destination to NULL. */
void mpt_buflist_release(const mpt_buflist *l, mpt_arena *a);
/* Frees the list itself (not the buffers). Safe on a zeroed list. */
void mpt_buflist_free(mpt_buflist *l);

#endif
