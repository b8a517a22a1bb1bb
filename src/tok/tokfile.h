/* tokfile.h — token files in the llm.c layout (CONTRACT §4).
 * Header: 256 int32; [0] = 20240520 (magic), [1] = 1 (version: uint16 tokens), [2] = token count;
 * then the tokens as uint16. Readers check magic, version, size and that every token < vocab.
 * A file read for training is mapped read-only, never copied: the tokens are read in place
 * (the page cache holds them, shared by every rank on the node). */
#ifndef MPT_TOKFILE_H
#define MPT_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MPT_TOKFILE_MAGIC 20240520
#define MPT_TOKFILE_VERSION 1

typedef struct mpt_tokfile {
    const uint16_t *tokens; /* n entries inside the mapping (NULL when n == 0) */
    size_t n;
    void *map;        /* owned: the read-only mapping of the whole file, or NULL */
    size_t map_size;
    int max_token;    /* largest token id present */
} mpt_tokfile;

/* Maps and validates path (header, count against the file size, tokens). vocab > 0 rejects any token >= vocab (message names the file, the
 * token, its position and the vocab). vocab <= 0 skips that check. On failure *out is empty. */
mpt_status mpt_tokfile_read(const char *path, int vocab, mpt_tokfile *out, mpt_error *err);
/* Writes n tokens (each must be 0..65535) atomically (temporary file + rename). */
mpt_status mpt_tokfile_write(const char *path, const int32_t *tokens, size_t n, mpt_error *err);
void mpt_tokfile_free(mpt_tokfile *f);

#endif
