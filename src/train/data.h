/* data.h — the token stream training and evaluation read, and the fixed data order of
 * CONTRACT §4.
 *
 * A stream is one or more token files (tok/tokfile.h, each mapped read-only, never copied)
 * concatenated in the order given: file 0's tokens, then file 1's, ... (llm.c's shard layout:
 * the shards of a corpus form one stream). A view is a window [first, first + n) of a stream;
 * training reads the view of the whole stream, or of all but its held-out tail when the
 * validation set is that tail.
 *
 * Order over a view of n tokens: global sequence g = step*B + i (i in 0..B-1) starts at view
 * token (g*T) mod (n - T - 1); its inputs are the T tokens from there and its targets the T
 * tokens after each. A sequence may run across a shard boundary (the stream is one sequence of
 * tokens). Evaluation uses the same rule on the validation view, batch k in place of step. */
#ifndef MPT_DATA_H
#define MPT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/buflist.h"
#include "core/status.h"
#include "tok/tokfile.h"

typedef struct mpt_data {
    mpt_tokfile *files; /* owned: nf mapped files, in stream order */
    size_t *start;      /* owned: nf + 1 offsets; file f holds stream tokens [start[f], start[f+1]) */
    int nf;
    size_t total;       /* tokens of the whole stream */
    int max_token;      /* largest token id of the stream */
} mpt_data;

typedef struct mpt_data_view {
    const mpt_data *d;  /* not owned */
    size_t first, n;    /* stream tokens [first, first + n) */
} mpt_data_view;

/* Maps paths[0..n-1] (n >= 1) in that order as one stream; vocab > 0 rejects tokens >= vocab
 * (tok/tokfile.h). MPT_ERR_INPUT names the file at fault. On failure *d is empty. */
mpt_status mpt_data_open(mpt_data *d, const char *const *paths, int n, int vocab,
                         mpt_error *err);
void mpt_data_free(mpt_data *d); /* NULL or empty: nothing */

/* The whole stream, or its tokens [first, first + n) (clamped to the stream). */
mpt_data_view mpt_data_all(const mpt_data *d);
mpt_data_view mpt_data_range(const mpt_data *d, size_t first, size_t n);

/* MPT_ERR_INPUT unless the view holds more than T + 1 tokens; what names it in the message. */
mpt_status mpt_data_check(const mpt_data_view *v, int T, const char *what, mpt_error *err);

/* Fills inputs/targets (count, T) with global sequences step*B + first .. + first+count-1 of
 * the view; either may be NULL. */
void mpt_data_batch(const mpt_data_view *v, long step, int B, int first, int count, int T,
                    int32_t *inputs, int32_t *targets);

/* The trainer's token buffers of one micro-batch: inputs and targets, tokens each (workspace,
 * i32). inputs/targets NULL: a plan. */
void mpt_data_buffers(size_t tokens, int32_t **inputs, int32_t **targets, mpt_buflist *l);

/* Context parallelism: as mpt_data_batch, but each of the count sequences keeps only the T/cp
 * positions of cp rank cp_rank: chunks cp_rank and 2cp-1-cp_rank of 2cp (T/(2cp) tokens each),
 * in that order, so inputs/targets are (count, T/cp). cp 1 is mpt_data_batch. */
void mpt_data_batch_cp(const mpt_data_view *v, long step, int B, int first, int count, int T,
                       int cp, int cp_rank, int32_t *inputs, int32_t *targets);

#endif
