/* mesh.c — the rank grid (see mesh.h): layout checks, rank <-> coordinates, the members,
 * colours and ring neighbours of each rank's group along every dimension.
 * Pure arithmetic, no MPI: every rank computes the same answers from the same layout, so these
 * functions may be called by any rank at any time. Ranks and layouts are assumed valid
 * (mpt_layout_check passed, 0 <= rank < world) except in mpt_layout_world and the check itself. */
#include "parallel/mesh.h"

#include <limits.h>
#include <stdio.h>

const char *mpt_dim_name(mpt_dim d) {
    switch (d) {
    case MPT_DIM_TP: return "tp";
    case MPT_DIM_CP: return "cp";
    case MPT_DIM_DP: return "dp";
    case MPT_DIM_PP: return "pp";
    case MPT_DIM_EP: return "ep";
    case MPT_DIMS: break;
    }
    return "?";
}

/* tp*cp*dp*pp as a long long, or -1 when a size is < 1 or the product passes INT_MAX. */
static long long world_ll_(const mpt_layout *l) {
    static const mpt_dim dims[] = {MPT_DIM_TP, MPT_DIM_CP, MPT_DIM_DP, MPT_DIM_PP};
    long long w = 1;
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int s = l->size[dims[i]];
        if (s < 1) return -1;
        w *= s;
        if (w > INT_MAX) return -1;
    }
    return w;
}

int mpt_layout_world(const mpt_layout *l) { return (int)world_ll_(l); }

/* "--dp 2 --tp 2 --pp 1 --cp 1" (plus " --ep E" when ep > 1) into buf. */
static void layout_text_(const mpt_layout *l, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "--dp %d --tp %d --pp %d --cp %d", l->size[MPT_DIM_DP],
                     l->size[MPT_DIM_TP], l->size[MPT_DIM_PP], l->size[MPT_DIM_CP]);
    if (n > 0 && (size_t)n < cap && l->size[MPT_DIM_EP] != 1)
        snprintf(buf + n, cap - (size_t)n, " --ep %d", l->size[MPT_DIM_EP]);
}

mpt_status mpt_layout_check(const mpt_layout *l, int world, mpt_error *err) {
    char text[128];
    layout_text_(l, text, sizeof text);
    for (int d = 0; d < MPT_DIMS; d++)
        if (l->size[d] < 1)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--%s %d: every parallel size must be at least 1 (layout %s)",
                            mpt_dim_name((mpt_dim)d), l->size[d], text);
    int dp = l->size[MPT_DIM_DP], ep = l->size[MPT_DIM_EP];
    if (dp % ep != 0) {
        char divs[256];
        size_t used = 0;
        divs[0] = '\0';
        for (int k = 1; k <= dp && used + 16 < sizeof divs; k++)
            if (dp % k == 0)
                used += (size_t)snprintf(divs + used, sizeof divs - used, "%s%d", used ? ", " : "", k);
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--ep %d does not divide --dp %d: expert parallelism splits the "
                        "data-parallel ranks, so choose --ep among %s",
                        ep, dp, divs);
    }
    long long need = world_ll_(l);
    if (need < 0)
        return mpt_fail(err, MPT_ERR_INPUT, "%s need more than %d ranks: choose smaller sizes",
                        text, INT_MAX);
    if (need != world)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s need %lld ranks, launched with %d: launch with mpirun -np %lld, or "
                        "choose sizes whose product dp*tp*pp*cp is %d",
                        text, need, world, need, world);
    return MPT_OK;
}

mpt_coords mpt_mesh_coords(const mpt_layout *l, int rank) {
    mpt_coords c;
    int r = rank;
    c.c[MPT_DIM_TP] = r % l->size[MPT_DIM_TP];
    r /= l->size[MPT_DIM_TP];
    c.c[MPT_DIM_CP] = r % l->size[MPT_DIM_CP];
    r /= l->size[MPT_DIM_CP];
    c.c[MPT_DIM_DP] = r % l->size[MPT_DIM_DP];
    r /= l->size[MPT_DIM_DP];
    c.c[MPT_DIM_PP] = r;
    c.c[MPT_DIM_EP] = c.c[MPT_DIM_DP] % l->size[MPT_DIM_EP];
    return c;
}

/* c[MPT_DIM_EP] is ignored: the ep coordinate is a function of the dp coordinate. */
int mpt_mesh_rank(const mpt_layout *l, const mpt_coords *c) {
    return c->c[MPT_DIM_TP] +
           l->size[MPT_DIM_TP] *
               (c->c[MPT_DIM_CP] +
                l->size[MPT_DIM_CP] * (c->c[MPT_DIM_DP] + l->size[MPT_DIM_DP] * c->c[MPT_DIM_PP]));
}

/* The rank that has coordinate i along d and shares every other coordinate with `rank`.
 * For MPT_DIM_EP, i is the ep index inside rank's expert group of dp ranks. */
static int member_(const mpt_layout *l, mpt_dim d, int rank, int i) {
    mpt_coords c = mpt_mesh_coords(l, rank);
    if (d == MPT_DIM_EP) {
        int ep = l->size[MPT_DIM_EP];
        c.c[MPT_DIM_DP] = (c.c[MPT_DIM_DP] / ep) * ep + i;
    } else {
        c.c[d] = i;
    }
    return mpt_mesh_rank(l, &c);
}

int mpt_mesh_group(const mpt_layout *l, mpt_dim d, int rank, int *ranks) {
    int n = l->size[d];
    for (int i = 0; i < n; i++) ranks[i] = member_(l, d, rank, i);
    return n;
}

/* The group's first member (coordinate 0 along d): equal exactly within one group, distinct
 * across groups, and in [0, world). */
int mpt_mesh_group_color(const mpt_layout *l, mpt_dim d, int rank) {
    return member_(l, d, rank, 0);
}

int mpt_mesh_prev(const mpt_layout *l, mpt_dim d, int rank) {
    int n = l->size[d], i = mpt_mesh_coords(l, rank).c[d];
    return member_(l, d, rank, (i + n - 1) % n);
}

int mpt_mesh_next(const mpt_layout *l, mpt_dim d, int rank) {
    int n = l->size[d], i = mpt_mesh_coords(l, rank).c[d];
    return member_(l, d, rank, (i + 1) % n);
}
