/* groups.c — this rank's communicator along each mesh dimension and its pipeline neighbours
 * (see groups.h). Every rank of the world communicator calls mpt_groups_init; the layout is
 * checked locally first (all ranks agree without talking), then after a watched barrier each
 * dimension is one MPI_Comm_split whose result is agreed on over world, so a failure on one
 * rank is reported by all and no rank is left waiting in the next split. */
#include "parallel/groups.h"

#include <string.h>

void mpt_groups_free(mpt_groups *g) {
    if (!g) return;
    for (int d = 0; d < MPT_DIMS; d++) mpt_comm_free(&g->dim[d]);
}

mpt_status mpt_groups_init(mpt_groups *g, const mpt_layout *l, mpt_comm *world, mpt_error *err) {
    memset(g, 0, sizeof *g); /* zeroed dims are safe to free */
    g->layout = *l;
    g->world = world;
    mpt_status st = mpt_layout_check(l, world->size, err);
    if (st != MPT_OK) return st;
    g->coords = mpt_mesh_coords(l, world->rank);
    /* MPI_Comm_split blocks unwatched; a watched barrier first makes a rank that never
     * arrives trip the watchdog here instead of hanging every other rank in the split. */
    st = mpt_barrier(world, err);
    if (st != MPT_OK) return st;
    for (int d = 0; d < MPT_DIMS; d++) {
        int color = mpt_mesh_group_color(l, (mpt_dim)d, world->rank);
        st = mpt_comm_split(world, color, g->coords.c[d], mpt_dim_name((mpt_dim)d), &g->dim[d], err);
        st = mpt_comm_agree(world, st, err);
        if (st != MPT_OK) goto cleanup;
    }
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
