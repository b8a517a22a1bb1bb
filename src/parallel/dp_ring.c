/* dp_ring.c — ring reduce-scatter / all-gather / all-reduce advanced step by step over
 * nonblocking point-to-point messages (see dp_ring.h). */
#include "parallel/dp_ring.h"

#include <stdint.h>
#include <string.h>

#include "core/gemm_bf16.h"

static size_t mod_(long a, int R) { return (size_t)(((a % R) + R) % R); }

/* Chunk c is elements [n c / R, n (c+1) / R) of buf: c w and w when R divides n. */
static size_t off_(const mpt_ring *g, size_t c) { return g->n * c / (size_t)g->comm->size; }
static size_t len_(const mpt_ring *g, size_t c) { return off_(g, c + 1) - off_(g, c); }

/* Posts ring step g->step of the current phase: the receive first, then the send. */
static mpt_status post_(mpt_ring *g, mpt_error *err) {
    int R = g->comm->size, r = g->comm->rank, k = g->step;
    int next = (r + 1) % R, prev = (r + R - 1) % R;
    size_t send_c, recv_c;
    float *into;
    if (g->reducing) {
        send_c = mod_((long)r - k - 1, R);
        recv_c = mod_((long)r - k - 2, R);
        into = g->tmp;
    } else {
        send_c = mod_((long)r - k, R);
        recv_c = mod_((long)r - k - 1, R);
        into = g->buf + off_(g, recv_c);
    }
    size_t ns = len_(g, send_c), nr = len_(g, recv_c);
    if (g->wire == MPT_BF16) { /* tmp holds the bf16 receive, then send, buffers */
        uint16_t *rx = (uint16_t *)(void *)g->tmp, *tx = rx + g->w;
        mpt_bf16_encode(tx, g->buf + off_(g, send_c), ns);
        mpt_status st = mpt_irecv_dt(g->comm, rx, nr, MPT_BF16, prev, g->tag, &g->req[0], err);
        if (!st) st = mpt_isend_dt(g->comm, tx, ns, MPT_BF16, next, g->tag, &g->req[1], err);
        return st;
    }
    mpt_status st = mpt_irecv(g->comm, into, nr, prev, g->tag, &g->req[0], err);
    if (!st) st = mpt_isend(g->comm, g->buf + off_(g, send_c), ns, next, g->tag, &g->req[1], err);
    return st;
}

/* Both messages of the current step are complete: add what came in (reduce phase), move to
 * the next step or phase, and post it. */
static mpt_status advance_(mpt_ring *g, mpt_error *err) {
    int R = g->comm->size;
    const uint16_t *rx = (const uint16_t *)(const void *)g->tmp; /* bf16 wire */
    if (g->reducing) {
        size_t c = mod_((long)g->comm->rank - g->step - 2, R), w = len_(g, c);
        float *dst = g->buf + off_(g, c);
        const float *src = g->tmp;
        if (g->wire == MPT_BF16) {
#pragma omp parallel for simd schedule(static) if (w > 65536)
            for (size_t i = 0; i < w; i++) {
                uint32_t u = (uint32_t)rx[i] << 16;
                float v;
                memcpy(&v, &u, sizeof v);
                dst[i] += v;
            }
        } else {
#pragma omp parallel for simd schedule(static) if (w > 65536)
            for (size_t i = 0; i < w; i++) dst[i] += src[i];
        }
    } else if (g->wire == MPT_BF16) { /* all-gather: the received chunk, widened in place */
        size_t c = mod_((long)g->comm->rank - g->step - 1, R);
        mpt_bf16_decode(g->buf + off_(g, c), rx, len_(g, c));
    }
    if (++g->step < R - 1) return post_(g, err);
    if (g->reducing && g->kind == MPT_RING_ALLREDUCE) {
        g->reducing = 0;
        g->step = 0;
        if (g->wire == MPT_BF16) { /* the owner's sum as every other rank will hold it */
            size_t c = (size_t)g->comm->rank;
            mpt_bf16_round(g->buf + off_(g, c), g->buf + off_(g, c), len_(g, c));
        }
        return post_(g, err);
    }
    g->active = 0;
    return MPT_OK;
}

mpt_status mpt_ring_start(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf, size_t n,
                          float *tmp, int tag, mpt_error *err) {
    return mpt_ring_start_dt(g, comm, kind, buf, n, tmp, MPT_F32, tag, err);
}

/* Any n: chunk c = [n c / R, n (c+1) / R) (start_dt has checked that R divides n). */
static mpt_status start_(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf, size_t n,
                         float *tmp, mpt_dtype wire, int tag, mpt_error *err) {
    memset(g, 0, sizeof *g);
    int R = comm ? comm->size : 1;
    if (R <= 1) return MPT_OK;
    if (kind != MPT_RING_ALLGATHER && !tmp)
        return mpt_fail(err, MPT_ERR_RUN, "ring reduction without a receive buffer");
    if (wire != MPT_F32 && (wire != MPT_BF16 || kind == MPT_RING_ALLGATHER))
        return mpt_fail(err, MPT_ERR_RUN, "ring: %s messages only for the reductions",
                        mpt_dtype_name(wire));
    g->comm = comm;
    g->kind = kind;
    g->buf = buf;
    g->tmp = tmp;
    g->n = n;
    g->w = (n + (size_t)R - 1) / (size_t)R;
    g->tag = tag;
    g->wire = wire;
    g->reducing = kind != MPT_RING_ALLGATHER;
    g->active = n > 0;
    return g->active ? post_(g, err) : MPT_OK;
}

mpt_status mpt_ring_start_dt(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf,
                             size_t n, float *tmp, mpt_dtype wire, int tag, mpt_error *err) {
    int R = comm ? comm->size : 1;
    if (R > 1 && n % (size_t)R != 0) {
        memset(g, 0, sizeof *g);
        return mpt_fail(err, MPT_ERR_RUN, "ring over %d ranks: %zu elements do not split evenly",
                        R, n);
    }
    return start_(g, comm, kind, buf, n, tmp, wire, tag, err);
}

mpt_status mpt_ring_start_any(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf,
                              size_t n, float *tmp, int tag, mpt_error *err) {
    return start_(g, comm, kind, buf, n, tmp, MPT_F32, tag, err);
}

mpt_status mpt_ring_progress(mpt_ring *g, int *done, mpt_error *err) {
    while (g->active) {
        int a = 0, b = 0;
        mpt_status st = mpt_test(&g->req[0], &a, err);
        if (!st) st = mpt_test(&g->req[1], &b, err);
        if (st) return st;
        if (!a || !b) break;
        if ((st = advance_(g, err))) return st;
    }
    *done = !g->active;
    return MPT_OK;
}

mpt_status mpt_ring_wait(mpt_ring *g, mpt_error *err) {
    while (g->active) {
        mpt_status st = mpt_waitall(g->req, 2, err);
        if (!st) st = advance_(g, err);
        if (st) return st;
    }
    return MPT_OK;
}

int mpt_ring_uses_tmp(const mpt_ring *g) {
    return g->active && (g->reducing || g->wire == MPT_BF16);
}
