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

#endif
