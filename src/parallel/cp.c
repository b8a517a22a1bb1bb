/* cp.c — ring attention over the context-parallel group (see cp.h): the zigzag chunks' global
 * positions, the K||V ring of the forward, and the K||V plus dK||dV ring of the backward, built
 * on the block routines of core/attention.h and the nonblocking point-to-point calls of
 * comm/comm.h. Every rank of the cp group calls each entry, with the same B and Tl. */
#include "parallel/cp.h"

#include <stdint.h>
#include <string.h>

#include "core/attention.h"

enum { TAG_KV_ = 7401, TAG_DKV_ = 7402 }; /* ring messages: K||V, and dK||dV accumulators */

mpt_status mpt_cp_check(int T, int cp, int tp, int sp, mpt_error *err) {
    if (cp <= 1) return MPT_OK;
    if (T % (2 * cp) != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--cp %d cuts each sequence into 2 x %d = %d chunks, but --seq-len %d is "
                        "not divisible by %d: choose a multiple of %d",
                        cp, cp, 2 * cp, T, 2 * cp, 2 * cp);
    if (sp && tp > 1 && (T / cp) % tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--sp splits each rank's %d positions (--seq-len %d / --cp %d) over --tp "
                        "%d ranks, which does not divide them: choose a --seq-len divisible by %d",
                        T / cp, T, cp, tp, cp * tp * (tp % 2 ? 2 : 1)); /* lcm(2cp, cp tp) */
    return MPT_OK;
}

void mpt_cp_buffers(int B, int Tl, int D, int H, int threads, mpt_cp *cp, mpt_buflist *l) {
#define DST_(field) (cp ? (void **)&cp->field : NULL)
    size_t b = (size_t)(B > 0 ? B : 0), t = (size_t)(Tl > 0 ? Tl : 0), d = (size_t)(D > 0 ? D : 0);
    size_t h = (size_t)(H > 0 ? H : 0), kv = 0, rows = 0, part = 0, per_row = 0;
    if (!mpt_size_mul(b, t, &rows) || !mpt_size_mul(rows, 2 * d, &kv) ||
        !mpt_size_mul(b * (t / 2), d, &part) || !mpt_size_mul(rows, h, &per_row))
        kv = part = per_row = SIZE_MAX / 8; /* too large: the allocation (or plan) fails */
    mpt_flash_shape s = {B, H, H > 0 ? D / H : 0, Tl / 2, 0, Tl / 2, 0};
    size_t work = mpt_flash_block_workspace(&s, threads);
    for (int k = 0; k < 2; k++) {
        mpt_buflist_add(l, "cp_kv", MPT_MEM_WORKSPACE, MPT_F32, kv, DST_(kv[k]));
        mpt_buflist_add(l, "cp_dkv", MPT_MEM_WORKSPACE, MPT_F32, kv, DST_(dkv[k]));
    }
    mpt_buflist_add(l, "cp_part", MPT_MEM_WORKSPACE, MPT_F32, part, DST_(part));
    mpt_buflist_add(l, "cp_part_lse", MPT_MEM_WORKSPACE, MPT_F32,
                    per_row == SIZE_MAX / 8 ? per_row : per_row / 2, DST_(part_lse));
    mpt_buflist_add(l, "cp_drow", MPT_MEM_WORKSPACE, MPT_F32, per_row, DST_(drow));
    mpt_buflist_add(l, "cp_work", MPT_MEM_WORKSPACE, MPT_F32, work, DST_(work));
#undef DST_
}

mpt_status mpt_cp_init(mpt_cp *cp, mpt_comm *comm, int B, int Tl, int D, int H, int threads,
                       mpt_arena *arena, mpt_error *err) {
    memset(cp, 0, sizeof *cp);
    if (!comm || comm->size < 2 || Tl % 2 != 0 || H < 1 || D % H != 0)
        return mpt_fail(err, MPT_ERR_RUN,
                        "context parallelism needs a cp group of 2 or more ranks and an even "
                        "number of local positions (got %d)", Tl);
    cp->comm = comm;
    cp->c = comm->size;
    cp->r = comm->rank;
    cp->B = B, cp->Tl = Tl, cp->D = D, cp->H = H;
    cp->threads = threads > 0 ? threads : 1;
    cp->arena = arena;
    mpt_buflist_init(&cp->bufs);
    mpt_cp_buffers(B, Tl, D, H, cp->threads, cp, &cp->bufs);
    mpt_status st = mpt_buflist_alloc(&cp->bufs, arena, err);
    if (st) {
        mpt_buflist_free(&cp->bufs);
        memset(cp, 0, sizeof *cp);
    }
    return st;
}

void mpt_cp_free(mpt_cp *cp) {
    if (!cp || !cp->arena) return;
    mpt_buflist_release(&cp->bufs, cp->arena);
    mpt_buflist_free(&cp->bufs);
    memset(cp, 0, sizeof *cp);
}

/* ---- the ring ------------------------------------------------------------------------------ */

/* Global position of the first row of local chunk i (0 or 1) of cp rank `rank`. */
static int chunk_pos_(const mpt_cp *cp, int rank, int i, int Tc) {
    return (i == 0 ? rank : 2 * cp->c - 1 - rank) * Tc;
}

/* kv (B, Tl, 2D) = the K and V columns of qkv (B, Tl, 3D). */
static void pack_kv_(float *kv, const float *qkv, int B, int Tl, int D) {
    size_t rows = (size_t)B * Tl, d = (size_t)D;
    for (size_t i = 0; i < rows; i++) memcpy(kv + i * 2 * d, qkv + i * 3 * d + d, 2 * d * sizeof *kv);
}

/* Waits for a hop's two requests, adding the time to cp->wait_seconds. */
static mpt_status wait_(mpt_cp *cp, mpt_req r[2], mpt_error *err) {
    double t0 = mpt_comm_clock();
    mpt_status st = mpt_waitall(r, 2, err);
    cp->wait_seconds += mpt_comm_clock() - t0;
    return st;
}

/* Posts the receive of the next ring message into `in` from the previous rank and the send of
 * `out` to the next one (n floats each, tag). */
static mpt_status hop_(mpt_cp *cp, const float *out, float *in, size_t n, int tag, mpt_req r[2],
                       mpt_error *err) {
    int next = (cp->r + 1) % cp->c, prev = (cp->r + cp->c - 1) % cp->c;
    memset(r, 0, 2 * sizeof *r);
    mpt_status st = mpt_irecv(cp->comm, in, n, prev, tag, &r[0], err);
    if (!st) st = mpt_isend(cp->comm, out, n, next, tag, &r[1], err);
    return st;
}

/* The sizes of the pair (query chunk qi of this rank, K/V chunk ki of rank src); 0 when no
 * row of the query chunk sees a key of the K/V chunk. */
static int pair_(const mpt_cp *cp, int src, int qi, int ki, int B, int Tc, mpt_flash_shape *s) {
    int q0 = chunk_pos_(cp, cp->r, qi, Tc), k0 = chunk_pos_(cp, src, ki, Tc);
    mpt_flash_shape x = {B, cp->H, cp->D / cp->H, Tc, q0, Tc, k0};
    *s = x;
    return k0 <= q0 + Tc - 1;
}

/* Views of this rank's queries from row qrow of qkv (B, Tl, 3D) and of the keys and values
 * from row krow of a ring block kv (B, Tl, 2D) = K||V. */
static void chunk_views_(const float *qkv, const float *kv, size_t qrow, size_t krow, int Tl,
                         int D, mpt_flash_in *q, mpt_flash_in *k, mpt_flash_in *v) {
    size_t ld3 = 3 * (size_t)D, ld2 = 2 * (size_t)D;
    *q = (mpt_flash_in){qkv + qrow * ld3, ld3, (size_t)Tl * ld3};
    *k = (mpt_flash_in){kv + krow * ld2, ld2, (size_t)Tl * ld2};
    *v = (mpt_flash_in){kv + krow * ld2 + D, ld2, (size_t)Tl * ld2};
}

static mpt_status ring_forward_(void *ctx, float *out, float *lse, const float *qkv, int B,
                                int Tl, int D, int H, mpt_error *err) {
    mpt_cp *cp = ctx;
    if (B > cp->B || Tl != cp->Tl || D != cp->D || H != cp->H)
        return mpt_fail(err, MPT_ERR_RUN, "ring attention called with %d x %d rows, width %d, "
                        "%d heads; its buffers hold %d x %d, %d, %d", B, Tl, D, H, cp->B, cp->Tl,
                        cp->D, cp->H);
    int Tc = Tl / 2, hs = D / H;
    size_t n_kv = (size_t)B * Tl * 2 * (size_t)D;
    for (size_t i = 0, n = (size_t)B * Tl * D; i < n; i++) out[i] = 0.0f;
    for (size_t i = 0, n = (size_t)B * H * Tl; i < n; i++) lse[i] = MPT_FLASH_LSE_EMPTY;
    pack_kv_(cp->kv[0], qkv, B, Tl, D);
    mpt_status st = MPT_OK;
    for (int s = 0; s < cp->c && !st; s++) {
        const float *cur = cp->kv[s & 1];
        int src = (cp->r - s + cp->c) % cp->c; /* whose chunks cur holds */
        mpt_req r[2];
        memset(r, 0, sizeof r);
        /* kv[(s+1)&1] is free to receive into: step s-1 sent it and waited for that send */
        if (s < cp->c - 1 && (st = hop_(cp, cur, cp->kv[(s + 1) & 1], n_kv, TAG_KV_, r, err)))
            break;
        for (int qi = 0; qi < 2; qi++)
            for (int ki = 0; ki < 2; ki++) {
                mpt_flash_shape sh;
                if (!pair_(cp, src, qi, ki, B, Tc, &sh)) continue;
                size_t qrow = (size_t)qi * Tc, krow = (size_t)ki * Tc;
                mpt_flash_in q, k, v;
                chunk_views_(qkv, cur, qrow, krow, Tl, D, &q, &k, &v);
                mpt_flash_out po = {cp->part, (size_t)D, (size_t)Tc * D};
                mpt_flash_block_forward(po, cp->part_lse, (size_t)Tc, q, k, v, &sh);
                mpt_flash_out o = {out + qrow * D, (size_t)D, (size_t)Tl * D};
                mpt_flash_in pin = {cp->part, (size_t)D, (size_t)Tc * D};
                mpt_flash_merge(o, lse + qrow, (size_t)Tl, pin, cp->part_lse, (size_t)Tc, B, H,
                                hs, Tc);
            }
        st = wait_(cp, r, err);
    }
    return st;
}

static mpt_status ring_backward_(void *ctx, float *dqkv, const float *dout, const float *out,
                                 const float *lse, const float *qkv, int B, int Tl, int D, int H,
                                 mpt_error *err) {
    mpt_cp *cp = ctx;
    if (B > cp->B || Tl != cp->Tl || D != cp->D || H != cp->H)
        return mpt_fail(err, MPT_ERR_RUN, "ring attention backward called with %d x %d rows, "
                        "width %d, %d heads; its buffers hold %d x %d, %d, %d", B, Tl, D, H,
                        cp->B, cp->Tl, cp->D, cp->H);
    int Tc = Tl / 2, hs = D / H;
    size_t ld3 = 3 * (size_t)D, ld2 = 2 * (size_t)D, n_kv = (size_t)B * Tl * ld2;
    mpt_flash_in g = {dout, (size_t)D, (size_t)Tl * D}, y = {out, (size_t)D, (size_t)Tl * D};
    mpt_flash_rowdot(cp->drow, (size_t)Tl, g, y, B, H, hs, Tl);
    pack_kv_(cp->kv[0], qkv, B, Tl, D);
    memset(cp->dkv[0], 0, n_kv * sizeof(float));
    mpt_status st = MPT_OK;
    for (int s = 0; s < cp->c && !st; s++) {
        const float *cur = cp->kv[s & 1];
        float *acc = cp->dkv[s & 1]; /* dK||dV of cur's chunks, summed by the ranks before */
        int src = (cp->r - s + cp->c) % cp->c;
        mpt_req r[2];
        memset(r, 0, sizeof r);
        if (s < cp->c - 1 && (st = hop_(cp, cur, cp->kv[(s + 1) & 1], n_kv, TAG_KV_, r, err)))
            break;
        for (int qi = 0; qi < 2; qi++)
            for (int ki = 0; ki < 2; ki++) {
                mpt_flash_shape sh;
                if (!pair_(cp, src, qi, ki, B, Tc, &sh)) continue;
                size_t qrow = (size_t)qi * Tc, krow = (size_t)ki * Tc;
                mpt_flash_in q, k, v;
                chunk_views_(qkv, cur, qrow, krow, Tl, D, &q, &k, &v);
                mpt_flash_in gq = {dout + qrow * D, (size_t)D, (size_t)Tl * D};
                mpt_flash_out dq = {dqkv + qrow * ld3, ld3, (size_t)Tl * ld3};
                mpt_flash_out dk = {acc + krow * ld2, ld2, (size_t)Tl * ld2};
                mpt_flash_out dv = {acc + krow * ld2 + D, ld2, (size_t)Tl * ld2};
                mpt_flash_block_backward(dq, dk, dv, gq, lse + qrow, cp->drow + qrow,
                                         (size_t)Tl, q, k, v, &sh, cp->work, cp->threads);
            }
        if ((st = wait_(cp, r, err))) break;
        /* the accumulator follows its K/V one hop behind; after the last hop it is home */
        if ((st = hop_(cp, acc, cp->dkv[(s + 1) & 1], n_kv, TAG_DKV_, r, err)) ||
            (st = wait_(cp, r, err)))
            break;
    }
    if (st) return st;
    const float *mine = cp->dkv[cp->c & 1]; /* this rank's dK||dV, every rank's part summed */
    size_t rows = (size_t)B * Tl;
    for (size_t i = 0; i < rows; i++) {
        float *d = dqkv + i * ld3 + D;
        const float *a = mine + i * ld2;
        for (size_t j = 0; j < ld2; j++) d[j] += a[j];
    }
    return MPT_OK;
}

static mpt_status count_sum_(void *ctx, float *buf, size_t n, mpt_error *err) {
    mpt_cp *cp = ctx;
    return mpt_allreduce_sum(cp->comm, buf, n, err);
}

void mpt_cp_ops(mpt_par_ops *ops, mpt_cp *cp) {
    ops->cp_ctx = cp;
    ops->cp_count_sum = count_sum_;
    ops->ring_attention_forward = ring_forward_;
    ops->ring_attention_backward = ring_backward_;
}
