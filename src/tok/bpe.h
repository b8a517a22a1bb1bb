/* bpe.h — GPT-2 byte-pair merging (internal to src/tok; the public face is tokenizer.h).
 *
 * mpt_bpe holds the vocabulary of encoder.json as raw bytes per id and the merge ranks of
 * vocab.bpe as (left id, right id) -> (rank, merged id). It merges ONE pre-token (a word the
 * regex produced) into ids; pre-tokenizing, special tokens and caching live in tokenizer.c.
 * Read-only once loaded, so any number of threads may use one mpt_bpe at the same time. */
#ifndef MPT_TOK_BPE_H
#define MPT_TOK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mpt_bpe mpt_bpe;

/* Loads dir/encoder.json and dir/vocab.bpe into a new *out (caller frees with mpt_bpe_free).
 * Missing or malformed files: MPT_ERR_INPUT naming the file and what to do. */
mpt_status mpt_bpe_load(mpt_bpe **out, const char *dir, mpt_error *err);
void mpt_bpe_free(mpt_bpe *bpe);

int mpt_bpe_size(const mpt_bpe *bpe);  /* number of ids: largest id in encoder.json + 1 */
/* The id whose bytes are exactly s[0..len), or -1. */
int mpt_bpe_lookup(const mpt_bpe *bpe, const char *s, size_t len);
/* The bytes of id (borrowed from bpe, not NUL-terminated), or NULL when id is out of range. */
const char *mpt_bpe_bytes(const mpt_bpe *bpe, int id, size_t *len);
/* 1 when every merge only uses tokens made by lower-ranked merges (true of GPT-2): then the
 * heap algorithm below gives exactly GPT-2's result and is used for long words. */
int mpt_bpe_ordered(const mpt_bpe *bpe);

/* Merges the bytes w[0..len) into ids: out must have room for len entries (a word never
 * yields more ids than bytes); *n receives the count. Picks the algorithm by length. */
mpt_status mpt_bpe_merge(const mpt_bpe *bpe, const uint8_t *w, size_t len, int32_t *out,
                         size_t *n, mpt_error *err);
/* The two algorithms mpt_bpe_merge chooses from, exposed so tests can compare them.
 * simple: GPT-2's loop (lowest-ranked pair, all its occurrences left to right), O(len^2).
 * heap:   a priority queue over linked symbols, O(len log len); allocates scratch. */
size_t mpt_bpe_merge_simple(const mpt_bpe *bpe, const uint8_t *w, size_t len, int32_t *out);
mpt_status mpt_bpe_merge_heap(const mpt_bpe *bpe, const uint8_t *w, size_t len, int32_t *out,
                              size_t *n, mpt_error *err);

#endif
