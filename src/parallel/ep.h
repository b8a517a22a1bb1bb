/* ep.h — expert parallelism: the MoE blocks' token dispatch and combine over the ep group
 * (model/parops.h expert entries), and the expert gradients' own buffer and reduction.
 *
 * Layout: ep splits the dp x cp ranks (parallel/mesh.h: ep divides dp, ep_rank = dp_rank % ep;
 * or ep spans every cp rank and ep / cp dp ranks, ep_rank = (cp_rank + cp * dp_rank) % ep).
 * In every MoE block ep rank q holds experts [q*E/ep, (q+1)*E/ep)
 * (model/params.h, mpt_params_build_stage_ep). Dense tensors, the routers included, are
 * reduced over dp (x cp) as before; an expert's gradient already sums the tokens of its whole
 * ep group (they were dispatched to it) and is then summed over the expert-data-parallel
 * group: the dp x cp ranks with the same ep_rank (edp, dp * cp / ep of them). With cp > 1 the
 * routers' assignment counts are summed over cp (model/moe.h), so the load-balancing loss
 * sees the whole sequence of each micro-batch.
 *
 *   mpt_ep ep;  mpt_ep_init(&ep, &groups.dim[MPT_DIM_EP], cfg.experts, err);   // every rank
 *   mpt_par_ops ops;  mpt_tp_ops(&ops, tp);  mpt_ep_ops(&ops, &ep);
 *   ... mpt_gpt_init with place.ep / ep_rank, mpt_dp_init (zero 0) ...
 *   mpt_ep_grads_init(&ep, &model, edp, &arena, err);   // zero 0: expert grads out of the dp buckets
 *   (zero 1-3: mpt_dp_opts.edp_size / .edp = edp instead, below)
 *   per step: mpt_ep_grads_zero; forward/backward; mpt_dp_finish_grads;
 *             mpt_ep_grads_finish (edp sum, into the model's gradient buffer);
 *             mpt_dp_grad_norm then mpt_ep_fix_norm
 *
 * Dispatch (every ep rank calls, in the same order, also with zero rows): the rows arrive
 * sorted by expert, so each destination's rows are one run; the per-destination row counts are
 * exchanged first (an all-to-all of one int each), then the rows and their expert indices with
 * MPI_Alltoallv. Combine sends the outputs back with the counts reversed, so they return in
 * the order the rows were sent. The counts of the last dispatch are kept for its combine.
 *
 * Why the expert gradients have their own buffer: the dp module all-reduces whole units over
 * every dp rank, which would add different experts together. The model's gradient pointers of
 * expert tensors point into this buffer instead (their slots in the flat gradient buffer stay
 * zero through the dp reduction); after it, the buffer is summed over edp and copied into those
 * slots, where the norm and AdamW find it.
 *
 * ZeRO 1-3 (the Megatron / DeepSpeed MoE layout): the table still holds only this ep rank's
 * E/ep experts, and the dp module shards them over edp, not dp (parallel/dp.h, "expert
 * parallelism with ZeRO"). The table starts each MoE block's experts at an aligned offset
 * (model/params.h, unit_xbegin), which makes every unit two parts: the dense part (ln_1, attn,
 * ln_2, the router) sharded over dp x cp like before, and the expert part sharded over edp.
 * Each part has its own buckets (zero 1), staging slots (zero 2/3) and ZeRO-3 working slots,
 * reduce-scattered and all-gathered over its own group, so one mpt_dp runs both with all its
 * machinery (overlap, the split backward's W staging, checkpoint slices) and no expert buffer:
 *   zero 1   gradients reduce-scattered per part, AdamW on the rank's slices, parameters
 *            all-gathered per part; a rank keeps its E/ep experts whole, not all E
 *   zero 2   as 1 with the gradients staged per part: an expert slot holds one block's E/ep
 *   zero 3   the expert part of a block gathered over edp: E/ep experts, not E
 * AdamW state is E/dp experts' per rank either way (E/ep experts over dp/ep edp ranks). The
 * norm needs no correction: the dp group is edp x ep and ep ranks hold different experts, so
 * its sum counts every expert once. mpt_ep_grads_* and mpt_ep_fix_norm serve ZeRO-0 only.
 * Checkpoints find an expert's slices with mpt_dp_owned (group edp), gathered at edp rank 0,
 * the expert's holder as under ZeRO-0 (train/trainer_ckpt.c).
 * Why parts of one mpt_dp rather than a second mpt_dp over edp: the model has one table, one
 * flat parameter buffer, one set of hooks per unit and one slice space that AdamW, the norm and
 * the checkpoint code walk; a second instance would need a second table with an index map into
 * the model's, hooks chained per unit and two slice spaces in every checkpoint path. With parts
 * the dp code changed only where it named the group (its size, rank, communicator) of a range,
 * and everything that walks units (the pipeline's view hooks, the split backward) is as it was. */
#ifndef MPT_EP_H
#define MPT_EP_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/arena.h"
#include "model/gpt.h"
#include "model/parops.h"

typedef struct mpt_ep {
    mpt_comm *comm;        /* the ep group, not owned */
    mpt_comm *edp;         /* the expert-data-parallel group, not owned (NULL: one rank) */
    int n, rank, El;       /* group size, this rank, experts per rank */
    int *cnt;              /* owned (malloc), 8n ints: send / recv row counts and displacements
                            * of the last dispatch, then element-sized copies */
    mpt_gpt *model;        /* mpt_ep_grads_init: not owned */
    mpt_arena *arena;      /* not owned */
    float *grads;          /* this rank's expert gradients (kind grads), grads_n elements */
    size_t grads_n;
} mpt_ep;

/* comm: the ep group (every rank of the world calls, each with its group). */
mpt_status mpt_ep_init(mpt_ep *ep, mpt_comm *comm, int experts, mpt_error *err);
void mpt_ep_free(mpt_ep *ep);
/* Fills the expert entries of ops (and ops->ep_ctx = ep). */
void mpt_ep_ops(mpt_par_ops *ops, mpt_ep *ep);

/* Elements of the expert tensors in table pt (this rank's): the extra gradient buffer. */
size_t mpt_ep_expert_elems(const mpt_param_table *pt);
/* Takes the expert gradient buffer from the arena and points the model's expert gradient
 * pointers into it. edp: the ranks holding the same experts (NULL or size 1: none). */
mpt_status mpt_ep_grads_init(mpt_ep *ep, mpt_gpt *model, mpt_comm *edp, mpt_arena *arena,
                             mpt_error *err);
void mpt_ep_grads_zero(mpt_ep *ep);
/* After mpt_dp_finish_grads: the sum over edp, copied into the flat gradient buffer. */
mpt_status mpt_ep_grads_finish(mpt_ep *ep, mpt_error *err);
/* *norm from mpt_dp_grad_norm counted only this ep rank's experts: adds the others' (every
 * rank of the world calls; tp and pp are the groups the dp module's norm summed over). */
mpt_status mpt_ep_fix_norm(mpt_ep *ep, mpt_comm *tp, mpt_comm *pp, double *norm, mpt_error *err);

#endif
