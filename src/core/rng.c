/* rng.c — counter-based random numbers (see rng.h). */
#include "core/rng.h"

#include <math.h>

static uint64_t mix_(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t mpt_rng_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return mix_(mix_(seed) ^ h);
}

uint64_t mpt_rng_u64(uint64_t key, uint64_t index) {
    return mix_(key + (index + 1) * 0x9e3779b97f4a7c15ULL);
}

float mpt_rng_uniform(uint64_t key, uint64_t index) {
    return (float)(mpt_rng_u64(key, index) >> 40) * (1.0f / 16777216.0f);
}

float mpt_rng_normal(uint64_t key, uint64_t index) {
    /* u1 in (0, 1] so the log is finite; 53-bit doubles for an accurate tail */
    double u1 = ((double)(mpt_rng_u64(key, 2 * index) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(mpt_rng_u64(key, 2 * index + 1) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void mpt_rng_fill_normal(float *dst, size_t n, uint64_t key, uint64_t first, float std) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = std * mpt_rng_normal(key, first + i);
}
