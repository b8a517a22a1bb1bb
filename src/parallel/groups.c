/* groups.c — this rank's communicator for each mesh dimension or any mask of dimensions, and
 * its pipeline neighbours (see groups.h). Every rank of the world communicator calls
 * mpt_groups_init and mpt_groups_make; the layout is checked locally first (all ranks agree
 * without talking), then after a watched barrier each group is one MPI_Comm_split whose result
 * is agreed on over world, so a failure on one rank is reported by all and no rank is left
 * waiting in the next split. */
#include "parallel/groups.h"

#include <string.h>

void mpt_groups_free(mpt_groups *g) {
    if (!g) return;
    for (int d = 0; d < MPT_DIMS; d++) mpt_comm_free(&g->dim[d]);
}

/* The split for mask, agreed on over world (no barrier: the caller has passed one). */
static mpt_status split_(const mpt_groups *g, mpt_dim_mask mask, mpt_comm *out, mpt_error *err) {
    const mpt_layout *l = &g->place.layout;
    int rank = g->place.rank;
    char name[32];
    mpt_mesh_mask_name(mask, name, sizeof name);
    mpt_status st = mpt_comm_split(g->world, mpt_mesh_mask_color(l, mask, rank),
                                   mpt_mesh_mask_index(l, mask, rank), name, out, err);
    return mpt_comm_agree(g->world, st, err);
}

mpt_status mpt_groups_make(const mpt_groups *g, mpt_dim_mask mask, mpt_comm *out,
                           mpt_error *err) {
    memset(out, 0, sizeof *out);
    /* MPI_Comm_split blocks unwatched; a watched barrier first makes a rank that never
     * arrives trip the watchdog here instead of hanging every other rank in the split. */
    mpt_status st = mpt_barrier(g->world, err);
    return st ? st : split_(g, mask, out, err);
}

mpt_status mpt_groups_init(mpt_groups *g, const mpt_layout *l, mpt_comm *world, mpt_error *err) {
    memset(g, 0, sizeof *g); /* zeroed dims are safe to free */
    g->world = world;
    mpt_status st = mpt_placement_init(&g->place, l, world->size, world->rank, err);
    if (st != MPT_OK) return st;
    st = mpt_barrier(world, err); /* watched, as in mpt_groups_make */
    if (st != MPT_OK) return st;
    for (int d = 0; d < MPT_DIMS; d++)
        if ((st = split_(g, MPT_MASK(d), &g->dim[d], err)) != MPT_OK) goto cleanup;
    const mpt_comm *pp = &g->dim[MPT_DIM_PP];
    g->pp_prev = (pp->rank + pp->size - 1) % pp->size;
    g->pp_next = (pp->rank + 1) % pp->size;
    g->pp_prev_world = mpt_mesh_prev(l, MPT_DIM_PP, world->rank);
    g->pp_next_world = mpt_mesh_next(l, MPT_DIM_PP, world->rank);
    g->pp_first = pp->rank == 0;
    g->pp_last = pp->rank == pp->size - 1;
    return MPT_OK;

cleanup:
    mpt_groups_free(g);
    return st;
}
