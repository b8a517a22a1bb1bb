/* pp_eval.h — a forward-only pass through the pipeline executor's stages: evaluation.
 *
 * Runs micro-batches 0..count-1 through every stage, one after the other (no backward, so no
 * schedule is needed): a stage receives its input (stages after the first), runs its forward
 * and sends its output on (stages before the last); the last stage adds up the token losses.
 * It borrows one activation set of the executor's pool (allocated at init; free between
 * optimizer steps), so evaluation takes no memory of its own. The model's hooks run as in
 * training: ZeRO-3 gathers each unit before its forward. Every rank of the model (pipeline,
 * tensor and data-parallel groups in step) calls it between optimizer steps; the caller sums
 * loss_sum over the pipeline and data-parallel groups. */
#ifndef MPT_PP_EVAL_H
#define MPT_PP_EVAL_H

#include "parallel/pp.h"

/* count micro-batches of Bm sequences of T tokens; batch(ctx, k, inputs, targets) fills
 * micro-batch k (inputs/targets: Bm*T scratch). *loss_sum: the sum of the token losses (last
 * stage; 0 elsewhere). */
mpt_status mpt_pp_eval(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int count, int32_t *inputs,
                       int32_t *targets, int Bm, int T, double *loss_sum, mpt_error *err);

#endif
