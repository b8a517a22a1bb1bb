/* mesh.c — the rank grid (see mesh.h): layout checks, rank <-> coordinates, the members,
 * indices and colours of each rank's group of any mask of dimensions, ring neighbours.
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

mpt_layout mpt_layout_make(int tp, int cp, int dp, int pp, int ep) {
    mpt_layout l;
    l.size[MPT_DIM_TP] = tp;
    l.size[MPT_DIM_CP] = cp;
    l.size[MPT_DIM_DP] = dp;
    l.size[MPT_DIM_PP] = pp;
    l.size[MPT_DIM_EP] = ep;
    return l;
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
    int dp = l->size[MPT_DIM_DP], ep = l->size[MPT_DIM_EP], cp = l->size[MPT_DIM_CP];
    if (dp % ep != 0 && (ep % cp != 0 || dp % (ep / cp) != 0)) {
        char divs[256];
        size_t used = 0;
        divs[0] = '\0';
        for (int k = 1; k <= dp && used + 16 < sizeof divs; k++)
            if (dp % k == 0)
                used += (size_t)snprintf(divs + used, sizeof divs - used, "%s%d", used ? ", " : "", k);
        if (cp == 1)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--ep %d does not divide --dp %d: expert parallelism splits the "
                            "data-parallel ranks, so choose --ep among %s",
                            ep, dp, divs);
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--ep %d does not divide --dp %d and is not --cp %d times a divisor of "
                        "it: expert parallelism splits the dp ranks, or every cp rank and a "
                        "divisor of dp; choose --ep among %s or %d times one of them",
                        ep, dp, cp, divs, cp);
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
    /* ep spans the dp ranks (dp % ep), or every cp rank and then dp ranks ((cp + cp*dp) % ep) */
    c.c[MPT_DIM_EP] = mpt_mesh_ep_spans_cp(l)
                          ? (c.c[MPT_DIM_CP] + l->size[MPT_DIM_CP] * c.c[MPT_DIM_DP]) %
                                l->size[MPT_DIM_EP]
                          : c.c[MPT_DIM_DP] % l->size[MPT_DIM_EP];
    return c;
}

/* c[MPT_DIM_EP] is ignored: the ep coordinate is a function of the dp coordinate. */
int mpt_mesh_rank(const mpt_layout *l, const mpt_coords *c) {
    return c->c[MPT_DIM_TP] +
           l->size[MPT_DIM_TP] *
               (c->c[MPT_DIM_CP] +
                l->size[MPT_DIM_CP] * (c->c[MPT_DIM_DP] + l->size[MPT_DIM_DP] * c->c[MPT_DIM_PP]));
}

int mpt_mesh_ep_spans_cp(const mpt_layout *l) {
    return l->size[MPT_DIM_DP] % l->size[MPT_DIM_EP] != 0;
}

/* Mask arithmetic runs over five sub-coordinates whose mixed-radix number, fastest first, is
 * the world rank: tp, cp, dp % x, dp / x, pp, where x = ep when ep divides dp and x = ep / cp
 * when ep spans cp (then ep covers cp and dp % x). */
enum { SUB_TP, SUB_CP, SUB_EPIN, SUB_DPOUT, SUB_PP, SUBS };

static void sub_sizes_(const mpt_layout *l, int n[SUBS]) {
    int x = mpt_mesh_ep_spans_cp(l) ? l->size[MPT_DIM_EP] / l->size[MPT_DIM_CP]
                                    : l->size[MPT_DIM_EP];
    n[SUB_TP] = l->size[MPT_DIM_TP];
    n[SUB_CP] = l->size[MPT_DIM_CP];
    n[SUB_EPIN] = x;
    n[SUB_DPOUT] = l->size[MPT_DIM_DP] / x;
    n[SUB_PP] = l->size[MPT_DIM_PP];
}

/* The sub-coordinates a mask covers, as bits (1 << SUB_*). */
static unsigned sub_mask_(const mpt_layout *l, mpt_dim_mask mask) {
    unsigned s = 0;
    if (mask & MPT_MASK_TP) s |= 1u << SUB_TP;
    if (mask & MPT_MASK_CP) s |= 1u << SUB_CP;
    if (mask & MPT_MASK_DP) s |= 1u << SUB_EPIN | 1u << SUB_DPOUT;
    if (mask & MPT_MASK_EP) s |= 1u << SUB_EPIN | (mpt_mesh_ep_spans_cp(l) ? 1u << SUB_CP : 0u);
    if (mask & MPT_MASK_PP) s |= 1u << SUB_PP;
    return s;
}

static void sub_coords_(int rank, const int n[SUBS], int c[SUBS]) {
    for (int k = 0; k < SUBS; k++) {
        c[k] = k == SUB_PP ? rank : rank % n[k];
        rank /= n[k];
    }
}

static int sub_rank_(const int n[SUBS], const int c[SUBS]) {
    int r = 0;
    for (int k = SUBS - 1; k >= 0; k--) r = r * n[k] + c[k];
    return r;
}

int mpt_mesh_mask_size(const mpt_layout *l, mpt_dim_mask mask) {
    int n[SUBS], size = 1;
    unsigned sm = sub_mask_(l, mask);
    sub_sizes_(l, n);
    for (int k = 0; k < SUBS; k++)
        if (sm & 1u << k) size *= n[k];
    return size;
}

int mpt_mesh_mask_index(const mpt_layout *l, mpt_dim_mask mask, int rank) {
    int n[SUBS], c[SUBS], idx = 0;
    unsigned sm = sub_mask_(l, mask);
    sub_sizes_(l, n);
    sub_coords_(rank, n, c);
    for (int k = SUBS - 1; k >= 0; k--)
        if (sm & 1u << k) idx = idx * n[k] + c[k];
    return idx;
}

int mpt_mesh_mask_group(const mpt_layout *l, mpt_dim_mask mask, int rank, int *ranks) {
    int n[SUBS], c[SUBS], size = mpt_mesh_mask_size(l, mask);
    unsigned sm = sub_mask_(l, mask);
    sub_sizes_(l, n);
    sub_coords_(rank, n, c);
    for (int i = 0; i < size; i++) { /* member i: i's mixed-radix digits on the masked coords */
        int rest = i;
        for (int k = 0; k < SUBS; k++)
            if (sm & 1u << k) {
                c[k] = rest % n[k];
                rest /= n[k];
            }
        ranks[i] = sub_rank_(n, c);
    }
    return size;
}

int mpt_mesh_mask_color(const mpt_layout *l, mpt_dim_mask mask, int rank) {
    int n[SUBS], c[SUBS];
    unsigned sm = sub_mask_(l, mask);
    sub_sizes_(l, n);
    sub_coords_(rank, n, c);
    for (int k = 0; k < SUBS; k++)
        if (sm & 1u << k) c[k] = 0;
    return sub_rank_(n, c);
}

void mpt_mesh_mask_name(mpt_dim_mask mask, char *buf, size_t cap) {
    if (!cap) return;
    buf[0] = '\0';
    size_t used = 0;
    for (int d = 0; d < MPT_DIMS; d++) {
        if (!(mask & MPT_MASK(d))) continue;
        int k = snprintf(buf + used, cap - used, "%s%s", used ? "-" : "", mpt_dim_name((mpt_dim)d));
        if (k < 0 || (size_t)k >= cap - used) return;
        used += (size_t)k;
    }
    if (!used) snprintf(buf, cap, "none");
}

/* The rank that has coordinate i along d and shares every other coordinate with `rank`:
 * member i of its one-bit mask group (for ep, i is the index inside the expert group). */
static int member_(const mpt_layout *l, mpt_dim d, int rank, int i) {
    int n[SUBS], c[SUBS];
    sub_sizes_(l, n);
    sub_coords_(rank, n, c);
    switch (d) {
    case MPT_DIM_TP: c[SUB_TP] = i; break;
    case MPT_DIM_CP: c[SUB_CP] = i; break;
    case MPT_DIM_DP: c[SUB_EPIN] = i % n[SUB_EPIN]; c[SUB_DPOUT] = i / n[SUB_EPIN]; break;
    case MPT_DIM_EP:
        if (mpt_mesh_ep_spans_cp(l)) c[SUB_CP] = i % n[SUB_CP], i /= n[SUB_CP];
        c[SUB_EPIN] = i;
        break;
    case MPT_DIM_PP: c[SUB_PP] = i; break;
    case MPT_DIMS: break;
    }
    return sub_rank_(n, c);
}

int mpt_mesh_group(const mpt_layout *l, mpt_dim d, int rank, int *ranks) {
    return mpt_mesh_mask_group(l, MPT_MASK(d), rank, ranks);
}

int mpt_mesh_group_color(const mpt_layout *l, mpt_dim d, int rank) {
    return mpt_mesh_mask_color(l, MPT_MASK(d), rank);
}

int mpt_mesh_prev(const mpt_layout *l, mpt_dim d, int rank) {
    int n = l->size[d], i = mpt_mesh_coords(l, rank).c[d];
    return member_(l, d, rank, (i + n - 1) % n);
}

int mpt_mesh_next(const mpt_layout *l, mpt_dim d, int rank) {
    int n = l->size[d], i = mpt_mesh_coords(l, rank).c[d];
    return member_(l, d, rank, (i + 1) % n);
}
