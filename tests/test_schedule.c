/* test_schedule.c — pipeline schedules (parallel/schedule.h) without MPI. For every kind, pipeline
 * size p and micro-batch count m: invalid requests are rejected with MPT_ERR_INPUT; each rank's
 * list does every F, B (and W) exactly once and in order; every send has exactly one matching
 * receive on the peer (and the reverse), posted before the compute that needs it, with equal
 * tags; the simulation of all ranks finishes; the memory property (1f1b rank r holds at most
 * p - r micro-batches, gpipe m); simulated bubbles equal the theory. Then broken hand-made
 * schedules (deadlock, unmatched send, missing receive, backward before forward) must be caught,
 * and names, parsing and check messages are as documented. The replay with per-rank costs
 * (mpt_pp_simulate_ranks; a run's bubble_sim is its receive-at-use variant,
 * mpt_pp_simulate_replay) equals the closed forms: equal costs give
 * the theory, and a slower last stage sets the pace. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "parallel/pp_replay.h"
#include "parallel/schedule.h"

static const int ps_[] = {1, 2, 3, 4, 5, 6, 7, 8};
static const int ms_[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* Expected verdict of mpt_pp_check, written independently of it. */
static int valid_(mpt_pp_kind k, int p, int m, int v) {
    if (k == MPT_PP_INTERLEAVED) return p >= 2 && v >= 2 && m % p == 0;
    if (k == MPT_PP_ZB_V) return p >= 2 && v == 2;
    return v == 1;
}

typedef struct lists_ {
    mpt_pp_action *a[8];
    size_t n[8];
} lists_;

static void lists_free_(lists_ *l, int p) {
    for (int r = 0; r < p; r++) free(l->a[r]);
}

static int is_recv_(int op) { return op == MPT_PP_RECV_ACT || op == MPT_PP_RECV_GRAD; }
static int is_send_(int op) { return op == MPT_PP_SEND_ACT || op == MPT_PP_SEND_GRAD; }

/* Per-rank properties: compute done once each and in order, in-flight bounds, receives posted
 * before their consumer, sends right after their producer. */
static void check_rank_(const char *nm, mpt_pp_kind k, int p, int m, int v, int r,
                        const mpt_pp_action *a, size_t n) {
    size_t cells = (size_t)m * (size_t)v;
    int *pos_f = malloc(cells * sizeof(int)), *pos_b = malloc(cells * sizeof(int));
    int *pos_w = malloc(cells * sizeof(int)), *recv_at = malloc(2 * cells * sizeof(int));
    for (size_t i = 0; i < cells; i++) pos_f[i] = pos_b[i] = pos_w[i] = -1;
    for (size_t i = 0; i < 2 * cells; i++) recv_at[i] = -1;
    int fails0 = check_failed, inflight_b = 0, inflight_w = 0, peak_b = 0, peak_w = 0;
    int last = p * v - 1;
    for (size_t i = 0; i < n; i++) {
        const mpt_pp_action *x = &a[i];
        int ok = x->mb >= 0 && x->mb < m && x->chunk >= 0 && x->chunk < v;
        CHECK(ok, "%s rank %d: action %zu has mb %d chunk %d out of range", nm, r, i, x->mb,
              x->chunk);
        if (!ok) break;
        size_t c = (size_t)x->mb * (size_t)v + (size_t)x->chunk;
        int stage = k == MPT_PP_ZB_V ? (x->chunk ? 2 * p - 1 - r : r) : x->chunk * p + r;
        if (is_recv_(x->op)) {
            int g = x->op == MPT_PP_RECV_GRAD;
            CHECK(recv_at[2 * c + g] < 0, "%s rank %d: receive %d.%d posted twice", nm, r, x->mb,
                  x->chunk);
            recv_at[2 * c + g] = (int)i;
            continue;
        }
        if (is_send_(x->op)) {
            int want = x->op == MPT_PP_SEND_ACT ? MPT_PP_F : MPT_PP_B;
            CHECK(i > 0 && a[i - 1].op == want && a[i - 1].mb == x->mb &&
                      a[i - 1].chunk == x->chunk,
                  "%s rank %d: send at %zu does not follow the compute that produced it", nm, r, i);
            continue;
        }
        if (x->op == MPT_PP_F) {
            CHECK(pos_f[c] < 0, "%s rank %d: F%d.%d twice", nm, r, x->mb, x->chunk);
            pos_f[c] = (int)i;
            if (stage > 0)
                CHECK(recv_at[2 * c] >= 0, "%s rank %d: F%d.%d without an earlier receive", nm,
                      r, x->mb, x->chunk);
            if (++inflight_b > peak_b) peak_b = inflight_b;
            if (++inflight_w > peak_w) peak_w = inflight_w;
        } else if (x->op == MPT_PP_B) {
            CHECK(pos_b[c] < 0, "%s rank %d: B%d.%d twice", nm, r, x->mb, x->chunk);
            CHECK(pos_f[c] >= 0, "%s rank %d: B%d.%d before its F", nm, r, x->mb, x->chunk);
            pos_b[c] = (int)i;
            if (stage < last)
                CHECK(recv_at[2 * c + 1] >= 0, "%s rank %d: B%d.%d without an earlier receive",
                      nm, r, x->mb, x->chunk);
            inflight_b--;
            if (k != MPT_PP_ZB_H1 && k != MPT_PP_ZB_V) inflight_w--;
        } else if (x->op == MPT_PP_W) {
            CHECK(k == MPT_PP_ZB_H1 || k == MPT_PP_ZB_V, "%s rank %d: W in a schedule without "
                  "split backward", nm, r);
            CHECK(pos_w[c] < 0, "%s rank %d: W%d.%d twice", nm, r, x->mb, x->chunk);
            CHECK(pos_b[c] >= 0, "%s rank %d: W%d.%d before its B", nm, r, x->mb, x->chunk);
            pos_w[c] = (int)i;
            inflight_w--;
        } else {
            CHECK(0, "%s rank %d: unknown op %d", nm, r, x->op);
        }
    }
    for (size_t c = 0; c < cells; c++) {
        CHECK(pos_f[c] >= 0 && pos_b[c] >= 0, "%s rank %d: mb %zu chunk %zu lacks F or B", nm, r,
              c / (size_t)v, c % (size_t)v);
        if (k == MPT_PP_ZB_H1 || k == MPT_PP_ZB_V)
            CHECK(pos_w[c] >= 0, "%s rank %d: mb %zu lacks W", nm, r, c / (size_t)v);
    }
    /* the memory property */
    int cap = p - r < m ? p - r : m;
    if (k == MPT_PP_1F1B || k == MPT_PP_ZB_H1 || k == MPT_PP_2BW)
        CHECK(peak_b == cap, "%s rank %d: %d micro-batches in flight, want p - r = %d", nm, r,
              peak_b, cap);
    if (k == MPT_PP_ZB_H1)
        CHECK(peak_w <= p, "%s rank %d: %d stashes before W, more than p = %d", nm, r, peak_w, p);
    if (k == MPT_PP_ZB_V) /* half-stage sets: at most p full-stage sets, 1f1b's rank 0 */
        CHECK(peak_w <= 2 * p, "%s rank %d: %d chunk stashes before W, more than 2p = %d", nm, r,
              peak_w, 2 * p);
    if (k == MPT_PP_GPIPE)
        CHECK(peak_b == m, "%s rank %d: gpipe holds %d micro-batches, want %d", nm, r, peak_b, m);
    if (k == MPT_PP_NAIVE)
        CHECK(peak_b == 1, "%s rank %d: naive holds %d micro-batches, want 1", nm, r, peak_b);
    if (check_failed > fails0) fprintf(stderr, "  (%s rank %d)\n", nm, r);
    free(pos_f);
    free(pos_b);
    free(pos_w);
    free(recv_at);
}

/* Every send has exactly one receive on its peer for the same message, and the reverse. */
static void check_matching_(const char *nm, mpt_pp_kind k, int p, int v, const lists_ *l) {
    for (int r = 0; r < p; r++)
        for (size_t i = 0; i < l->n[r]; i++) {
            const mpt_pp_action *x = &l->a[r][i];
            if (!is_send_(x->op) && !is_recv_(x->op)) continue;
            int want = x->op == MPT_PP_SEND_ACT    ? MPT_PP_RECV_ACT
                       : x->op == MPT_PP_SEND_GRAD ? MPT_PP_RECV_GRAD
                       : x->op == MPT_PP_RECV_ACT  ? MPT_PP_SEND_ACT
                                                   : MPT_PP_SEND_GRAD;
            int q = x->peer, matches = 0, tag_ok = 1;
            /* zb-v: the turn of the V, stage p-1 to p, stays on rank p-1 */
            CHECK(q >= 0 && q < p && (q != r || (k == MPT_PP_ZB_V && r == p - 1)),
                  "%s rank %d: peer %d", nm, r, q);
            if (q < 0 || q >= p) continue;
            int here = mpt_pp_stage_k(k, p, r, x->chunk), there = mpt_pp_stage_k(k, p, q, x->peer_chunk);
            int fwd = x->op == MPT_PP_SEND_ACT || x->op == MPT_PP_RECV_GRAD;
            CHECK(there - here == (fwd ? 1 : -1), "%s rank %d: %s%d talks to stage %d from %d", nm,
                  r, is_send_(x->op) ? "send" : "recv", x->mb, there, here);
            for (size_t j = 0; j < l->n[q]; j++) {
                const mpt_pp_action *y = &l->a[q][j];
                if (y->op == want && y->mb == x->mb && y->chunk == x->peer_chunk &&
                    y->peer == r && y->peer_chunk == x->chunk) {
                    matches++;
                    tag_ok &= mpt_pp_action_tag(x, v) == mpt_pp_action_tag(y, v);
                }
            }
            CHECK(matches == 1, "%s rank %d: %s of mb %d chunk %d has %d matches on rank %d", nm,
                  r, is_send_(x->op) ? "send" : "receive", x->mb, x->chunk, matches, q);
            CHECK(tag_ok, "%s rank %d: tags differ on the two sides of mb %d", nm, r, x->mb);
        }
}

static void check_one_(mpt_pp_kind k, int p, int m, int v) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s p=%d m=%d v=%d", mpt_pp_kind_name(k), p, m, v);
    mpt_error err = {0};
    mpt_status st = mpt_pp_check(k, p, m, v, &err);
    if (!valid_(k, p, m, v)) {
        mpt_pp_action *a = NULL;
        size_t n = 7;
        mpt_pp_timeline t;
        double c[MPT_PP_COSTS] = {1, 1, 1, 0};
        CHECK(st == MPT_ERR_INPUT, "%s: accepted, want MPT_ERR_INPUT", nm);
        CHECK(err.msg[0] != '\0', "%s: rejected without a message", nm);
        CHECK(mpt_pp_schedule(k, p, m, v, 0, &a, &n, &err) == MPT_ERR_INPUT && !a && n == 0,
              "%s: mpt_pp_schedule accepted", nm);
        CHECK(mpt_pp_simulate(k, p, m, v, c, &t, &err) == MPT_ERR_INPUT,
              "%s: mpt_pp_simulate accepted", nm);
        CHECK(mpt_pp_bubble_theory(k, p, m, v, NULL) == -1.0, "%s: theory of a rejected request", nm);
        return;
    }
    CHECK(st == MPT_OK, "%s: rejected: %s", nm, err.msg);
    if (st) return;
    lists_ l;
    memset(&l, 0, sizeof l);
    for (int r = 0; r < p; r++) {
        st = mpt_pp_schedule(k, p, m, v, r, &l.a[r], &l.n[r], &err);
        CHECK(st == MPT_OK, "%s rank %d: %s", nm, r, err.msg);
        if (st) {
            lists_free_(&l, p);
            return;
        }
        check_rank_(nm, k, p, m, v, r, l.a[r], l.n[r]);
    }
    check_matching_(nm, k, p, v, &l);
    lists_free_(&l, p);
    /* simulation and bubble under several cost mixes */
    const double costs[][MPT_PP_COSTS] = {{1, 1, 0, 0}, {1, 2, 0, 0}, {1, 1, 1, 0}, {2, 1, 0.5, 0}};
    for (size_t ci = 0; ci < sizeof costs / sizeof *costs; ci++) {
        mpt_pp_timeline t;
        st = mpt_pp_simulate(k, p, m, v, costs[ci], &t, &err);
        CHECK(st == MPT_OK, "%s costs #%zu: simulation failed: %s", nm, ci, err.msg);
        if (st) continue;
        double want = k == MPT_PP_NAIVE ? (double)(p - 1) / p
                      : k == MPT_PP_GPIPE || k == MPT_PP_1F1B || k == MPT_PP_2BW
                          ? (double)(p - 1) / (m + p - 1)
                                                               : mpt_pp_bubble_theory(k, p, m, v,
                                                                                      costs[ci]);
        CHECK(fabs(t.bubble - want) < 1e-9, "%s costs #%zu: bubble %.12f, want %.12f", nm, ci,
              t.bubble, want);
        CHECK(fabs(mpt_pp_bubble_theory(k, p, m, v, costs[ci]) - want) < 1e-12,
              "%s: theory disagrees with the formula", nm);
        double busy = 0;
        for (size_t i = 0; i < t.n; i++) busy += t.ev[i].end - t.ev[i].start;
        CHECK(t.n == t.first[p] && fabs(busy - t.busy) < 1e-9, "%s: timeline totals", nm);
        for (int r = 0; r < p; r++) {
            int cap = p - r < m ? p - r : m;
            if (k == MPT_PP_1F1B)
                CHECK(t.peak_inflight[r] == cap, "%s: simulator peak %d on rank %d, want %d", nm,
                      t.peak_inflight[r], r, cap);
            for (size_t i = t.first[r]; i + 1 < t.first[r + 1]; i++)
                CHECK(t.ev[i].end <= t.ev[i + 1].start + 1e-12 && t.ev[i].rank == r,
                      "%s: rank %d events overlap", nm, r);
        }
        mpt_pp_timeline_free(&t);
    }
}

/* Simulates hand-made lists and expects failure with `needle` in the message. */
static void expect_broken_(const char *what, mpt_pp_kind k, int p, int m,
                           const mpt_pp_action *const *lists, const size_t *lens,
                           const char *needle) {
    const double c[MPT_PP_COSTS] = {1, 1, 1, 0};
    mpt_pp_timeline t;
    mpt_error err = {0};
    mpt_status st = mpt_pp_simulate_lists(k, p, m, 1, lists, lens, c, &t, &err);
    CHECK(st == MPT_ERR_RUN && strstr(err.msg, needle), "%s: status %d, message '%s', want '%s'",
          what, st, err.msg, needle);
    if (st == MPT_OK) mpt_pp_timeline_free(&t);
}

#define A_(op, mb, peer) {(uint8_t)(op), (mb), 0, (peer), (peer) < 0 ? -1 : 0}

static void check_broken_(void) {
    /* rank 0 runs naive (waits for B0's gradient before F1), rank 1 gpipe (needs F1 before B0) */
    const mpt_pp_action r0[] = {A_(MPT_PP_F, 0, -1), A_(MPT_PP_SEND_ACT, 0, 1),
                                A_(MPT_PP_RECV_GRAD, 0, 1), A_(MPT_PP_B, 0, -1),
                                A_(MPT_PP_F, 1, -1), A_(MPT_PP_SEND_ACT, 1, 1),
                                A_(MPT_PP_RECV_GRAD, 1, 1), A_(MPT_PP_B, 1, -1)};
    const mpt_pp_action r1[] = {A_(MPT_PP_RECV_ACT, 0, 0), A_(MPT_PP_RECV_ACT, 1, 0),
                                A_(MPT_PP_F, 0, -1), A_(MPT_PP_F, 1, -1), A_(MPT_PP_B, 0, -1),
                                A_(MPT_PP_SEND_GRAD, 0, 0), A_(MPT_PP_B, 1, -1),
                                A_(MPT_PP_SEND_GRAD, 1, 0)};
    const mpt_pp_action *dl[2] = {r0, r1};
    size_t dl_n[2] = {8, 8};
    expect_broken_("deadlock", MPT_PP_GPIPE, 2, 2, dl, dl_n, "deadlock");
    /* the same with rank 1 in naive order runs fine */
    const mpt_pp_action r1ok[] = {A_(MPT_PP_RECV_ACT, 0, 0), A_(MPT_PP_F, 0, -1),
                                  A_(MPT_PP_B, 0, -1), A_(MPT_PP_SEND_GRAD, 0, 0),
                                  A_(MPT_PP_RECV_ACT, 1, 0), A_(MPT_PP_F, 1, -1),
                                  A_(MPT_PP_B, 1, -1), A_(MPT_PP_SEND_GRAD, 1, 0)};
    const mpt_pp_action *ok[2] = {r0, r1ok};
    const double c[MPT_PP_COSTS] = {1, 1, 1, 0};
    mpt_pp_timeline t;
    mpt_error err = {0};
    CHECK(mpt_pp_simulate_lists(MPT_PP_NAIVE, 2, 2, 1, ok, dl_n, c, &t, &err) == MPT_OK,
          "hand-made naive: %s", err.msg);
    mpt_pp_timeline_free(&t);
    /* rank 0 sends, rank 1 does nothing: unmatched send (m = 1, no work on rank 1 either) */
    const mpt_pp_action s0[] = {A_(MPT_PP_F, 0, -1), A_(MPT_PP_SEND_ACT, 0, 1)};
    const mpt_pp_action *un[2] = {s0, NULL};
    size_t un_n[2] = {2, 0};
    expect_broken_("unmatched send", MPT_PP_GPIPE, 2, 1, un, un_n, "never receives");
    /* rank 1 forwards without posting the receive */
    const mpt_pp_action s1[] = {A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action *nr[2] = {s0, s1};
    size_t nr_n[2] = {2, 1};
    expect_broken_("missing receive", MPT_PP_GPIPE, 2, 1, nr, nr_n, "no receive");
    /* a receive whose send never comes: the receiver waits forever */
    const mpt_pp_action w1[] = {A_(MPT_PP_RECV_ACT, 0, 0), A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action f0[] = {A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action *ns[2] = {f0, w1};
    size_t ns_n[2] = {1, 2};
    expect_broken_("receive never sent", MPT_PP_GPIPE, 2, 1, ns, ns_n, "deadlock");
    /* backward before forward, forward twice, missing work, wrong peer */
    const mpt_pp_action bf[] = {A_(MPT_PP_B, 0, -1), A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action ff[] = {A_(MPT_PP_F, 0, -1), A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action fo[] = {A_(MPT_PP_F, 0, -1)};
    const mpt_pp_action wp[] = {A_(MPT_PP_F, 0, -1), {MPT_PP_SEND_ACT, 0, 0, 0, 0}};
    const mpt_pp_action *one[1] = {bf};
    size_t two[1] = {2}, oneN[1] = {1};
    expect_broken_("B before F", MPT_PP_GPIPE, 1, 1, one, two, "before its forward");
    one[0] = ff;
    expect_broken_("F twice", MPT_PP_GPIPE, 1, 1, one, two, "twice");
    one[0] = fo;
    expect_broken_("no backward", MPT_PP_GPIPE, 1, 1, one, oneN, "without its backward");
    one[0] = wp;
    expect_broken_("send to itself", MPT_PP_GPIPE, 1, 1, one, two, "not the neighbouring stage");
}

static void check_names_(void) {
    mpt_pp_kind k;
    mpt_error err = {0};
    const char *names[] = {"naive", "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "2bw"};
    for (int i = 0; i < MPT_PP_KINDS; i++) {
        CHECK(mpt_pp_kind_parse(names[i], &k, &err) == MPT_OK && (int)k == i, "parse %s", names[i]);
        CHECK(strcmp(mpt_pp_kind_name((mpt_pp_kind)i), names[i]) == 0, "name %d", i);
    }
    CHECK(mpt_pp_kind_parse("pipedream", &k, &err) == MPT_ERR_INPUT && strstr(err.msg, "1f1b"),
          "bad kind: %s", err.msg);
    char buf[48];
    mpt_pp_action f = {MPT_PP_F, 3, 0, -1, -1}, b = {MPT_PP_B, 3, 1, -1, -1};
    mpt_pp_action w = {MPT_PP_W, 3, 0, -1, -1}, s = {MPT_PP_SEND_ACT, 3, 1, 2, 1};
    mpt_pp_action rg = {MPT_PP_RECV_GRAD, 12, 0, 2, 0};
    CHECK(strcmp(mpt_pp_action_str(&f, 1, buf, sizeof buf), "F3") == 0, "F3: %s", buf);
    CHECK(strcmp(mpt_pp_action_str(&b, 2, buf, sizeof buf), "B3.1") == 0, "B3.1: %s", buf);
    CHECK(strcmp(mpt_pp_action_str(&w, 1, buf, sizeof buf), "W3") == 0, "W3: %s", buf);
    CHECK(strcmp(mpt_pp_action_str(&s, 2, buf, sizeof buf), "send-act3.1>2") == 0, "send: %s", buf);
    CHECK(strcmp(mpt_pp_action_str(&rg, 1, buf, sizeof buf), "recv-grad12<2") == 0, "recv: %s", buf);
    CHECK(mpt_pp_action_tag(&f, 1) == -1, "compute has no tag");
    /* messages say what to change */
    CHECK(mpt_pp_check(MPT_PP_INTERLEAVED, 4, 6, 2, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "--microbatches 8"), "interleaved m: %s", err.msg);
    CHECK(mpt_pp_check(MPT_PP_1F1B, 4, 8, 2, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "--virtual-stages"), "1f1b v: %s", err.msg);
    CHECK(mpt_pp_check(MPT_PP_GPIPE, 0, 8, 1, &err) == MPT_ERR_INPUT && strstr(err.msg, "--pp"),
          "pp 0: %s", err.msg);
    CHECK(mpt_pp_check(MPT_PP_GPIPE, 2, 0, 1, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "--microbatches"), "m 0: %s", err.msg);
    CHECK(mpt_pp_check(MPT_PP_GPIPE, 1024, 1 << 20, 1, &err) == MPT_ERR_INPUT, "huge accepted");
    mpt_pp_action *a;
    size_t n;
    CHECK(mpt_pp_schedule(MPT_PP_1F1B, 4, 8, 1, 4, &a, &n, &err) == MPT_ERR_INPUT, "rank 4 of 4");
    /* the worked example of schedule.h */
    CHECK(mpt_pp_schedule(MPT_PP_1F1B, 2, 3, 1, 0, &a, &n, &err) == MPT_OK, "example");
    char all[512] = "";
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(all, " ");
        strcat(all, mpt_pp_action_str(&a[i], 1, buf, sizeof buf));
    }
    free(a);
    CHECK(strcmp(all, "F0 send-act0>1 recv-grad0<1 F1 send-act1>1 B0 recv-grad1<1 F2 "
                      "send-act2>1 recv-grad2<1 B1 B2") == 0, "worked example: %s", all);
    /* negative costs */
    const double neg[MPT_PP_COSTS] = {1, -1, 0, 0};
    mpt_pp_timeline t;
    CHECK(mpt_pp_simulate(MPT_PP_1F1B, 2, 2, 1, neg, &t, &err) == MPT_ERR_INPUT, "negative cost");
    mpt_pp_timeline_free(&t);
    mpt_pp_timeline_free(NULL);
}

/* mpt_pp_simulate_ranks: p rows of costs. Equal rows: the theory ((p-1)/(m+p-1) for gpipe and
 * 1f1b, (p-1)/p naive) and the same timeline as mpt_pp_simulate. Two stages, the second slower
 * (F1 >= F0 and F0 + B0 + 2c <= F1 + B1, c the transfer time): it is never idle once its first
 * input is there, so the step lasts F0 + c + m(F1 + B1) + c + B0, and the bubble is
 * 1 - m(F0 + B0 + F1 + B1) / (2 x that). */
static void check_replay_(void) {
    mpt_error err = {0};
    double rows[8 * MPT_PP_COSTS];
    const mpt_pp_kind kinds[] = {MPT_PP_NAIVE, MPT_PP_GPIPE, MPT_PP_1F1B};
    for (size_t k = 0; k < 3; k++)
        for (size_t pi = 0; pi < sizeof ps_ / sizeof *ps_; pi++)
            for (size_t mi = 0; mi < sizeof ms_ / sizeof *ms_; mi++) {
                int p = ps_[pi], m = ms_[mi];
                const double c[MPT_PP_COSTS] = {1.5, 2.5, 0, 0};
                for (int r = 0; r < p; r++) memcpy(rows + r * MPT_PP_COSTS, c, sizeof c);
                mpt_pp_timeline a, b;
                mpt_status sa = mpt_pp_simulate_ranks(kinds[k], p, m, 1, rows, &a, &err);
                mpt_status sb = mpt_pp_simulate(kinds[k], p, m, 1, c, &b, &err);
                double want = kinds[k] == MPT_PP_NAIVE ? (p - 1.0) / p : (p - 1.0) / (m + p - 1.0);
                CHECK(sa == MPT_OK && sb == MPT_OK && fabs(a.bubble - want) < 1e-12 &&
                          a.makespan == b.makespan && a.bubble == b.bubble,
                      "replay %s p=%d m=%d, equal costs: bubble %g, want %g (%s)",
                      mpt_pp_kind_name(kinds[k]), p, m, a.bubble, want, err.msg);
                mpt_pp_timeline_free(&a);
                mpt_pp_timeline_free(&b);
            }
    const double F0 = 1, B0 = 2, F1 = 2, B1 = 4;
    for (size_t k = 1; k < 3; k++)
        for (size_t mi = 0; mi < sizeof ms_ / sizeof *ms_; mi++)
            for (int ci = 0; ci < 3; ci++) {
                int m = ms_[mi];
                double c = 0.5 * ci;
                const double st0[MPT_PP_COSTS] = {F0, B0, 0, c}, st1[MPT_PP_COSTS] = {F1, B1, 0, c};
                memcpy(rows, st0, sizeof st0);
                memcpy(rows + MPT_PP_COSTS, st1, sizeof st1);
                mpt_pp_timeline t;
                mpt_status st = mpt_pp_simulate_ranks(kinds[k], 2, m, 1, rows, &t, &err);
                double makespan = F0 + B0 + 2 * c + m * (F1 + B1);
                double want = 1.0 - m * (F0 + B0 + F1 + B1) / (2 * makespan);
                CHECK(st == MPT_OK && fabs(t.makespan - makespan) < 1e-12 &&
                          fabs(t.bubble - want) < 1e-12,
                      "replay %s p=2 m=%d comm %g, slower last stage: makespan %g bubble %g, want "
                      "%g and %g (%s)", mpt_pp_kind_name(kinds[k]), m, c, t.makespan, t.bubble,
                      makespan, want, err.msg);
                mpt_pp_timeline_free(&t);
                /* mpt_pp_simulate_replay (receives posted at their consumer): every transfer
                 * costs its receiver c, so the slower stage also pays c before each of its
                 * m - 1 later forwards: F0 + B0 + (m + 1)c + m(F1 + B1) */
                st = mpt_pp_simulate_replay(kinds[k], 2, m, 1, rows, &t, &err);
                double late = F0 + B0 + (m + 1) * c + m * (F1 + B1);
                CHECK(st == MPT_OK && fabs(t.makespan - late) < 1e-12,
                      "replay at use %s p=2 m=%d comm %g: makespan %g, want %g (%s)",
                      mpt_pp_kind_name(kinds[k]), m, c, t.makespan, late, err.msg);
                mpt_pp_timeline_free(&t);
            }
    /* a bad cost on one rank names it */
    const double good[MPT_PP_COSTS] = {1, 1, 0, 0}, bad[MPT_PP_COSTS] = {1, NAN, 0, 0};
    memcpy(rows, good, sizeof good);
    memcpy(rows + MPT_PP_COSTS, bad, sizeof bad);
    mpt_pp_timeline t;
    CHECK(mpt_pp_simulate_ranks(MPT_PP_1F1B, 2, 4, 1, rows, &t, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "cost B") && strstr(err.msg, "a rank's"),
          "replay with a non-finite cost: %s", err.msg);
    mpt_pp_timeline_free(&t);
    printf("replay with per-rank costs: checked\n");
}

/* mpt_pp_simulate_exact (the log's bubble_sim: every action at its own duration): with every
 * action at its stage's cost it is mpt_pp_simulate_replay, and a hand-timed step gives its
 * makespan exactly. */
static void check_exact_(void) {
    mpt_error err = {0};
    const mpt_pp_kind kinds[] = {MPT_PP_1F1B, MPT_PP_INTERLEAVED, MPT_PP_ZB_H1, MPT_PP_ZB_V,
                                 MPT_PP_GPIPE, MPT_PP_2BW};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (int p = 2; p <= 4; p++)
            for (int m = p; m <= 2 * p; m += p) {
                int v = kinds[k] == MPT_PP_INTERLEAVED || kinds[k] == MPT_PP_ZB_V ? 2 : 1;
                size_t mv = (size_t)m * v, P = (size_t)p;
                double rows[4 * MPT_PP_COSTS];
                double *dur = calloc(P * 5 * mv, sizeof *dur), *comm = dur + P * 3 * mv;
                for (int r = 0; r < p; r++) {
                    double *c = rows + (size_t)r * MPT_PP_COSTS;
                    c[MPT_PP_COST_F] = 1.0 + 0.25 * r;
                    c[MPT_PP_COST_B] = 2.0 - 0.125 * r;
                    c[MPT_PP_COST_W] = mpt_pp_split(kinds[k]) ? 0.75 + 0.1 * r : 0.0;
                    c[MPT_PP_COST_COMM] = 0.3;
                    const int ops[3] = {MPT_PP_F, MPT_PP_B, MPT_PP_W};
                    for (int o = 0; o < 3; o++)
                        for (size_t j = 0; j < mv; j++)
                            dur[((size_t)r * 3 + (size_t)o) * mv + j] =
                                mpt_pp_action_cost(kinds[k], v, c, ops[o]);
                    for (size_t i = 0; i < 2 * mv; i++) comm[(size_t)r * 2 * mv + i] = 0.3;
                }
                mpt_pp_timeline a, b;
                mpt_pp_durations d = {dur, comm};
                mpt_status sa = mpt_pp_simulate_replay(kinds[k], p, m, v, rows, &a, &err);
                mpt_status sb = mpt_pp_simulate_exact(kinds[k], p, m, v, &d, &b, &err);
                CHECK(sa == MPT_OK && sb == MPT_OK && fabs(a.makespan - b.makespan) < 1e-12 &&
                          fabs(a.bubble - b.bubble) < 1e-12 && fabs(a.busy - b.busy) < 1e-12,
                      "exact replay %s p=%d m=%d, durations equal to the stage costs: makespan "
                      "%g bubble %g, per-stage replay %g and %g (%s)",
                      mpt_pp_kind_name(kinds[k]), p, m, b.makespan, b.bubble, a.makespan,
                      a.bubble, err.msg);
                mpt_pp_timeline_free(&a);
                mpt_pp_timeline_free(&b);
                free(dur);
            }
    /* 1f1b p 2 m 2, F 1, B 2, no transfer cost but the gradient of micro-batch 1 (0.5), and
     * rank 0's F0 slow (3). Rank 0: F0 [0,3] F1 [3,4]; rank 1: F0 [3,4] B0 [4,6] F1 [6,7]
     * B1 [7,9]; rank 0: B0 [6,8], B1 at max(9, 8) + 0.5: [9.5,11.5]. Busy 8 + 6. */
    double dur[2 * 3 * 2] = {0}, comm[2 * 2 * 2] = {0};
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 2; j++) {
            dur[(r * 3 + 0) * 2 + j] = 1.0;
            dur[(r * 3 + 1) * 2 + j] = 2.0;
        }
    dur[0] = 3.0;     /* rank 0, F, micro-batch 0 */
    comm[1 * 2 + 1] = 0.5; /* rank 0 receives the gradient of micro-batch 1: tag 3 */
    mpt_pp_durations d = {dur, comm};
    mpt_pp_timeline t;
    mpt_status st = mpt_pp_simulate_exact(MPT_PP_1F1B, 2, 2, 1, &d, &t, &err);
    CHECK(st == MPT_OK && fabs(t.makespan - 11.5) < 1e-12 && fabs(t.busy - 14.0) < 1e-12 &&
              fabs(t.bubble - (1.0 - 14.0 / 23.0)) < 1e-12,
          "exact replay, one slow F and one slow transfer: makespan %g busy %g (want 11.5, 14) "
          "(%s)", t.makespan, t.busy, err.msg);
    mpt_pp_timeline_free(&t);
    dur[3] = -1.0;
    CHECK(mpt_pp_simulate_exact(MPT_PP_1F1B, 2, 2, 1, &d, &t, &err) == MPT_ERR_INPUT &&
              strstr(err.msg, "duration"),
          "exact replay with a negative duration: %s", err.msg);
    mpt_pp_timeline_free(&t);
    printf("replay on every action's own duration: checked\n");
}

/* mpt_pp_2bw_replay_bubble: records made from a whole segment's simulation (no transfer cost:
 * each message sent when its compute ends; every window's actions at their simulated
 * durations, each rank's window starting where its window before ended) replay every window
 * exactly, so its bubble equals the one read off the whole timeline; the last (empty) window
 * has none. */
static void check_2bw_replay_(void) {
    mpt_error err = {0};
    const int pm[][2] = {{2, 4}, {3, 4}, {2, 2}, {4, 5}};
    const int S = 5;
    for (size_t c = 0; c < sizeof pm / sizeof *pm; c++) {
        int p = pm[c][0], m = pm[c][1], mw = 2 * m;
        size_t nm = 2 * (size_t)mw, len = mpt_pp_record_size(mw);
        double rows[4 * MPT_PP_COSTS] = {0};
        for (int r = 0; r < p; r++) {
            rows[r * MPT_PP_COSTS + MPT_PP_COST_F] = 1.0 + 0.2 * r;
            rows[r * MPT_PP_COSTS + MPT_PP_COST_B] = 2.0 - 0.1 * r;
        }
        mpt_pp_timeline t;
        mpt_status st = mpt_pp_simulate_replay(MPT_PP_2BW, p, m * S, 1, rows, &t, &err);
        CHECK(st == MPT_OK, "2bw segment simulation: %s", err.msg);
        if (st) continue;
        for (int n = 0; n < S; n++) {
            double *recs = calloc((size_t)p * len, sizeof *recs), busy = 0.0, wall = 0.0;
            for (int r = 0; r < p; r++) {
                double *x = recs + (size_t)r * len + MPT_PP_REC_HEAD;
                double prev = 0.0, w0 = 0.0, w1 = 0.0, b = 0.0;
                int w = 0;
                for (size_t i = t.first[r]; i < t.first[r + 1]; i++) {
                    const mpt_pp_event *e = &t.ev[i];
                    while (w < S - 2 && mpt_pp_2bw_window_ends(p, m, r, w, e->a.op, e->a.mb)) {
                        if (w == n) w1 = prev;
                        w++;
                        if (w == n) w0 = prev;
                    }
                    if (w > n) break;
                    int grad = e->a.op == MPT_PP_B, g = e->a.mb % mw;
                    if (grad ? r > 0 : r < p - 1) /* its send: the last of this tag so far */
                        x[5 * nm + 6 * (size_t)mw + (size_t)g * 2 + (size_t)grad] = e->end;
                    if (w == n) {
                        x[5 * nm + (size_t)grad * (size_t)mw + (size_t)g] = e->end - e->start;
                        b += e->end - e->start;
                        w1 = e->end;
                    }
                    prev = e->end;
                }
                if (w == n) w1 = prev;
                x[6 * nm + 6 * (size_t)mw] = w0;
                busy += b;
                wall = w1 - w0 > wall ? w1 - w0 : wall;
            }
            double want = wall > 0 ? 1.0 - busy / (p * wall) : -1.0, got = -2.0;
            st = mpt_pp_2bw_replay_bubble(p, m, S, n, 1, recs, &got, &err);
            CHECK(st == MPT_OK && fabs(got - want) < 1e-12,
                  "2bw window replay p=%d m=%d window %d of %d: bubble %g, want %g (%s)", p, m,
                  n, S, got, want, st ? err.msg : "");
            free(recs);
        }
        mpt_pp_timeline_free(&t);
    }
    printf("2bw window replay on every action's own duration: checked\n");
}

int main(void) {
    check_names_();
    check_replay_();
    check_exact_();
    check_2bw_replay_();
    check_broken_();
    for (int k = 0; k < MPT_PP_KINDS; k++)
        for (size_t pi = 0; pi < sizeof ps_ / sizeof *ps_; pi++)
            for (size_t mi = 0; mi < sizeof ms_ / sizeof *ms_; mi++) {
                check_one_((mpt_pp_kind)k, ps_[pi], ms_[mi], 1);
                if (k == MPT_PP_INTERLEAVED) {
                    check_one_((mpt_pp_kind)k, ps_[pi], ms_[mi], 2);
                    check_one_((mpt_pp_kind)k, ps_[pi], ms_[mi], 3);
                }
                if (k == MPT_PP_1F1B || k == MPT_PP_ZB_V)
                    check_one_((mpt_pp_kind)k, ps_[pi], ms_[mi], 2);
            }
    /* with communication cost: still no deadlock, and never better than without */
    const double slow[MPT_PP_COSTS] = {1, 1, 1, 0.3}, fast[MPT_PP_COSTS] = {1, 1, 1, 0};
    for (int k = 0; k < MPT_PP_KINDS; k++) {
        int v = k == MPT_PP_INTERLEAVED || k == MPT_PP_ZB_V ? 2 : 1;
        mpt_pp_timeline a, b;
        mpt_error err = {0};
        mpt_status sa = mpt_pp_simulate((mpt_pp_kind)k, 4, 8, v, slow, &a, &err);
        mpt_status sb = mpt_pp_simulate((mpt_pp_kind)k, 4, 8, v, fast, &b, &err);
        CHECK(sa == MPT_OK && sb == MPT_OK && a.makespan > b.makespan,
              "%s with comm: %s", mpt_pp_kind_name((mpt_pp_kind)k), err.msg);
        mpt_pp_timeline_free(&a);
        mpt_pp_timeline_free(&b);
    }
    /* PipeDream-2BW without the flush (issue 11 item 4, the generator and its simulation): S
     * steps as one 1F1B order over S*m micro-batches; equal F and B: the bubble is 1F1B's theory
     * over S*m, (p-1)/(S*m+p-1), below the drained steps'; a rank's in-flight micro-batches use at
     * most two weight versions; each update (step n-1's gradient, normed over every rank) is done
     * before any rank's first forward of step n+1. m >= p, as 2BW asks. */
    for (int p = 2; p <= 8; p++)
        for (int m = p; m <= 2 * p; m += p) {
            const int S = 4;
            const double eq[MPT_PP_COSTS] = {1, 1, 0, 0}, comm[MPT_PP_COSTS] = {1, 2, 1, 0.3};
            for (int c = 0; c < 2; c++) {
                mpt_pp_2bw_report r;
                mpt_error err = {0};
                mpt_status st = mpt_pp_2bw_simulate(p, m, S, c ? comm : eq, &r, &err);
                double theory = (double)(p - 1) / (S * m + p - 1);
                CHECK(st == MPT_OK, "2bw p %d m %d: %s", p, m, err.msg);
                CHECK(c || (r.bubble > theory - 1e-9 && r.bubble < theory + 1e-9),
                      "2bw p %d m %d: no-flush bubble %g, theory %g", p, m, r.bubble, theory);
                CHECK(r.bubble < r.bubble_flush, "2bw p %d m %d: no-flush bubble %g >= drained %g",
                      p, m, r.bubble, r.bubble_flush);
                CHECK(r.versions == 2, "2bw p %d m %d: %d weight versions in flight", p, m,
                      r.versions);
                CHECK(r.slack >= 0, "2bw p %d m %d: an update is late by %g", p, m, -r.slack);
            }
        }
    {
        mpt_pp_2bw_report r;
        mpt_error err = {0};
        const double eq[MPT_PP_COSTS] = {1, 1, 0, 0};
        CHECK(mpt_pp_2bw_simulate(4, 8, 0, eq, &r, &err) == MPT_ERR_INPUT, "2bw with 0 steps");
    }
    /* The trainer's deferred 2bw windows (parallel/pp_2bw.h, mpt_pp_2bw_window_ends), on S
     * steps with B = 2F: on every rank window n (n < S-2) ends after step n's update point (its
     * first B of step n+1) and step n's update (before its first F of step n+2: at the end
     * itself on the last rank) and before step n+1's update point; every rank reaches the end
     * of window n within one B of the others (a whole number of micro-batches stands for the
     * stages' (p-2-r)B/(F+B) micro-batches of lag); a middle window's simulated bubble is below
     * 2%. */
    for (int p = 2; p <= 8; p++)
        for (int m = p; m <= 2 * p; m += p) {
            const int S = 6;
            double costs[8 * MPT_PP_COSTS];
            for (int r = 0; r < p; r++) {
                double *c = costs + r * MPT_PP_COSTS;
                c[MPT_PP_COST_F] = 1;
                c[MPT_PP_COST_B] = 2;
                c[MPT_PP_COST_W] = c[MPT_PP_COST_COMM] = 0;
            }
            mpt_pp_timeline t;
            mpt_error err = {0};
            CHECK(mpt_pp_simulate_ranks(MPT_PP_2BW, p, m * S, 1, costs, &t, &err) == MPT_OK,
                  "2bw windows p %d m %d: %s", p, m, err.msg);
            for (int n = 0; n + 2 < S; n++) {
                double lo = 1e300, hi = -1e300;
                for (int r = 0; r < p; r++) {
                    long end = -1, gd = -1, up = -1, gd1 = -1, k = 0;
                    double t_end = 0.0;
                    for (size_t i = t.first[r]; i < t.first[r + 1]; i++, k++) {
                        const mpt_pp_event *e = &t.ev[i];
                        int st = e->a.mb / m;
                        if (e->a.op == MPT_PP_B && st == n + 1 && gd < 0) gd = k;
                        if (e->a.op == MPT_PP_B && st == n + 2 && gd1 < 0) gd1 = k;
                        if (e->a.op == MPT_PP_F && st == n + 2 && up < 0) up = k;
                        if (end < 0 && mpt_pp_2bw_window_ends(p, m, r, n, e->a.op, e->a.mb)) {
                            end = k;
                            t_end = i > t.first[r] ? t.ev[i - 1].end : 0.0;
                        }
                    }
                    CHECK(end >= 0 && gd >= 0 && gd < end && up >= 0 && up <= end &&
                              (gd1 < 0 || end < gd1),
                          "2bw windows p %d m %d rank %d window %d: ends at %ld, update point "
                          "%ld, update %ld, next update point %ld", p, m, r, n, end, gd, up, gd1);
                    lo = t_end < lo ? t_end : lo;
                    hi = t_end > hi ? t_end : hi;
                }
                CHECK(hi - lo <= 2.0 + 1e-9, "2bw windows p %d m %d: window %d ends %g apart", p,
                      m, n, hi - lo);
            }
            mpt_pp_timeline_free(&t);
            double b = -1.0;
            CHECK(mpt_pp_2bw_window_bubble(p, m, S, 2, 1, costs, &b, &err) == MPT_OK &&
                      b >= 0 && b < 0.02,
                  "2bw windows p %d m %d: middle window's bubble %g", p, m, b);
            CHECK(mpt_pp_2bw_window_bubble(p, m, S, S - 1, 1, costs, &b, &err) == MPT_OK &&
                      b == -1.0,
                  "2bw windows p %d m %d: the last window is not empty (%g)", p, m, b);
        }
    return check_finish();
}
