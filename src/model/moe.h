/* moe.h — the Mixture-of-Experts MLP of one block (CONTRACT §2): router, top-K gating,
 * capacity, expert GEMMs over contiguous token runs, weighted combine, load-balancing and
 * z-losses, and the full backward. model/gpt_pass.c calls it in place of the dense MLP of an
 * MoE block; every tp rank of the block runs it whole (experts are not split over tp).
 *
 * Math, for the N token rows x (N, D) of a micro-batch (ln_2's output):
 *   z = x Wr                        router logits (N, E), Wr = mlp.router.weight [D, E]
 *   p = softmax(z)                  full router probabilities (for the aux loss)
 *   top-K of z per token (ties: the lower expert index), gates g = softmax of the K chosen
 *   logits (they sum to 1)
 *   capacity c > 0: expert e takes at most cap = ceil(c*N*K/E) assignments, those of the
 *   highest gate weight (ties: the earlier token); a dropped assignment adds nothing (the
 *   token keeps its residual). c = 0: nothing is dropped.
 *   y_t = sum over t's kept assignments (e, g) of g * expert_e(x_t),
 *   expert_e(x) = c_proj_e(gelu_tanh(c_fc_e(x)))
 *   aux = aux_coef * E * sum_e f_e P_e, f_e = (assignments routed to e, before capacity) / (N*K),
 *         P_e = mean over the N tokens of p_e   (Switch Transformer form; f carries no gradient)
 *   zl  = z_coef * mean over tokens of logsumexp(z)^2
 * Context parallelism splits a micro-batch's sequence over cp ranks: f then counts the
 * assignments of every cp rank (ops->cp_count_sum) while P_e stays this rank's mean, and since
 * aux is linear in P the cp ranks' weighted terms add up to the whole micro-batch's aux.
 * Sequence parallelism (tp with --sp) splits the rows the same way over tp: each tp rank
 * routes and dispatches only its N/tp rows (no expert work repeated across tp), f is summed
 * over tp as well (tp_sum), and the router's and experts' gradients, partial per tp rank, are
 * summed over tp by the model after each pass that writes them (model/moe.c).
 * aux and zl are computed per micro-batch (as Megatron does) and enter the training loss with
 * the micro-batch's weight N * dloss (dloss = 1 / tokens of the global batch), so that one
 * micro-batch per step adds exactly aux + zl.
 *
 * Expert parallelism (ep > 1): this rank holds experts [ep_rank*El, (ep_rank+1)*El), El = E/ep.
 * The assignments kept are laid out sorted by expert (then token) as the S "sent" rows; the
 * table's expert_dispatch (parallel/ep.c) moves each to the rank of its expert, which sorts the
 * R rows it receives by local expert into contiguous runs, runs its experts on them and sends
 * the outputs back with expert_combine (original order). With ep == 1 dispatch and combine are
 * local copies. Every ep rank calls forward and backward together (each calls the collectives
 * once per call, with zero rows if it has none).
 *
 * Buffers: per MoE block and micro-batch mpt_moe_act_elems floats of saved activations, and
 * mpt_moe_work_elems floats of scratch shared by every block; both in the arena (model/gpt.c
 * sizes them, so the memory plan counts them). Integer fields live in those float buffers as
 * int32 (same size). R is bounded by mpt_moe_max_rows: with capacity at most cap per expert and
 * source rank, ep*El*cap; dropless, ep*N*K (every source rank's N*K assignments could pick
 * this rank's experts: the worst case, never exceeded), or ceil(f*N*K) with
 * cfg->dropless_bound f in [1, ep) (--moe-dropless-bound: f times the rank's fair share N*K,
 * which perfectly balanced routing fills exactly). The memory plan counts R rows for the
 * dispatch and combine buffers; the dispatch (parallel/ep.c) compares every rank's incoming
 * rows with R after exchanging the counts and before moving any row, so a step whose routing
 * exceeds the bound fails on every ep rank with MPT_ERR_RUN (exit 1) instead of overflowing. */
#ifndef MPT_MOE_H
#define MPT_MOE_H

#include <stddef.h>

#include "core/status.h"
#include "model/config.h"
#include "model/parops.h"

/* What a step's MoE blocks did, summed over blocks and micro-batches on this rank. */
typedef struct mpt_moe_stats {
    double aux_loss;      /* sum of N*dloss*aux over blocks and micro-batches */
    double z_loss;        /* the same for the z-loss */
    double dropped;       /* assignments dropped at capacity */
    double assignments;   /* assignments routed (N*K per block and micro-batch) */
    double tokens[MPT_MAX_EXPERTS]; /* assignments routed to each expert (before capacity) */
} mpt_moe_stats;

/* Where one block's forward and backward spend their time (bench/moe_profile.c): when a block
 * has prof set, each pass adds the seconds of each phase, read with prof->clock, to t[phase].
 * Phases run one after another on the calling thread, so they add up to the whole pass. */
enum {
    MPT_MOE_F_ROUTER,    /* router GEMM x Wr */
    MPT_MOE_F_TOPK,      /* softmax, logsumexp, top-K, gates */
    MPT_MOE_F_COUNTS,    /* capacity, counts and send order, aux and z-loss (cp / tp sums) */
    MPT_MOE_F_GATHER,    /* token rows gathered into send order (and into expert runs) */
    MPT_MOE_F_DISPATCH,  /* ep: the all-to-all of rows, then the sort into expert runs */
    MPT_MOE_F_EXPERTS,   /* the experts: c_fc GEMM, bias + GELU, c_proj GEMM */
    MPT_MOE_F_COMBINE,   /* ep: un-sort, the all-to-all back */
    MPT_MOE_F_WSUM,      /* gate-weighted sum into the output rows */
    MPT_MOE_B_GATE,      /* gate gradients and the gate-scaled output gradient rows */
    MPT_MOE_B_DISPATCH,  /* ep: all-to-all of the gradient rows, sort into expert runs */
    MPT_MOE_B_EXPERTS,   /* experts' input-gradient path: GEMMs (beta 0) and GELU backward */
    MPT_MOE_B_WEIGHTS,   /* experts' weight and bias gradients */
    MPT_MOE_B_COMBINE,   /* ep: un-sort, the all-to-all back */
    MPT_MOE_B_SCATTER,   /* rows added into dx */
    MPT_MOE_B_ROUTER,    /* router logits' gradient: gate softmax, aux and z-loss terms */
    MPT_MOE_B_ROUTER_GEMM, /* router GEMM backward (dx, dWr) */
    MPT_MOE_NPHASE
};
typedef struct mpt_moe_prof {
    double (*clock)(void);
    double t[MPT_MOE_NPHASE];
} mpt_moe_prof;

/* One MoE block on this rank. w and g are the tensor pointer tables at the block's router:
 * w[0] = router [D, E]; local expert j's c_fc.weight, .bias, c_proj.weight, .bias at
 * w[1 + 4j + 0..3] (model/params.h lays them out so). g the same for gradients (training). */
typedef struct mpt_moe_block {
    const mpt_config *cfg;
    const mpt_par_ops *ops; /* expert_dispatch / _combine used when ep > 1 */
    int ep, ep_rank;
    int tp_sum;             /* sp: each tp rank routes its own rows, so the assignment counts f
                             * are summed over tp too (ops->reduce_from_tp) */
    float *const *w;
    float *const *g;
    mpt_moe_prof *prof;     /* NULL (the default): no timing */
} mpt_moe_block;

/* Rows this rank's experts may receive for N local tokens (see above). 0 on overflow. */
size_t mpt_moe_max_rows(const mpt_config *c, size_t N, int ep);
/* Floats of saved activations one MoE block needs for N tokens; 0 on overflow. */
size_t mpt_moe_act_elems(const mpt_config *c, size_t N, int ep);
/* Floats of scratch (forward only when !training); 0 on overflow. */
size_t mpt_moe_work_elems(const mpt_config *c, size_t N, int ep, int training);

/* out (N, D) = the MoE MLP of x (N, D) (overwritten); act (mpt_moe_act_elems) keeps what
 * backward needs; work is scratch. weight = N * dloss, the weight of this micro-batch's aux and
 * z-losses in the training loss; stats (may be NULL) gets them added. */
mpt_status mpt_moe_forward(const mpt_moe_block *b, float *out, const float *x, size_t N,
                           float *act, float *work, float weight, mpt_moe_stats *stats,
                           mpt_error *err);
/* dx (N, D) += the gradient of the loss w.r.t. x, from dy (N, D) the gradient of out; the
 * router's and this rank's experts' gradients are accumulated (+=) into b->g, the router's
 * including the aux and z-loss terms (weight as in forward). act as forward left it. */
mpt_status mpt_moe_backward(const mpt_moe_block *b, float *dx, const float *dy, const float *x,
                            size_t N, float *act, float *work, float weight, int split,
                            mpt_error *err);
/* The split backward of the zero-bubble schedules (model/gpt.h split_w): with split set,
 * mpt_moe_backward is the B pass (dx through the experts, the dispatch and combine, the gates
 * and the router; no weight gradient) and keeps the expert rows' output gradients and the
 * router logits' gradient in act (mpt_moe_split_elems more floats per block); this W pass then
 * accumulates (+=) the experts' and the router's weight gradients from them and from x, with no
 * communication. The sum of B and W is the unsplit backward. */
mpt_status mpt_moe_backward_weights(const mpt_moe_block *b, const float *x, size_t N,
                                    const float *act, mpt_error *err);
/* Floats of act a block needs beyond mpt_moe_act_elems for the split backward; 0 on overflow. */
size_t mpt_moe_split_elems(const mpt_config *c, size_t N, int ep);

#endif
