/* mesh.h — the rank grid: world = dp x tp x pp x cp (x ep inside dp for experts).
 *
 * Rank order, fastest first: tp, cp, dp, pp (Megatron's "tp-cp-ep-dp-pp"), so tensor-parallel
 * peers are neighbouring ranks and share a node:
 *     rank = tp_rank + tp * (cp_rank + cp * (dp_rank + dp * pp_rank))
 * Expert parallelism splits the dp dimension: ep divides dp and ep_rank = dp_rank % ep.
 * Everything here is pure (no MPI), so it is tested without a launcher; parallel/groups.c
 * turns it into communicators. */
#ifndef MPT_MESH_H
#define MPT_MESH_H

#include "core/status.h"

typedef enum mpt_dim { MPT_DIM_TP, MPT_DIM_CP, MPT_DIM_DP, MPT_DIM_PP, MPT_DIM_EP, MPT_DIMS } mpt_dim;

const char *mpt_dim_name(mpt_dim d); /* "tp", "cp", "dp", "pp", "ep" */

typedef struct mpt_layout {
    int size[MPT_DIMS];   /* tp, cp, dp, pp, ep; each >= 1 */
} mpt_layout;

typedef struct mpt_coords {
    int c[MPT_DIMS];      /* this rank's index along each dimension */
} mpt_coords;

/* Product tp*cp*dp*pp; -1 when a size is < 1 or the product exceeds INT_MAX. */
int mpt_layout_world(const mpt_layout *l);
/* Checks sizes >= 1, ep divides dp, and world equals the launched world size; fails with
 * MPT_ERR_INPUT and a message that says what to change ("--dp 2 --tp 2 --pp 1 --cp 1 need 4
 * ranks, launched with 3: ..."). Pure, so every rank reaches the same verdict without talking. */
mpt_status mpt_layout_check(const mpt_layout *l, int world, mpt_error *err);
mpt_coords mpt_mesh_coords(const mpt_layout *l, int rank);
int mpt_mesh_rank(const mpt_layout *l, const mpt_coords *c);
/* The ranks of the group along dim d that contains `rank`, in order of their index along d:
 * ranks[i] has coordinate i. Returns the group size. ranks holds at least size[d] ints.
 * For MPT_DIM_EP, the group is the dp ranks with the same dp_rank / ep. */
int mpt_mesh_group(const mpt_layout *l, mpt_dim d, int rank, int *ranks);
/* A colour that is equal exactly for ranks of the same group along d (for MPI_Comm_split):
 * the group's member with coordinate 0, so it lies in [0, world). */
int mpt_mesh_group_color(const mpt_layout *l, mpt_dim d, int rank);
/* Neighbours along d (ring order, wrapping): previous and next rank. */
int mpt_mesh_prev(const mpt_layout *l, mpt_dim d, int rank);
int mpt_mesh_next(const mpt_layout *l, mpt_dim d, int rank);

#endif
