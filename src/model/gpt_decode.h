/* gpt_decode.h — incremental decoding with a key/value cache: one forward of one token per
 * new token (generation), on one rank or on this rank's part of a tp x pp layout.
 *
 * The same parameters (m->w[], laid out by model/params.h) and kernels (core/kernels.h) as
 * gpt_pass.c's forward, for one sequence: token t's embedding, then per block LayerNorm,
 * q/k/v for this token only (k and v appended to the block's cache), attention of q over the
 * cached keys 0..t, c_proj, the MLP, and at the end ln_f and the head. The logits equal those
 * of position t of a full forward over tokens 0..t (up to the order of floating-point sums;
 * tests/test_decode.c checks it).
 *
 *   mpt_decode d;  mpt_decode_init(&d, &model, &err);
 *   for each token: mpt_decode_step(&d, tok, &logits, &err);   // logits (V) of the next token
 *   mpt_decode_free(&d);
 *
 * Tensor parallelism (m->tp > 1, every tp rank calls each step together): this rank holds the
 * cache of its H/tp heads only; c_attn and c_fc are column-parallel, the c_proj layers
 * row-parallel (partial outputs summed over tp by m->ops.reduce_from_tp, then the bias), the
 * embedding a masked lookup of this rank's vocabulary rows summed the same way, and the head
 * gives this rank's vocabulary rows, all-gathered over tp (m->ops.gather_seq: the ranks'
 * blocks in rank order are the padded vocabulary in order), so every tp rank ends with the
 * whole row of logits. No sequence or context parallelism (one token has no sequence to split).
 * Pipeline stage (m->first / m->last / m->nl): a step runs this stage's blocks only. A stage
 * that is not the first finds its input in d->x (D floats, the previous stage's output, which
 * the caller received there) and ignores the token; one that is not the last leaves its
 * output in d->x for the caller to send on, and *logits is NULL. The model never
 * communicates: parallel/ and train/generator.h move d->x between stages.
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
    const mpt_gpt *m;   /* not owned: a stage (or the whole model), tp shards allowed, no sp/cp */
    int T;              /* positions the cache holds (n_positions) */
    int pos;            /* tokens in the cache: the next token's position */
    float *buf;         /* owned: everything below, one allocation */
    float *k, *v;       /* (nl, T, Dl) each: the cached keys and values of this rank's heads */
    float *x;           /* (D) the residual stream of the current token (a stage's in/output) */
    float *ln;          /* (D) a LayerNorm output */
    float *qkv;         /* (3 Dl) this rank's heads' [q | k | v] */
    float *atty;        /* (Dl) attention output before c_proj */
    float *tmp;         /* (D) a projection's output */
    float *fch, *fchg;  /* (Fl) the MLP's c_fc output and its GELU */
    float *att;         /* (T) one head's attention weights */
    float *local;       /* (Vl) tp > 1: this rank's vocabulary rows of the logits */
    float *logits;      /* (padded_vocab) the current token's logits, first V real (last stage) */
    float stats[2];     /* LayerNorm mean and rstd (unused) */
    float *moe_act, *moe_work; /* owned (malloc): an MoE block's buffers for one token
                                * (model/moe.h), NULL for a dense model */
} mpt_decode;

/* m: a model built for inference (MPT_GPT_INFER is enough): one rank, or a tp shard and/or a
 * pipeline stage of one, without sequence or context parallelism. */
mpt_status mpt_decode_init(mpt_decode *d, const mpt_gpt *m, mpt_error *err);
void mpt_decode_free(mpt_decode *d); /* NULL safe */
/* Empties the cache (the next token is position 0). */
void mpt_decode_reset(mpt_decode *d);
/* Feeds token (0 <= token < vocab; checked on every rank, looked up on the first stage; pass
 * the same token on every rank) at position d->pos through
 * this rank's blocks; on the last stage *logits (may be NULL) points at the logits of the
 * token after it (V entries, valid until the next call), elsewhere *logits is NULL and d->x
 * holds the stage's output. MPT_ERR_INPUT when the cache is full or the token is out of range
 * (the same verdict on every rank that calls with the same token). */
mpt_status mpt_decode_step(mpt_decode *d, int32_t token, const float **logits, mpt_error *err);

#endif
