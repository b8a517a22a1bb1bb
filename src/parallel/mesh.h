/* mesh.h — the rank grid: world = dp x tp x pp x cp (x ep inside dp for experts).
 *
 * Rank order, fastest first: tp, cp, dp, pp (Megatron's "tp-cp-ep-dp-pp"), so tensor-parallel
 * peers are neighbouring ranks and share a node:
 *     rank = tp_rank + tp * (cp_rank + cp * (dp_rank + dp * pp_rank))
 * Expert parallelism splits the dp x cp ranks (the ranks that share every weight): when ep
 * divides dp it splits dp alone, ep_rank = dp_rank % ep (as before cp composed with ep);
 * otherwise it spans every cp rank and ep / cp of the dp ranks (cp must divide ep and ep / cp
 * divide dp), ep_rank = (cp_rank + cp * dp_rank) % ep, cp fastest as in Megatron's expert
 * rank order "tp-ep-dp-pp" over the same ranks.
 * Everything here is pure (no MPI), so it is tested without a launcher; parallel/groups.c
 * turns it into communicators.
 *
 * Groups come from a MASK of dimensions, as Megatron's rank generator makes them: the group of
 * a mask is the ranks that share every coordinate outside the mask. One bit gives the group
 * along one dimension (tp, cp, dp, pp, ep); several give their product, e.g. dp x cp for the
 * gradient reduction when the sequence is split:
 *     int ranks[64], n = mpt_mesh_mask_group(&l, MPT_MASK_DP | MPT_MASK_CP, rank, ranks);
 * For masks the dp coordinate is two sub-coordinates, dp % x (fastest) and dp / x, x = ep (ep
 * divides dp) or ep / cp (ep spans cp): the dp bit covers both, the ep bit the first (and the
 * cp coordinate when ep spans cp), so ep's group is the ranks with the same dp / x. A
 * group's members are in world-rank order, and a member's index in its group is its mixed-radix
 * number over the masked coordinates (tp fastest), which for one bit is its coordinate. */
#ifndef MPT_MESH_H
#define MPT_MESH_H

#include <stddef.h>

#include "core/status.h"

typedef enum mpt_dim { MPT_DIM_TP, MPT_DIM_CP, MPT_DIM_DP, MPT_DIM_PP, MPT_DIM_EP, MPT_DIMS } mpt_dim;

const char *mpt_dim_name(mpt_dim d); /* "tp", "cp", "dp", "pp", "ep" */

typedef struct mpt_layout {
    int size[MPT_DIMS];   /* tp, cp, dp, pp, ep; each >= 1 */
} mpt_layout;

typedef struct mpt_coords {
    int c[MPT_DIMS];      /* this rank's index along each dimension */
} mpt_coords;

/* The layout {tp, cp, dp, pp, ep}: the one place a layout is made from option values. */
mpt_layout mpt_layout_make(int tp, int cp, int dp, int pp, int ep);

/* Product tp*cp*dp*pp; -1 when a size is < 1 or the product exceeds INT_MAX. */
int mpt_layout_world(const mpt_layout *l);
/* 1 when ep spans the cp ranks (ep does not divide dp; see above), else 0. */
int mpt_mesh_ep_spans_cp(const mpt_layout *l);
/* Checks sizes >= 1, ep divides dp (or is cp times a divisor of dp), and world equals the launched world size; fails with
 * MPT_ERR_INPUT and a message that says what to change ("--dp 2 --tp 2 --pp 1 --cp 1 need 4
 * ranks, launched with 3: ..."). Pure, so every rank reaches the same verdict without talking. */
mpt_status mpt_layout_check(const mpt_layout *l, int world, mpt_error *err);
mpt_coords mpt_mesh_coords(const mpt_layout *l, int rank);
int mpt_mesh_rank(const mpt_layout *l, const mpt_coords *c);
/* The ranks of the group along dim d that contains `rank`, in order of their index along d:
 * ranks[i] has coordinate i. Returns the group size. ranks holds at least size[d] ints.
 * For MPT_DIM_EP, the group is the ranks with the same dp_rank / x (above). The mask group of
 * MPT_MASK(d). */
int mpt_mesh_group(const mpt_layout *l, mpt_dim d, int rank, int *ranks);
/* A colour that is equal exactly for ranks of the same group along d (for MPI_Comm_split):
 * the group's member with coordinate 0, so it lies in [0, world). (mpt_mesh_mask_color.) */
int mpt_mesh_group_color(const mpt_layout *l, mpt_dim d, int rank);
/* A set of dimensions: bit (1u << d) for each mpt_dim d in it. */
typedef unsigned mpt_dim_mask;
#define MPT_MASK(d) (1u << (unsigned)(d))
enum {
    MPT_MASK_TP = 1u << MPT_DIM_TP,
    MPT_MASK_CP = 1u << MPT_DIM_CP,
    MPT_MASK_DP = 1u << MPT_DIM_DP,
    MPT_MASK_PP = 1u << MPT_DIM_PP,
    MPT_MASK_EP = 1u << MPT_DIM_EP,
    MPT_MASK_ALL = (1u << MPT_DIMS) - 1
};

/* Ranks in each group of mask (the product of the masked sizes; ep counts only without dp,
 * and when ep spans cp, only its dp share ep / cp with cp in the mask).
 * Bits outside MPT_MASK_ALL are ignored; mask 0 gives groups of one rank. */
int mpt_mesh_mask_size(const mpt_layout *l, mpt_dim_mask mask);
/* The members of rank's group of mask, in world-rank order, into ranks (mpt_mesh_mask_size
 * ints). Returns the group size. */
int mpt_mesh_mask_group(const mpt_layout *l, mpt_dim_mask mask, int rank, int *ranks);
/* rank's index in its group of mask: ranks[index] == rank above. */
int mpt_mesh_mask_index(const mpt_layout *l, mpt_dim_mask mask, int rank);
/* A colour equal exactly for ranks of the same group of mask: its first member, in [0, world). */
int mpt_mesh_mask_color(const mpt_layout *l, mpt_dim_mask mask, int rank);
/* The mask's name into buf: its dimensions' names in mpt_dim order joined by '-' ("tp",
 * "cp-dp"); "none" for an empty mask. */
void mpt_mesh_mask_name(mpt_dim_mask mask, char *buf, size_t cap);

/* Neighbours along d (ring order, wrapping): previous and next rank. */
int mpt_mesh_prev(const mpt_layout *l, mpt_dim d, int rank);
int mpt_mesh_next(const mpt_layout *l, mpt_dim d, int rank);

#endif
