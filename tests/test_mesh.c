/* test_mesh.c — the rank grid (parallel/mesh.h) without MPI: rank <-> coordinates round trips
 * and the rank formula for many layouts, group membership and order (tp groups are runs of
 * consecutive ranks), colours equal exactly within a group, ring neighbours, expert groups
 * inside dp, groups of every mask of dimensions (each rank in exactly one group per mask, sizes,
 * order, index, shared coordinates), the placement, and the layout check's verdicts and
 * messages. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "parallel/mesh.h"
#include "parallel/placement.h"

static mpt_layout layout_(int tp, int cp, int dp, int pp, int ep) {
    mpt_layout l;
    l.size[MPT_DIM_TP] = tp;
    l.size[MPT_DIM_CP] = cp;
    l.size[MPT_DIM_DP] = dp;
    l.size[MPT_DIM_PP] = pp;
    l.size[MPT_DIM_EP] = ep;
    return l;
}

static void name_(const mpt_layout *l, char *buf, size_t cap) {
    snprintf(buf, cap, "tp%d cp%d dp%d pp%d ep%d", l->size[MPT_DIM_TP], l->size[MPT_DIM_CP],
             l->size[MPT_DIM_DP], l->size[MPT_DIM_PP], l->size[MPT_DIM_EP]);
}

/* Every property that must hold for every rank and dimension of a valid layout. */
static void check_layout_(const mpt_layout *l) {
    char nm[64];
    name_(l, nm, sizeof nm);
    int w = mpt_layout_world(l);
    mpt_error err;
    CHECK(mpt_layout_check(l, w, &err) == MPT_OK, "%s: check failed: %s", nm, err.msg);
    int fails0 = check_failed;
    int tp = l->size[MPT_DIM_TP], cp = l->size[MPT_DIM_CP], dp = l->size[MPT_DIM_DP];
    int ep = l->size[MPT_DIM_EP], spans = dp % ep != 0, x = spans ? ep / cp : ep;
    CHECK(mpt_mesh_ep_spans_cp(l) == spans, "%s: ep spans cp", nm);
    int *ranks = malloc(sizeof(int) * (size_t)w), *other = malloc(sizeof(int) * (size_t)w);
    int *colors_seen = calloc((size_t)w, sizeof(int));
    for (int r = 0; r < w; r++) {
        mpt_coords c = mpt_mesh_coords(l, r);
        CHECK(mpt_mesh_rank(l, &c) == r, "%s: rank %d round trip gives %d", nm, r, mpt_mesh_rank(l, &c));
        int formula = c.c[MPT_DIM_TP] + tp * (c.c[MPT_DIM_CP] + cp * (c.c[MPT_DIM_DP] + dp * c.c[MPT_DIM_PP]));
        CHECK(formula == r, "%s: rank %d is not tp + tp*(cp + cp*(dp + dp*pp))", nm, r);
        for (int d = 0; d < MPT_DIMS; d++)
            CHECK(c.c[d] >= 0 && c.c[d] < l->size[d], "%s: rank %d coord %s = %d out of range", nm,
                  r, mpt_dim_name((mpt_dim)d), c.c[d]);
        int want_ep = spans ? (c.c[MPT_DIM_CP] + cp * c.c[MPT_DIM_DP]) % ep : c.c[MPT_DIM_DP] % ep;
        CHECK(c.c[MPT_DIM_EP] == want_ep, "%s: rank %d ep coord", nm, r);
    }
    for (int d = 0; d < MPT_DIMS; d++) {
        const char *dn = mpt_dim_name((mpt_dim)d);
        int n = l->size[d], groups = 0;
        memset(colors_seen, 0, sizeof(int) * (size_t)w);
        for (int r = 0; r < w; r++) {
            mpt_coords c = mpt_mesh_coords(l, r);
            CHECK(mpt_mesh_group(l, (mpt_dim)d, r, ranks) == n, "%s: %s group size", nm, dn);
            int color = mpt_mesh_group_color(l, (mpt_dim)d, r);
            CHECK(color >= 0 && color < w, "%s: %s colour %d out of [0, %d)", nm, dn, color, w);
            CHECK(ranks[c.c[d]] == r, "%s: rank %d is not at its index %d of its %s group", nm, r, c.c[d], dn);
            for (int i = 0; i < n; i++) {
                mpt_coords m = mpt_mesh_coords(l, ranks[i]);
                CHECK(m.c[d] == i, "%s: %s group of %d: member %d has coordinate %d", nm, dn, r, i, m.c[d]);
                for (int e = 0; e < MPT_DIMS; e++) {
                    int same = e == d || (d == MPT_DIM_EP && e == MPT_DIM_DP) ||
                               (d == MPT_DIM_DP && e == MPT_DIM_EP) ||
                               (spans && d == MPT_DIM_EP && e == MPT_DIM_CP) ||
                               (spans && d == MPT_DIM_CP && e == MPT_DIM_EP) || m.c[e] == c.c[e];
                    CHECK(same, "%s: %s group of %d: member %d differs along %s", nm, dn, r,
                          ranks[i], mpt_dim_name((mpt_dim)e));
                }
                if (d == MPT_DIM_EP)
                    CHECK(m.c[MPT_DIM_DP] / x == c.c[MPT_DIM_DP] / x, "%s: ep group leaves its dp block", nm);
                /* Every member sees the same group and colour. */
                mpt_mesh_group(l, (mpt_dim)d, ranks[i], other);
                CHECK(memcmp(other, ranks, sizeof(int) * (size_t)n) == 0, "%s: %s groups of %d and %d differ", nm, dn, r, ranks[i]);
                CHECK(mpt_mesh_group_color(l, (mpt_dim)d, ranks[i]) == color, "%s: %s colours differ in a group", nm, dn);
            }
            if (!colors_seen[color]) groups++;
            colors_seen[color] = 1;
            int i = c.c[d];
            CHECK(mpt_mesh_next(l, (mpt_dim)d, r) == ranks[(i + 1) % n], "%s: %s next of %d", nm, dn, r);
            CHECK(mpt_mesh_prev(l, (mpt_dim)d, r) == ranks[(i + n - 1) % n], "%s: %s prev of %d", nm, dn, r);
            CHECK(mpt_mesh_prev(l, (mpt_dim)d, mpt_mesh_next(l, (mpt_dim)d, r)) == r, "%s: %s prev(next(%d))", nm, dn, r);
        }
        /* Distinct colours = number of groups, so colours differ across groups. */
        CHECK(groups == w / n, "%s: %s has %d colours, want %d groups", nm, dn, groups, w / n);
    }
    free(ranks);
    free(other);
    free(colors_seen);
    printf("  %-28s world %3d: %s\n", nm, w, check_failed == fails0 ? "ok" : "FAILED");
}

static int group_is_(const mpt_layout *l, mpt_dim d, int rank, const int *want, int n) {
    int got[64];
    return mpt_mesh_group(l, d, rank, got) == n && memcmp(got, want, sizeof(int) * (size_t)n) == 0;
}

static void test_layouts(void) {
    printf("layouts: round trips, groups, colours, neighbours\n");
    static const int sizes[][5] = {
        {1, 1, 1, 1, 1}, {2, 1, 2, 2, 1}, {4, 1, 2, 1, 1}, {1, 1, 1, 4, 1}, {2, 2, 2, 2, 1},
        {1, 1, 4, 1, 2}, {2, 1, 4, 2, 4}, {2, 1, 4, 2, 2}, {3, 2, 6, 1, 3}, {1, 3, 5, 2, 5},
        {1, 1, 8, 1, 1}, {8, 1, 1, 1, 1}, {1, 2, 3, 4, 1}, {2, 2, 4, 3, 2},
        /* ep spanning cp: ep = cp, and cp times a divisor of dp */
        {1, 2, 1, 1, 2}, {2, 2, 2, 2, 4}, {1, 3, 2, 2, 6}, {2, 2, 3, 1, 2},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mpt_layout l = layout_(sizes[i][0], sizes[i][1], sizes[i][2], sizes[i][3], sizes[i][4]);
        check_layout_(&l);
    }
}

static void test_known_groups(void) {
    printf("known groups\n");
    mpt_layout l = layout_(4, 1, 2, 1, 1); /* tp4 dp2: tp groups are consecutive ranks */
    CHECK(group_is_(&l, MPT_DIM_TP, 5, (int[]){4, 5, 6, 7}, 4), "tp4 dp2: tp group of 5");
    CHECK(group_is_(&l, MPT_DIM_DP, 5, (int[]){1, 5}, 2), "tp4 dp2: dp group of 5");
    CHECK(group_is_(&l, MPT_DIM_PP, 5, (int[]){5}, 1), "tp4 dp2: pp group of 5 is itself");

    l = layout_(2, 1, 2, 2, 1); /* 2x2x2 */
    CHECK(group_is_(&l, MPT_DIM_TP, 0, (int[]){0, 1}, 2), "2x2x2: tp group of 0");
    CHECK(group_is_(&l, MPT_DIM_DP, 0, (int[]){0, 2}, 2), "2x2x2: dp group of 0");
    CHECK(group_is_(&l, MPT_DIM_PP, 0, (int[]){0, 4}, 2), "2x2x2: pp group of 0");
    CHECK(group_is_(&l, MPT_DIM_PP, 7, (int[]){3, 7}, 2), "2x2x2: pp group of 7");
    mpt_coords c = mpt_mesh_coords(&l, 6);
    CHECK(c.c[MPT_DIM_TP] == 0 && c.c[MPT_DIM_DP] == 1 && c.c[MPT_DIM_PP] == 1, "2x2x2: coords of 6");

    l = layout_(2, 2, 2, 2, 1); /* cp2 tp2 dp2 pp2 */
    CHECK(group_is_(&l, MPT_DIM_TP, 0, (int[]){0, 1}, 2), "cp2 tp2 dp2 pp2: tp group of 0");
    CHECK(group_is_(&l, MPT_DIM_CP, 0, (int[]){0, 2}, 2), "cp2 tp2 dp2 pp2: cp group of 0");
    CHECK(group_is_(&l, MPT_DIM_DP, 0, (int[]){0, 4}, 2), "cp2 tp2 dp2 pp2: dp group of 0");
    CHECK(group_is_(&l, MPT_DIM_PP, 0, (int[]){0, 8}, 2), "cp2 tp2 dp2 pp2: pp group of 0");
    CHECK(group_is_(&l, MPT_DIM_CP, 13, (int[]){13, 15}, 2), "cp2 tp2 dp2 pp2: cp group of 13");

    l = layout_(2, 1, 4, 1, 2); /* tp2 dp4 ep2: ep groups are pairs of neighbouring dp ranks */
    CHECK(group_is_(&l, MPT_DIM_EP, 1, (int[]){1, 3}, 2), "tp2 dp4 ep2: ep group of 1");
    CHECK(group_is_(&l, MPT_DIM_EP, 7, (int[]){5, 7}, 2), "tp2 dp4 ep2: ep group of 7");
    CHECK(group_is_(&l, MPT_DIM_DP, 7, (int[]){1, 3, 5, 7}, 4), "tp2 dp4 ep2: dp group of 7");
    CHECK(mpt_mesh_group_color(&l, MPT_DIM_EP, 1) != mpt_mesh_group_color(&l, MPT_DIM_EP, 5),
          "tp2 dp4 ep2: ep groups {1,3} and {5,7} share a colour");
    CHECK(mpt_mesh_coords(&l, 7).c[MPT_DIM_EP] == 1, "tp2 dp4 ep2: ep coord of 7");

    l = layout_(1, 1, 1, 4, 1); /* pp4: ring neighbours wrap */
    CHECK(mpt_mesh_prev(&l, MPT_DIM_PP, 0) == 3 && mpt_mesh_next(&l, MPT_DIM_PP, 3) == 0, "pp4 ring wraps");
    CHECK(mpt_mesh_next(&l, MPT_DIM_PP, 1) == 2 && mpt_mesh_prev(&l, MPT_DIM_PP, 2) == 1, "pp4 ring");
    CHECK(mpt_mesh_next(&l, MPT_DIM_TP, 2) == 2, "pp4: tp ring of one is itself");
}

/* Every mask of a valid layout: the groups partition the world (each rank in exactly one),
 * have the size the masked dimensions multiply to, list their members in world-rank order with
 * rank r at its index, share every coordinate outside the mask, and have their first member as
 * the colour. One-bit masks are the per-dimension groups. */
static void check_masks_(const mpt_layout *l) {
    char nm[64];
    name_(l, nm, sizeof nm);
    int w = mpt_layout_world(l), fails0 = check_failed, ep = l->size[MPT_DIM_EP];
    int *ranks = malloc(sizeof(int) * (size_t)w), *seen = malloc(sizeof(int) * (size_t)w);
    int *one = malloc(sizeof(int) * (size_t)w);
    for (unsigned mask = 0; mask <= MPT_MASK_ALL; mask++) {
        char mn[32];
        mpt_mesh_mask_name(mask, mn, sizeof mn);
        /* the size, written independently: ep counts only when dp is not in the mask */
        int want = 1;
        for (int d = 0; d < MPT_DIMS; d++)
            if (mask & MPT_MASK(d) && !(d == MPT_DIM_EP && (mask & MPT_MASK_DP))) want *= l->size[d];
        CHECK(mpt_mesh_mask_size(l, mask) == want, "%s mask %s: size %d, want %d", nm, mn,
              mpt_mesh_mask_size(l, mask), want);
        memset(seen, 0, sizeof(int) * (size_t)w);
        for (int r = 0; r < w; r++) {
            int n = mpt_mesh_mask_group(l, mask, r, ranks), i = mpt_mesh_mask_index(l, mask, r);
            CHECK(n == want, "%s mask %s: group of %d has %d ranks", nm, mn, r, n);
            CHECK(i >= 0 && i < n && ranks[i] == r, "%s mask %s: rank %d not at its index %d", nm,
                  mn, r, i);
            CHECK(mpt_mesh_mask_color(l, mask, r) == ranks[0], "%s mask %s: colour of %d", nm, mn, r);
            mpt_coords c = mpt_mesh_coords(l, r);
            for (int k = 0; k < n; k++) {
                CHECK(k == 0 || ranks[k] > ranks[k - 1], "%s mask %s: group of %d out of order", nm,
                      mn, r);
                mpt_coords m = mpt_mesh_coords(l, ranks[k]);
                for (int e = 0; e < MPT_DIMS; e++) {
                    int free_ = (mask & MPT_MASK(e)) || (e == MPT_DIM_EP && (mask & MPT_MASK_DP));
                    if (e == MPT_DIM_DP && !(mask & MPT_MASK_DP))
                        /* ep in the mask frees dp % ep only */
                        CHECK((mask & MPT_MASK_EP ? m.c[e] / ep == c.c[e] / ep : m.c[e] == c.c[e]),
                              "%s mask %s: member %d of %d's group differs along dp", nm, mn,
                              ranks[k], r);
                    else
                        CHECK(free_ || m.c[e] == c.c[e], "%s mask %s: member %d of %d's group "
                              "differs along %s", nm, mn, ranks[k], r, mpt_dim_name((mpt_dim)e));
                }
            }
            if (i == 0) /* count each group once, from its first member */
                for (int k = 0; k < n; k++) seen[ranks[k]]++;
        }
        for (int r = 0; r < w; r++)
            CHECK(seen[r] == 1, "%s mask %s: rank %d is in %d groups", nm, mn, r, seen[r]);
    }
    for (int d = 0; d < MPT_DIMS; d++)
        for (int r = 0; r < w; r++) {
            int n = mpt_mesh_group(l, (mpt_dim)d, r, one);
            mpt_mesh_mask_group(l, MPT_MASK(d), r, ranks);
            CHECK(memcmp(one, ranks, sizeof(int) * (size_t)n) == 0 &&
                      mpt_mesh_mask_index(l, MPT_MASK(d), r) == mpt_mesh_coords(l, r).c[d],
                  "%s: one-bit mask %s is not the %s group", nm, mpt_dim_name((mpt_dim)d),
                  mpt_dim_name((mpt_dim)d));
        }
    free(ranks);
    free(seen);
    free(one);
    printf("  %-28s 32 masks: %s\n", nm, check_failed == fails0 ? "ok" : "FAILED");
}

static int mask_group_is_(const mpt_layout *l, mpt_dim_mask mask, int rank, const int *want, int n) {
    int got[64];
    return mpt_mesh_mask_group(l, mask, rank, got) == n &&
           memcmp(got, want, sizeof(int) * (size_t)n) == 0;
}

static void test_masks(void) {
    printf("mask groups\n");
    static const int sizes[][5] = {
        {1, 1, 1, 1, 1}, {2, 1, 2, 2, 1}, {2, 2, 2, 2, 1}, {2, 1, 4, 2, 2}, {3, 2, 6, 1, 3},
        {1, 3, 5, 2, 5}, {2, 2, 4, 3, 2}, {1, 2, 3, 4, 1},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mpt_layout l = layout_(sizes[i][0], sizes[i][1], sizes[i][2], sizes[i][3], sizes[i][4]);
        check_masks_(&l);
    }
    mpt_layout l = layout_(2, 2, 2, 2, 1); /* ranks: tp + 2 cp + 4 dp + 8 pp */
    CHECK(mask_group_is_(&l, MPT_MASK_DP | MPT_MASK_CP, 0, (int[]){0, 2, 4, 6}, 4), "dp x cp of 0");
    CHECK(mask_group_is_(&l, MPT_MASK_DP | MPT_MASK_CP, 9, (int[]){9, 11, 13, 15}, 4), "dp x cp of 9");
    CHECK(mpt_mesh_mask_index(&l, MPT_MASK_DP | MPT_MASK_CP, 13) == 2, "dp x cp index of 13");
    CHECK(mask_group_is_(&l, MPT_MASK_TP | MPT_MASK_PP, 6, (int[]){6, 7, 14, 15}, 4), "tp x pp of 6");
    CHECK(mask_group_is_(&l, MPT_MASK_ALL, 5, (int[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                     14, 15}, 16), "all of 5");
    CHECK(mask_group_is_(&l, 0, 5, (int[]){5}, 1), "no dimension: itself");
    l = layout_(2, 2, 2, 1, 4); /* ep4 over cp2 x dp2: ep coord cp + 2 dp */
    CHECK(mask_group_is_(&l, MPT_MASK_EP, 3, (int[]){1, 3, 5, 7}, 4), "ep over cp x dp of 3");
    CHECK(mask_group_is_(&l, MPT_MASK_DP | MPT_MASK_CP, 5, (int[]){1, 3, 5, 7}, 4), "dp x cp of 5");
    CHECK(mask_group_is_(&l, MPT_MASK_CP, 5, (int[]){5, 7}, 2), "cp of 5");
    CHECK(mpt_mesh_coords(&l, 7).c[MPT_DIM_EP] == 3 && mpt_mesh_coords(&l, 4).c[MPT_DIM_EP] == 2,
          "ep coords over cp x dp");
    CHECK(mpt_mesh_mask_index(&l, MPT_MASK_EP, 5) == 2, "ep index of 5");
    l = layout_(1, 2, 1, 1, 2); /* ep2 = cp2, dp 1 */
    CHECK(mask_group_is_(&l, MPT_MASK_EP, 0, (int[]){0, 1}, 2), "ep = cp of 0");
    CHECK(mask_group_is_(&l, MPT_MASK_DP, 1, (int[]){1}, 1), "dp of 1 (ep = cp)");
    l = layout_(1, 1, 4, 1, 2); /* ep2 inside dp4: ep {0,1} {2,3}; dp|ep is dp */
    CHECK(mask_group_is_(&l, MPT_MASK_EP, 3, (int[]){2, 3}, 2), "ep of 3");
    CHECK(mask_group_is_(&l, MPT_MASK_EP | MPT_MASK_DP, 3, (int[]){0, 1, 2, 3}, 4), "dp|ep of 3");
    char nm[32];
    mpt_mesh_mask_name(MPT_MASK_DP | MPT_MASK_CP, nm, sizeof nm);
    CHECK(strcmp(nm, "cp-dp") == 0, "name of dp|cp: %s", nm);
    mpt_mesh_mask_name(MPT_MASK_TP, nm, sizeof nm);
    CHECK(strcmp(nm, "tp") == 0, "name of tp: %s", nm);
    mpt_mesh_mask_name(0, nm, sizeof nm);
    CHECK(strcmp(nm, "none") == 0, "name of the empty mask: %s", nm);
}

/* The placement: coordinates and sizes from the layout and rank, stage blocks from the
 * partition, another stage's view, the model's view; bad layouts fail as mpt_layout_check. */
static void test_placement(void) {
    printf("placement\n");
    mpt_layout l = layout_(2, 1, 2, 3, 1); /* 12 ranks, stage = rank / 4 */
    mpt_placement pl;
    mpt_error err = {0};
    CHECK(mpt_placement_init(&pl, &l, 12, 6, &err) == MPT_OK, "placement: %s", err.msg);
    CHECK(pl.rank == 6 && pl.world == 12 && pl.coords.c[MPT_DIM_TP] == 0 &&
              pl.coords.c[MPT_DIM_DP] == 1 && pl.coords.c[MPT_DIM_PP] == 1,
          "placement of 6: coordinates");
    CHECK(pl.stage == 1 && pl.stages == 3 && !pl.first && !pl.last && pl.n_layers == 0,
          "placement of 6: stage");
    mpt_placement_set_layers(&pl, (int[]){2, 3, 1});
    CHECK(pl.first_layer == 2 && pl.n_layers == 3, "placement of 6: blocks [%d, +%d)",
          pl.first_layer, pl.n_layers);
    mpt_placement q = mpt_placement_at_stage(&pl, 2, 5, 1);
    CHECK(q.rank == 10 && q.stage == 2 && q.last && !q.first && q.first_layer == 5 &&
              q.n_layers == 1 && q.coords.c[MPT_DIM_DP] == 1,
          "stage 2 of 6's pipeline: rank %d", q.rank);
    mpt_gpt_place g = mpt_placement_gpt(&pl, NULL, 1, MPT_RECOMPUTE_FULL);
    CHECK(g.first_layer == 2 && g.n_layers == 3 && !g.first && !g.last && g.sp == 1 &&
              g.recompute == MPT_RECOMPUTE_FULL && g.ops == NULL &&
              g.tp == pl.layout.size[MPT_DIM_TP] && g.tp_rank == pl.coords.c[MPT_DIM_TP],
          "model view of the placement");
    CHECK(mpt_placement_init(&pl, &l, 8, 0, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "launched with 8"),
          "placement of a layout that does not fit: %s", err.msg);
    CHECK(mpt_placement_init(&pl, &l, 12, 12, &err) == MPT_ERR_INPUT, "rank outside the world");
    l = layout_(1, 1, 1, 1, 1);
    CHECK(mpt_placement_init(&pl, &l, 1, 0, &err) == MPT_OK && pl.first && pl.last,
          "one rank is the first and the last stage");
}

/* The check fails with `st` and its message contains every string of `want`. */
static void expect_check_(const mpt_layout *l, int world, mpt_status st, const char *const *want) {
    mpt_error err;
    memset(&err, 0, sizeof err);
    mpt_status got = mpt_layout_check(l, world, &err);
    CHECK(got == st, "layout_check: status %d, want %d (%s)", got, st, err.msg);
    if (st == MPT_OK) return;
    printf("  message: %s\n", err.msg);
    CHECK(err.status == st, "layout_check: err.status %d", err.status);
    for (; *want; want++) CHECK(strstr(err.msg, *want) != NULL, "message lacks '%s': %s", *want, err.msg);
}

static void test_layout_check(void) {
    printf("layout_check\n");
    mpt_layout l = layout_(2, 1, 2, 1, 1);
    expect_check_(&l, 4, MPT_OK, NULL);
    expect_check_(&l, 3, MPT_ERR_INPUT,
                  (const char *const[]){"--dp 2 --tp 2 --pp 1 --cp 1 need 4 ranks, launched with 3",
                                        "mpirun -np 4", NULL});
    expect_check_(&l, 8, MPT_ERR_INPUT, (const char *const[]){"need 4 ranks, launched with 8", NULL});
    l = layout_(1, 1, 4, 1, 3);
    expect_check_(&l, 4, MPT_ERR_INPUT,
                  (const char *const[]){"--ep 3 does not divide --dp 4", "1, 2, 4", NULL});
    l = layout_(1, 1, 4, 1, 4);
    expect_check_(&l, 4, MPT_OK, NULL);
    l = layout_(1, 2, 3, 1, 4); /* 4 = 2 x 2, but 2 does not divide dp 3 */
    expect_check_(&l, 6, MPT_ERR_INPUT,
                  (const char *const[]){"--ep 4 does not divide --dp 3 and is not --cp 2 times", NULL});
    l = layout_(1, 4, 1, 1, 2); /* ep would split cp */
    expect_check_(&l, 4, MPT_ERR_INPUT, (const char *const[]){"--ep 2", "--cp 4", NULL});
    l = layout_(1, 2, 3, 1, 6);
    expect_check_(&l, 6, MPT_OK, NULL);
    l = layout_(0, 1, 1, 1, 1);
    expect_check_(&l, 1, MPT_ERR_INPUT, (const char *const[]){"--tp 0", "at least 1", NULL});
    CHECK(mpt_layout_world(&l) == -1, "world of a layout with tp 0 is -1");
    l = layout_(1, 1, 1, -2, 1);
    expect_check_(&l, 1, MPT_ERR_INPUT, (const char *const[]){"--pp -2", NULL});
    l = layout_(65536, 1, 65536, 1, 1);
    CHECK(mpt_layout_world(&l) == -1, "world past INT_MAX is -1");
    expect_check_(&l, 4, MPT_ERR_INPUT, (const char *const[]){"need more than", NULL});
    CHECK(mpt_layout_check(&l, 4, NULL) == MPT_ERR_INPUT, "layout_check with err NULL");
    CHECK(strcmp(mpt_dim_name(MPT_DIM_TP), "tp") == 0 && strcmp(mpt_dim_name(MPT_DIM_CP), "cp") == 0 &&
              strcmp(mpt_dim_name(MPT_DIM_DP), "dp") == 0 && strcmp(mpt_dim_name(MPT_DIM_PP), "pp") == 0 &&
              strcmp(mpt_dim_name(MPT_DIM_EP), "ep") == 0,
          "dimension names");
}

int main(void) {
    test_layouts();
    test_known_groups();
    test_masks();
    test_placement();
    test_layout_check();
    return check_finish();
}
