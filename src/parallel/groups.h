/* groups.h — this rank's communicators along every dimension of the mesh (see mesh.h).
 *
 * mpt_groups_init checks the layout against the world size (the same verdict on every rank,
 * with no communication, so a bad layout fails everywhere with MPT_ERR_INPUT and nothing
 * hangs), then splits the world once per dimension with mpt_mesh_group_color as the colour and
 * the coordinate along the dimension as the key, so rank i of dim[d] has coordinate i:
 *     mpt_groups g;
 *     if (mpt_groups_init(&g, &layout, &world, err)) return err->status;   // every rank
 *     mpt_allreduce_sum(&g.dim[MPT_DIM_DP], grads, n, err);               // every dp peer
 *     mpt_send(&g.dim[MPT_DIM_PP], act, n, g.pp_next, tag, err);          // to the next stage
 *     mpt_groups_free(&g);
 * A dimension of size 1 still gets its (one-rank) communicator, so callers need no special
 * case; modules skip their communication when the size is 1. */
#ifndef MPT_GROUPS_H
#define MPT_GROUPS_H

#include "comm/comm.h"
#include "parallel/mesh.h"

typedef struct mpt_groups {
    mpt_layout layout;
    mpt_coords coords;        /* this rank's coordinates */
    mpt_comm *world;          /* not owned */
    mpt_comm dim[MPT_DIMS];   /* this rank's group along tp, cp, dp, pp, ep; named "tp", ... */
    /* Pipeline neighbours as ranks of dim[MPT_DIM_PP] (= stage indices), wrapping around the
     * ring (interleaved schedules send from the last stage to the first), and as ranks of the
     * communicator passed to mpt_groups_init (world ranks when it is the world). */
    int pp_prev, pp_next;
    int pp_prev_world, pp_next_world;
    int pp_first, pp_last;    /* 1 on the first / last stage */
} mpt_groups;

/* Every rank of world calls. On failure nothing is left to free (mpt_groups_free is still
 * safe) and every rank returns the same status: MPT_ERR_INPUT for a bad layout, MPT_ERR_RUN if
 * MPI fails (each split is agreed on over world before the next). */
mpt_status mpt_groups_init(mpt_groups *g, const mpt_layout *l, mpt_comm *world, mpt_error *err);
/* Local. Safe on NULL and on a freed or failed mpt_groups. */
void mpt_groups_free(mpt_groups *g);

#endif
