/* generator.h — text generation from a checkpoint on any tp x pp layout: the checkpoint's
 * full tensors loaded into this rank's shard of its pipeline stage, one token at a time through
 * the key/value cache of every stage (model/gpt_decode.h), the next token chosen on the last
 * stage (model/sample.h) and shared with every rank.
 *
 * Every rank of world calls every function, with the same arguments, in the same order:
 *     mpt_generator g;                          // must not move after init (the tp table points
 *     mpt_generator_init(&g, world, dir, tp, pp, threads, 0, &err);     // into it)
 *     for (i = 0; i < n_new; i++) {
 *         mpt_generator_next(&g, &sampler, ctx, n, i, &next, &err);  // same next on every rank
 *         ctx[n++] = next;
 *     }
 *     mpt_generator_free(&g);
 * Layout (world rank order tp fastest, as the trainer's): tp ranks hold H/tp heads, F/tp MLP
 * columns and Vp/tp vocabulary rows of each block and of the tied head; pp stages hold the
 * uniform partition of the blocks (mpt_partition). A stage receives the token's hidden state
 * (D floats) from the previous stage and sends its output to the next, point-to-point over the
 * pp group; the last stage's tp ranks all-gather the vocabulary rows of the logits, so each of
 * them holds the same row and picks the same token, which the pp group then broadcasts from
 * the last stage. Every rank therefore ends each call with the same token: the same text as
 * one rank, but for ties broken differently by the sums' rounding (the tp partial sums add up
 * in another order than one rank's).
 * MoE checkpoints: every rank holds all the experts of its stage's MoE blocks (whole on every
 * tp rank, no expert parallelism) and routes each token dropless (the capacity factor is set
 * to 0), so a token's experts never depend on the other tokens of the window.
 * Failures are agreed on over world at init (a bad layout or checkpoint: MPT_ERR_INPUT on
 * every rank). During generation every rank takes the same path, so there is nothing to agree
 * on but MPI failures (MPT_ERR_RUN). */
#ifndef MPT_GENERATOR_H
#define MPT_GENERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/arena.h"
#include "model/gpt.h"
#include "model/gpt_decode.h"
#include "model/sample.h"
#include "parallel/groups.h"

typedef struct mpt_generator {
    mpt_comm *world;         /* not owned */
    mpt_config cfg;          /* the checkpoint's, vocabulary padded for tp */
    mpt_groups groups;       /* this rank's place and the tp / pp groups */
    mpt_arena arena;
    mpt_gpt model;           /* this rank's shard of its stage (weights only, or + one activation
                              * set of (1, n_positions) tokens with no_cache) */
    mpt_decode dec;          /* the key/value cache (not with no_cache) */
    int no_cache;            /* re-run the whole window for every token (pp 1 only) */
    float *full_logits;      /* no_cache, tp > 1: the gathered row (padded_vocab) */
    size_t fed;              /* tokens of the caller's context in the cache */
    int stage_layers[MPT_MAX_LAYERS];
} mpt_generator;

/* Reads dir's config and weights into this rank's part of the model for a layout of tp x pp
 * ranks (world->size must be tp * pp; heads, MLP width and the padded vocabulary must divide by
 * tp; pp at most the layers). threads: the compute threads of this rank (the caller sets
 * OpenMP's and OpenBLAS's). no_cache: keep activations to re-run the window (the reference the
 * cache must equal; pp 1 only). All ranks of world call; MPT_ERR_INPUT on all for bad input. */
mpt_status mpt_generator_init(mpt_generator *g, mpt_comm *world, const char *dir, int tp, int pp,
                              int no_cache, mpt_error *err);
void mpt_generator_free(mpt_generator *g); /* NULL safe */

/* Feeds the tokens of ctx (n, the prompt then every token so far) that the cache has not seen
 * (when they would pass the model's positions, the cache restarts from the last n_positions
 * tokens of a prompt, or, once full, from the last half of the context) and chooses the next
 * token, the i-th generated, with s (on the last stage) into *next on every rank. ctx must hold
 * at least one token, all < vocab (checked: MPT_ERR_INPUT on every rank). */
mpt_status mpt_generator_next(mpt_generator *g, mpt_sampler *s, const int32_t *ctx, size_t n,
                              uint64_t i, int32_t *next, mpt_error *err);

#endif
