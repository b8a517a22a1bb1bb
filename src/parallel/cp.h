/* cp.h — context parallelism: ring attention over the cp group (Liu et al. 2023, with the
 * zigzag split Megatron-LM and torchtitan use for causal balance).
 *
 * A sequence of T positions is cut into 2c chunks of T/(2c) (c = cp size); cp rank r holds
 * chunks r and 2c-1-r, so every rank has the same causal work. Positions stay global (the model
 * adds wpe at them, model/gpt_pass.c), and everything but attention is local to the rank's
 * Tl = T/c rows. Attention runs as a ring over the cp group:
 *   forward   K||V of the rank's two chunks goes around the ring (c-1 hops, each send /
 *             receive posted before the local block's compute and waited after it); for every
 *             (query chunk, K/V chunk) pair some row of which is visible, the block routine of
 *             core/attention.h gives a partial (out, lse) that is merged into the running one by
 *             log-sum-exp;
 *   backward  K||V goes around the ring again, and after each block's compute the dK||dV
 *             accumulator of that K/V travels one hop behind it, so after c hops every rank's
 *             dK, dV arrives home complete; dQ stays local.
 * The table of parallel operations (model/parops.h) gets the two ring entries (mpt_cp_ops),
 * with this struct as their context:
 *     mpt_cp cp;
 *     mpt_cp_init(&cp, &groups.dim[MPT_DIM_CP], B, T / c, D / tp, H / tp, threads, &arena, err);
 *     mpt_tp_ops(&ops, tp_comm);  mpt_cp_ops(&ops, &cp);
 *     ... mpt_gpt_init with place.cp = c, place.cp_rank = r, place.ops = &ops ...
 *     mpt_cp_free(&cp);
 * Buffers (workspace, from the arena, the list mpt_cp_buffers states): two K||V ring buffers
 * and two dK||dV ring buffers (B, Tl, 2D) each, a partial output (B, Tl/2, D) and its lse
 * (B, H, Tl/2), drow (B, H, Tl) and the block backward's per-thread dq accumulators. */
#ifndef MPT_CP_H
#define MPT_CP_H

#include "comm/comm.h"
#include "core/arena.h"
#include "core/buflist.h"
#include "model/parops.h"

typedef struct mpt_cp {
    mpt_comm *comm;          /* the cp group, not owned; rank r of size c */
    int c, r;
    int B, Tl, D, H;         /* largest micro-batch, local positions, this rank's width, heads */
    int threads;             /* backward threads (the workspace is sized for them) */
    mpt_arena *arena;        /* not owned */
    mpt_buflist bufs;        /* owned: what init took from the arena */
    float *kv[2], *dkv[2];   /* (B, Tl, 2D) each: K||V and dK||dV travelling the ring */
    float *part, *part_lse;  /* (B, Tl/2, D), (B, H, Tl/2): one block's partial result */
    float *drow;             /* (B, H, Tl): rowsum(dout * out) */
    float *work;             /* mpt_flash_block_workspace of a chunk pair */
    double wait_seconds;     /* time spent waiting on ring messages after the local compute
                              * (what the overlap did not hide), summed over calls */
} mpt_cp;

/* MPT_ERR_INPUT unless T splits into 2*cp equal chunks (and, with sp, each rank's T/cp rows
 * over tp): the message names the numbers. Pure. */
mpt_status mpt_cp_check(int T, int cp, int tp, int sp, mpt_error *err);

/* The module's buffers for micro-batches of B sequences of Tl local positions, width D, H heads
 * and `threads` backward threads. Pure when cp is NULL (the memory plan sums it). */
void mpt_cp_buffers(int B, int Tl, int D, int H, int threads, mpt_cp *cp, mpt_buflist *l);

/* comm: the cp group (size > 1). Allocates the buffers. Local (no communication). */
mpt_status mpt_cp_init(mpt_cp *cp, mpt_comm *comm, int B, int Tl, int D, int H, int threads,
                       mpt_arena *arena, mpt_error *err);
/* Safe on NULL and on a zeroed or freed struct. */
void mpt_cp_free(mpt_cp *cp);

/* Sets ring_attention_forward / _backward and cp_ctx = cp in *ops (the other entries are
 * kept). cp must outlive every use of the table. */
void mpt_cp_ops(mpt_par_ops *ops, mpt_cp *cp);

#endif
