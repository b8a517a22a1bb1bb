/* train_suggest.h — the layout `train --mem-limit` suggests when the plan does not fit (see
 * train_suggest.c). */
#ifndef MPT_TRAIN_SUGGEST_H
#define MPT_TRAIN_SUGGEST_H

#include <stddef.h>

#include "comm/comm.h"
#include "train/trainer.h"

/* Every rank of world calls. Writes "; the best layout of N ranks that fits ...: --dp ..."
 * (or why none fits) into buf, "" when the search itself fails. */
void mpt_train_suggest_layout(mpt_comm *world, const mpt_train_opts *o, char *buf, size_t n);

#endif
