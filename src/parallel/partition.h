/* partition.h — how a model's blocks are split into contiguous pipeline stages.
 *   uniform    L/p blocks each, the first L%p stages one more
 *   auto       the split that minimises the largest stage's predicted time, counting the
 *              embedding on the first stage and ln_f, the head and the loss on the last
 *              (model FLOPs of forward + backward per token, model/gpt.h's math)
 *   L0,L1,...  exactly these counts (they must add up to the model's layers)
 * Every stage gets at least one block. Pure. */
#ifndef MPT_PARTITION_H
#define MPT_PARTITION_H

#include "core/status.h"
#include "model/config.h"

/* Whether stage `stage` holding blocks [first_layer, first_layer + n) fits in memory (auto
 * never picks a split with a stage that does not). */
typedef int (*mpt_partition_fits_fn)(void *ctx, int stage, int first_layer, int n);

/* counts[0..p): blocks of each stage. MPT_ERR_INPUT for p > layers, a bad list, or (auto) no
 * split whose every stage fits. fits may be NULL (everything fits). */
mpt_status mpt_partition(const mpt_config *cfg, int T, int p, const char *mode, int *counts,
                         mpt_partition_fits_fn fits, void *ctx, mpt_error *err);
/* Predicted time of a stage in FLOPs per token (forward + backward): blocks [l0, l0+n), plus
 * the embedding when first, plus the head and loss when last. */
double mpt_partition_stage_cost(const mpt_config *cfg, int T, int n, int first, int last);

#endif
