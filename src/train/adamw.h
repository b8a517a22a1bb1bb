/* adamw.h — the trainer's view of the optimizer: AdamW, clipping and the learning-rate
 * schedule of CONTRACT §5 live in core/adamw.h (pure math on flat slices, so that parallel/
 * can run it over ZeRO shards without depending on train/); this header re-exports them. */
#ifndef MPT_TRAIN_ADAMW_H
#define MPT_TRAIN_ADAMW_H

#include "core/adamw.h"

#endif
