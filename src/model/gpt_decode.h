/* gpt_decode.h — incremental decoding with a key/value cache: one forward of one token per
 * new token (generation).
 *
 * The same parameters (m->w[], laid out by model/params.h) and kernels (core/kernels.h) as
 * gpt_pass.c's forward, for one sequence on one rank holding the whole model: token t's
 * embedding, then per block LayerNorm, q/k/v for this token only (k and v appended to the
 * block's cache), attention of q over the cached keys 0..t, c_proj, the MLP, and at the end
 * ln_f and the head. The logits equal those of position t of a full forward over tokens 0..t
 * (up to the order of floating-point sums; tests/test_decode.c checks it).
 *
 *   mpt_decode d;  mpt_decode_init(&d, &model, &err);
 *   for each token: mpt_decode_step(&d, tok, &logits, &err);   // logits (V) of the next token
 *   mpt_decode_free(&d);
 *
 * The cache holds n_positions tokens; mpt_decode_step refuses a token beyond them (the caller
 * resets and feeds a shorter window again). */
#ifndef MPT_GPT_DECODE_H
#define MPT_GPT_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/gpt.h"

typedef struct mpt_decode {
    const mpt_gpt *m;   /* not owned: tp 1, first and last stage (the whole model) */
    int T;              /* positions the cache holds (n_positions) */
    int pos;            /* tokens in the cache: the next token's position */
    float *buf;         /* owned: everything below, one allocation */
    float *k, *v;       /* (L, T, D) each: the cached keys and values of every block */
    float *x;           /* (D) the residual stream of the current token */
    float *ln;          /* (D) a LayerNorm output */
    float *qkv;         /* (3D) */
    float *atty;        /* (D) attention output before c_proj */
    float *tmp;         /* (D) a projection's output */
    float *fch, *fchg;  /* (F) the MLP's c_fc output and its GELU */
    float *att;         /* (T) one head's attention weights */
    float *logits;      /* (padded_vocab) the current token's logits, first V real */
    float stats[2];     /* LayerNorm mean and rstd (unused) */
    float *moe_act, *moe_work; /* owned (malloc): an MoE block's buffers for one token
                                * (model/moe.h), NULL for a dense model */
} mpt_decode;

/* m: a model built for one rank (tp 1, whole model, MPT_GPT_INFER is enough). */
mpt_status mpt_decode_init(mpt_decode *d, const mpt_gpt *m, mpt_error *err);
void mpt_decode_free(mpt_decode *d); /* NULL safe */
/* Empties the cache (the next token is position 0). */
void mpt_decode_reset(mpt_decode *d);
/* Feeds token (0 <= token < vocab) at position d->pos; *logits (may be NULL) points at the
 * logits of the token after it (V entries, valid until the next call). MPT_ERR_INPUT when the
 * cache is full or the token is out of range. */
mpt_status mpt_decode_step(mpt_decode *d, int32_t token, const float **logits, mpt_error *err);

#endif
