/* rng.h — counter-based random numbers: every value is a pure function of (key, index), so any
 * rank can produce any element of a tensor without producing the others, and the initial
 * weights never depend on the parallel layout (CONTRACT §2).
 *   key   = mpt_rng_key(seed, "transformer.h.3.attn.c_attn.weight")
 *   value = mpt_rng_normal(key, flat_index_in_full_tensor)
 * Generator: SplitMix64 finaliser over (key + index * golden-ratio increment); normals by
 * Box–Muller from two such draws (indices 2i and 2i+1 of the stream). */
#ifndef MPT_RNG_H
#define MPT_RNG_H

#include <stddef.h>
#include <stdint.h>

uint64_t mpt_rng_key(uint64_t seed, const char *name);
uint64_t mpt_rng_u64(uint64_t key, uint64_t index);
/* uniform in [0, 1), 24 random bits */
float mpt_rng_uniform(uint64_t key, uint64_t index);
/* standard normal */
float mpt_rng_normal(uint64_t key, uint64_t index);
/* dst[i] = std * normal(key, first + i) for i < n */
void mpt_rng_fill_normal(float *dst, size_t n, uint64_t key, uint64_t first, float std);

#endif
