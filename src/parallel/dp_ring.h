/* dp_ring.h — ring reduce-scatter / all-gather / all-reduce of one float buffer, advanced one
 * ring step at a time over nonblocking point-to-point messages (mpt_isend / mpt_irecv), so the
 * caller decides when it moves: the data-parallel module advances every ring in flight from
 * the backward's hooks between layers, and the reduction overlaps the backward for real (a
 * nonblocking MPI collective through libnbc would only move inside MPI calls, and would not
 * use the tuned ring either).
 *
 * The buffer holds R chunks of w = n/R elements (R = comm size, n a multiple of R); rank r
 * owns chunk r. With next = r+1 and prev = r-1 (mod R), at ring step k = 0..R-2:
 *   reduce-scatter: send chunk (r-k-1) to next; receive chunk (r-k-2) from prev into tmp and
 *                   add it into that chunk. After R-1 steps chunk r holds the sum over ranks
 *                   (the other chunks hold partial sums).
 *   all-gather:     send chunk (r-k) to next; receive chunk (r-k-1) from prev in place. After
 *                   R-1 steps every chunk k holds rank k's chunk k.
 *   all-reduce:     reduce-scatter, then all-gather. Each chunk's sum is computed on one rank
 *                   and copied to the others, so every rank holds bit-identical results (the
 *                   order of the additions differs from MPI_Allreduce's).
 *
 * Steps are not lock-step: a rank posts step k+1's send as soon as step k's receive has been
 * absorbed (that is the chunk it sends), without waiting for its own step-k send to be read;
 * an all-gather chunk that arrives while this rank still sends it lands in tmp and is copied
 * into place once that send completes (dp_ring.c, step_). The messages and the sums are those of the lock-step ring.
 *
 *   mpt_ring g;
 *   mpt_ring_start(&g, comm, MPT_RING_ALLREDUCE, grads, n, tmp, tag, err);   // posts step 0
 *   while (...compute...) mpt_ring_progress(&g, &done, err);   // moves as far as data arrived
 *   mpt_ring_wait(&g, err);                                     // the rest, watched
 *
 * Which ranks call: every rank of comm starts the same rings (same n, kind and tag) in the
 * same order; a tag must not be shared by two rings in flight at once on the same comm. The
 * buffer (and tmp) must stay untouched until the ring is done. tmp: w elements (reduce phases),
 * may be NULL for MPT_RING_ALLGATHER. With R = 1 a ring is done at start.
 *
 * bf16 on the wire (mpt_ring_start_dt, MPT_BF16; --grad-reduce-dtype bf16): every message is
 * the fp32 chunk rounded to bf16 (half the bytes); on receipt it is widened and added in fp32.
 * So each partial sum is rounded once per hop (R-1 roundings of relative 2^-8 at most, against
 * R-1 fp32 additions in fp32 mode), never summed in bf16 (which would lose the small addends
 * of a long sum). An all-reduce rounds each owner's finished chunk too before it is gathered,
 * so every rank still holds bit-identical sums. The two bf16 message buffers (receive, send)
 * are carved from tmp (w fp32 = 2w bf16), which the ring then keeps through its all-gather
 * phase; the reduce-scatter's owner keeps its chunk in fp32. Reduce kinds only. */
#ifndef MPT_DP_RING_H
#define MPT_DP_RING_H

#include <stddef.h>

#include "comm/comm.h"

typedef enum mpt_ring_kind {
    MPT_RING_ALLREDUCE,
    MPT_RING_REDUCE_SCATTER,
    MPT_RING_ALLGATHER
} mpt_ring_kind;

typedef struct mpt_ring {
    mpt_comm *comm;      /* not owned */
    mpt_ring_kind kind;
    float *buf;          /* (R * w) not owned */
    float *tmp;          /* (w) not owned: receive buffer of the reduce phase */
    size_t n;            /* elements of buf */
    size_t w;            /* elements of the largest chunk: n / R, or rounded up (start_any) */
    int tag;
    mpt_dtype wire;      /* MPT_F32 or MPT_BF16: the messages' element type */
    int rs_steps;        /* reduce-scatter steps (R-1, or 0 for an all-gather) */
    int nsteps;          /* all steps: rs_steps, then the all-gather's R-1 (if any) */
    int rdone;           /* receives completed and absorbed (added, or widened) */
    int rposted;         /* 1 while the receive of step rdone is posted */
    int rarrived;        /* 1 when it has arrived but is not absorbed yet */
    int rtmp;            /* 1 when it goes to tmp (an all-gather chunk still being sent) */
    int sstep;           /* sends posted */
    int sbusy[2];        /* send slot j % 2 holds the pending send of step sstep_of[...] */
    int sstep_of[2];
    int active;          /* 0 once done */
    mpt_req req[3];      /* the receive, and the two send slots */
} mpt_ring;

/* Starts the ring and posts its first step (see above). n must be a multiple of comm->size. */
mpt_status mpt_ring_start(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf, size_t n,
                          float *tmp, int tag, mpt_error *err);
/* The same with the messages in wire (MPT_F32, or MPT_BF16 for the reduce kinds: see above). */
mpt_status mpt_ring_start_dt(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf,
                             size_t n, float *tmp, mpt_dtype wire, int tag, mpt_error *err);
/* The same for any n >= 0, fp32 messages (the tensor-parallel sums, parallel/tp_ring.c):
 * chunk c is elements [n c / R, n (c+1) / R) of buf, so the chunks differ by one element at
 * most and some are empty when n < R; tmp holds ceil(n / R) elements. With R dividing n it is
 * mpt_ring_start, message for message. */
mpt_status mpt_ring_start_any(mpt_ring *g, mpt_comm *comm, mpt_ring_kind kind, float *buf,
                              size_t n, float *tmp, int tag, mpt_error *err);
/* Completes every step whose messages have arrived and posts the next; never blocks.
 * *done = 1 when the ring has finished. */
mpt_status mpt_ring_progress(mpt_ring *g, int *done, mpt_error *err);
/* Blocks until at least one of the ring's messages completes (any of them: the receive or a
 * send), moving it as far as it can before (the final wait of several rings in flight: each
 * wait moves one, then all are progressed, so no ring idles behind another's wait). Watched
 * like any wait. */
mpt_status mpt_ring_wait_some(mpt_ring *g, mpt_error *err);
/* Runs the ring to its end (each step's wait watched by the comm layer's watchdog). */
mpt_status mpt_ring_wait(mpt_ring *g, mpt_error *err);
/* 1 while the ring may still write tmp: its reduce-scatter phase, and in the all-gather until
 * every reduce-scatter send has completed (a chunk arriving while its own send is pending lands
 * in tmp). Once 0 it stays 0, and the ring never touches tmp again: tmp may serve another ring. */
int mpt_ring_uses_tmp(const mpt_ring *g);

#endif
