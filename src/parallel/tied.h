/* tied.h — the tied embedding across a pipeline: with pp > 1 and an output head tied to wte,
 * the first stage holds wte (the embedding) and the last stage a copy of it (the head's,
 * model/params.h is_copy). Both copies must take the same update, so before the
 * data-parallel reduction of that tensor's unit the two ends' gradients are summed over the
 * embed group (the first and the last stage, same tp and dp coordinates). The data-parallel
 * module holds that tensor's gradient whole through the step and calls mpt_tied_sum from
 * mpt_dp_finish_grads (its pre_reduce callback), so the sum lands before its reduction.
 * Which ranks call: mpt_tied_sum, every rank of the embed group together (in the trainer's
 * set-up: every rank of a first or last pipeline stage). */
#ifndef MPT_TIED_H
#define MPT_TIED_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/status.h"
#include "model/params.h"

/* Pure: index of the tied wte in a stage's table (the embedding on the first stage, the head's
 * copy on the last), or SIZE_MAX when the table has none. */
size_t mpt_tied_tensor(const mpt_param_table *pt);

/* g (n elements) = the sum of g over the embed group; embed is the mpt_comm of the first and
 * last stage (void * so it fits mpt_dp_opts.pre_reduce). */
mpt_status mpt_tied_sum(void *embed, float *g, size_t n, mpt_error *err);

#endif
