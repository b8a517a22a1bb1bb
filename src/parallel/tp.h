/* tp.h — moving whole tensors in and out of tensor-parallel shards.
 *
 * Checkpoints hold full, layout-free tensors (CONTRACT §3); a rank of a tensor-parallel group
 * holds its shard of each (model/params.h, mpt_split). These two functions translate between a
 * buffer laid out by the full table (tp = 1) and one laid out by this rank's table. The tensor
 * math itself (column/row-parallel layers, vocabulary-parallel embedding and loss) lives in
 * model/gpt.c, which calls the tp group's all-reduces. */
#ifndef MPT_TP_H
#define MPT_TP_H

#include "comm/comm.h"
#include "model/params.h"

/* local_buf (local->total) = this rank's shard of every tensor of full_buf (full->total),
 * matched by full_id (a pipeline stage's table holds some of the tensors); padding is zero.
 * Local. */
void mpt_tp_extract(const mpt_param_table *local, const mpt_param_table *full,
                    const float *full_buf, float *local_buf);

/* full_buf (full->total) = every tensor of the local table assembled from the shards of all
 * ranks of tp (each passing its local_buf, local->total elements); tensors the local table does
 * not hold, and a pipeline stage's copy of the tied wte, are left zero (so that a sum over the
 * pipeline stages gives the whole model). All ranks of tp call; all get the result. With tp
 * NULL or of size 1 it is a local copy. */
mpt_status mpt_tp_assemble(mpt_comm *tp, const mpt_param_table *local, const float *local_buf,
                           const mpt_param_table *full, float *full_buf, mpt_error *err);

#endif
