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

/* Step j of the ring (0 .. nsteps): the reduce-scatter's steps k = j first (rs_steps of them),
 * then the all-gather's k = j - rs_steps. */
static int is_rs_(const mpt_ring *g, int j) { return j < g->rs_steps; }
static int k_of_(const mpt_ring *g, int j) { return is_rs_(g, j) ? j : j - g->rs_steps; }
static size_t send_chunk_(const mpt_ring *g, int j) {
    int r = g->comm->rank, R = g->comm->size, k = k_of_(g, j);
    return is_rs_(g, j) ? mod_((long)r - k - 1, R) : mod_((long)r - k, R);
}
static size_t recv_chunk_(const mpt_ring *g, int j) {
    int r = g->comm->rank, R = g->comm->size, k = k_of_(g, j);
    return is_rs_(g, j) ? mod_((long)r - k - 2, R) : mod_((long)r - k - 1, R);
}
/* 1 when the send of step j has completed (posted, and its slot no longer holds it). */
static int sent_(const mpt_ring *g, int j) {
    return j < g->sstep && !(g->sbusy[j % 2] && g->sstep_of[j % 2] == j);
}

/* Posts the send of step g->sstep into its slot (bf16: encoded into tx first). */
static mpt_status post_send_(mpt_ring *g, mpt_error *err) {
    int R = g->comm->size, j = g->sstep, slot = j % 2;
    int next = (g->comm->rank + 1) % R;
    size_t c = send_chunk_(g, j), ns = len_(g, c);
    mpt_req *rq = &g->req[1 + slot];
    mpt_status st;
    if (g->wire == MPT_BF16) { /* tmp holds the bf16 receive, then send, buffers */
        uint16_t *tx = (uint16_t *)(void *)g->tmp + g->w;
        mpt_bf16_encode(tx, g->buf + off_(g, c), ns);
        st = mpt_isend_dt(g->comm, tx, ns, MPT_BF16, next, g->tag, rq, err);
    } else {
        st = mpt_isend(g->comm, g->buf + off_(g, c), ns, next, g->tag, rq, err);
    }
    if (st) return st;
    g->sbusy[slot] = 1;
    g->sstep_of[slot] = j;
    g->sstep++;
    return MPT_OK;
}

/* Posts the receive of step g->rdone: the reduce-scatter's into tmp, the all-gather's in
 * place (bf16: into rx). */
static mpt_status post_recv_(mpt_ring *g, mpt_error *err) {
    int R = g->comm->size, j = g->rdone;
    int prev = (g->comm->rank + R - 1) % R;
    size_t c = recv_chunk_(g, j), nr = len_(g, c);
    mpt_status st;
    if (g->wire == MPT_BF16)
        st = mpt_irecv_dt(g->comm, g->tmp, nr, MPT_BF16, prev, g->tag, &g->req[0], err);
    else
        st = mpt_irecv(g->comm, is_rs_(g, j) || g->rtmp ? g->tmp : g->buf + off_(g, c), nr,
                       prev, g->tag, &g->req[0], err);
    if (!st) g->rposted = 1;
    return st;
}

/* The receive of step g->rdone has completed: add what came in (reduce-scatter) or widen it
 * (bf16 all-gather). */
static void absorb_(mpt_ring *g) {
    int j = g->rdone;
    size_t c = recv_chunk_(g, j), w = len_(g, c);
    float *dst = g->buf + off_(g, c);
    const uint16_t *rx = (const uint16_t *)(const void *)g->tmp; /* bf16 wire */
    if (is_rs_(g, j)) {
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
        /* the owner's finished sum as every other rank will hold it (its chunk is the last
         * step's) */
        if (g->wire == MPT_BF16 && j == g->rs_steps - 1 && g->kind == MPT_RING_ALLREDUCE)
            mpt_bf16_round(dst, dst, w);
    } else if (g->wire == MPT_BF16) {
        mpt_bf16_decode(dst, rx, w);
    } else if (g->rtmp) { /* landed in tmp while the chunk was still being sent */
        memcpy(dst, g->tmp, w * sizeof *dst);
        g->rtmp = 0;
    }
}

/* Moves the ring as far as the completed messages allow, without blocking; *moved = 1 when
 * anything completed or was posted. Dependencies: the send of step j carries the chunk that
 * step j-1's receive completed, so it waits for that receive only (and for its slot: two sends
 * in flight at most; bf16: one, the tx buffer); the receive of step j reuses tmp (after step
 * j-1's add) or, in the all-gather, lands on the chunk the reduce-scatter's step k sent, so
 * that send must have completed. So a rank never waits for its peer to finish reading before
 * it sends the next chunk (the lock-step version did: every step a round trip). */
static mpt_status step_(mpt_ring *g, int *moved, mpt_error *err) {
    mpt_status st;
    *moved = 0;
    if (g->rposted) {
        int done = 0;
        if ((st = mpt_test(&g->req[0], &done, err))) return st;
        if (done) {
            g->rposted = 0;
            g->rarrived = 1;
            *moved = 1;
        }
    }
    for (int s = 0; s < 2; s++)
        if (g->sbusy[s]) {
            int done = 0;
            if ((st = mpt_test(&g->req[1 + s], &done, err))) return st;
            if (done) {
                g->sbusy[s] = 0;
                *moved = 1;
            }
        }
    /* absorbed once arrived; a chunk received into tmp is copied in place once its own send
     * (the reduce-scatter's step k) has completed */
    if (g->rarrived && (!g->rtmp || sent_(g, k_of_(g, g->rdone)))) {
        absorb_(g);
        g->rdone++;
        g->rarrived = 0;
        *moved = 1;
    }
    int j = g->sstep;
    if (j < g->nsteps && g->rdone >= j && !g->sbusy[j % 2] &&
        (g->wire != MPT_BF16 || !g->sbusy[(j + 1) % 2])) {
        if ((st = post_send_(g, err))) return st;
        *moved = 1;
    }
    j = g->rdone;
    if (!g->rposted && !g->rarrived && j < g->nsteps) {
        /* an all-gather chunk that is still being sent (f32) is received into tmp, free since
         * the reduce-scatter's last add, so that the receive never waits for the peer to have
         * read this rank's message: a rank then needs its peer's turn only once per step */
        g->rtmp = g->wire == MPT_F32 && !is_rs_(g, j) && g->rs_steps > 0 && !sent_(g, k_of_(g, j));
        if ((st = post_recv_(g, err))) return st;
        *moved = 1;
    }
    if (g->rdone == g->nsteps && g->sstep == g->nsteps && !g->sbusy[0] && !g->sbusy[1])
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
    g->rs_steps = kind != MPT_RING_ALLGATHER ? R - 1 : 0;
    g->nsteps = g->rs_steps + (kind != MPT_RING_REDUCE_SCATTER ? R - 1 : 0);
    g->active = n > 0;
    if (!g->active) return MPT_OK;
    mpt_status st = post_recv_(g, err); /* step 0: the receive first, then the send */
    return st ? st : post_send_(g, err);
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
    int moved = 1;
    while (g->active && moved) {
        mpt_status st = step_(g, &moved, err);
        if (st) return st;
    }
    *done = !g->active;
    return MPT_OK;
}

mpt_status mpt_ring_wait_some(mpt_ring *g, mpt_error *err) {
    int done = 0;
    mpt_status st = mpt_ring_progress(g, &done, err);
    if (st || done) return st;
    /* blocked: until any of the receive and the sends completes. Not on the receive alone: the
     * next send may wait for its slot (a send MPI_Test has not yet seen complete), and when
     * every rank of the ring waits on its receive with its next send unposted, none arrives */
    size_t which = 0;
    if ((st = mpt_waitany(g->req, 3, &which, err))) return st;
    if (which == 3)
        return mpt_fail(err, MPT_ERR_RUN, "ring (tag %d): stalled at step %d of %d with nothing "
                        "in flight", g->tag, g->rdone, g->nsteps);
    return MPT_OK;
}

mpt_status mpt_ring_wait(mpt_ring *g, mpt_error *err) {
    while (g->active) {
        mpt_status st = mpt_ring_wait_some(g, err);
        if (st) return st;
    }
    return MPT_OK;
}

/* 1 while a send of the reduce-scatter is not complete: an all-gather receive posted then
 * may land in tmp (step_), so tmp stays the ring's until every one of them has completed. */
static int rs_send_pending_(const mpt_ring *g) {
    if (g->sstep < g->rs_steps) return 1;
    for (int s = 0; s < 2; s++)
        if (g->sbusy[s] && g->sstep_of[s] < g->rs_steps) return 1;
    return 0;
}

int mpt_ring_uses_tmp(const mpt_ring *g) {
    return g->active && (g->rdone < g->rs_steps || g->wire == MPT_BF16 || g->rtmp ||
                         (g->rdone < g->nsteps && rs_send_pending_(g)));
}
