/* groups.h — this rank's communicators: one per mesh dimension, and any mask of dimensions on
 * demand (see mesh.h).
 *
 * mpt_groups_init checks the layout against the world size (the same verdict on every rank,
 * with no communication, so a bad layout fails everywhere with MPT_ERR_INPUT and nothing
 * hangs), then makes the group of every one-bit mask (tp, cp, dp, pp, ep): a split of the world
 * with the group's first member as the colour and the rank's index in its group as the key, so
 * rank i of dim[d] has coordinate i. mpt_groups_make does the same for any mask:
 *     mpt_groups g;
 *     if (mpt_groups_init(&g, &layout, &world, err)) return err->status;   // every rank
 *     mpt_allreduce_sum(&g.dim[MPT_DIM_DP], grads, n, err);               // every dp peer
 *     mpt_send(&g.dim[MPT_DIM_PP], act, n, g.pp_next, tag, err);          // to the next stage
 *     mpt_comm dpcp;                                   // gradient reduction when cp > 1
 *     if (mpt_groups_make(&g, MPT_MASK_DP | MPT_MASK_CP, &dpcp, err)) ...; // every rank
 *     mpt_comm_free(&dpcp);
 *     mpt_groups_free(&g);
 * A dimension of size 1 still gets its (one-rank) communicator, so callers need no special
 * case; modules skip their communication when the size is 1. */
#ifndef MPT_GROUPS_H
#define MPT_GROUPS_H

#include "comm/comm.h"
#include "parallel/mesh.h"
#include "parallel/placement.h"

typedef struct mpt_groups {
    mpt_placement place;      /* this rank's layout and coordinates (no layers) */
    mpt_comm *world;          /* not owned */
    mpt_comm dim[MPT_DIMS];   /* the group of MPT_MASK(d) for tp, cp, dp, pp, ep; named "tp", ... */
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
/* This rank's group of `mask` (the ranks sharing every coordinate outside it) as a new
 * communicator *out, named by mpt_mesh_mask_name; its rank i is the group's member i
 * (mpt_mesh_mask_group order). Every rank of g->world calls with the same mask; the result is
 * agreed on over world. The caller frees *out (mpt_comm_free). */
mpt_status mpt_groups_make(const mpt_groups *g, mpt_dim_mask mask, mpt_comm *out, mpt_error *err);
/* Local. Safe on NULL and on a freed or failed mpt_groups. */
void mpt_groups_free(mpt_groups *g);

#endif
