/* data.h — the fixed data order of CONTRACT §4.
 * Global sequence g = step*B + i (i in 0..B-1) starts at token (g*T) mod (n - T - 1); its
 * inputs are the T tokens from there and its targets the T tokens after each. */
#ifndef MPT_DATA_H
#define MPT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "tok/tokfile.h"

/* MPT_ERR_INPUT unless the file holds more than T + 1 tokens. */
mpt_status mpt_data_check(const mpt_tokfile *f, int T, const char *path, mpt_error *err);

/* Fills inputs/targets (count, T) with global sequences step*B + first .. + first+count-1;
 * either may be NULL. */
void mpt_data_batch(const mpt_tokfile *f, long step, int B, int first, int count, int T,
                    int32_t *inputs, int32_t *targets);

/* Context parallelism: as mpt_data_batch, but each of the count sequences keeps only the T/cp
 * positions of cp rank cp_rank: chunks cp_rank and 2cp-1-cp_rank of 2cp (T/(2cp) tokens each),
 * in that order, so inputs/targets are (count, T/cp). cp 1 is mpt_data_batch. */
void mpt_data_batch_cp(const mpt_tokfile *f, long step, int B, int first, int count, int T,
                       int cp, int cp_rank, int32_t *inputs, int32_t *targets);

#endif
