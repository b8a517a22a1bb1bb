/* fuzz_bpe_files.c — libFuzzer target: loading the GPT-2 tokenizer files (tok/bpe.c): a
 * hostile or damaged encoder.json / vocab.bpe.
 *
 * The input is the two files joined by one NUL byte (encoder.json, then vocab.bpe; without a
 * NUL, vocab.bpe is empty). A refusal must be MPT_ERR_INPUT with a message. A vocabulary that
 * loads must name a token for every byte, and merging any word (here: the input's last 64
 * bytes) gives ids in range whose bytes, joined, are the word again; for an ordered merge list
 * the loop and the priority queue agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tok/bpe.h"

static char dir_[4096], enc_[4200], merges_[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_scratch_dir(dir_, sizeof dir_);
    snprintf(enc_, sizeof enc_, "%s/encoder.json", dir_);
    snprintf(merges_, sizeof merges_, "%s/vocab.bpe", dir_);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t elen = nul ? (size_t)(nul - data) : size;
    const uint8_t *m = nul ? nul + 1 : data + size;
    size_t mlen = (size_t)(data + size - m);
    if (fuzz_write_file(enc_, data, elen) || fuzz_write_file(merges_, m, mlen)) return 0;
    mpt_bpe *bpe = NULL;
    mpt_error err = {0};
    mpt_status st = mpt_bpe_load(&bpe, dir_, &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0] && bpe == NULL, "status %d, '%s'", st,
                   err.msg);
        return 0;
    }
    int V = mpt_bpe_size(bpe);
    FUZZ_CHECK(V >= 256, "a vocabulary of %d ids loaded", V);
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        FUZZ_CHECK(mpt_bpe_lookup(bpe, &ch, 1) >= 0, "no id for byte %d", c);
    }
    size_t wlen = size < 64 ? size : 64;
    const uint8_t *w = data + size - wlen;
    int32_t ids[64], ids2[64];
    size_t n = 0, n2;
    if (wlen) {
        st = mpt_bpe_merge(bpe, w, wlen, ids, &n, &err);
        FUZZ_CHECK(st == MPT_OK, "merge: %s", err.msg);
        uint8_t back[64];
        size_t blen = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = 0;
            const char *b = mpt_bpe_bytes(bpe, ids[i], &l);
            FUZZ_CHECK(b && blen + l <= wlen, "id %d (of %d) has no bytes or too many", ids[i], V);
            memcpy(back + blen, b, l);
            blen += l;
        }
        FUZZ_CHECK(blen == wlen && memcmp(back, w, wlen) == 0, "a %zu-byte word merged into "
                   "ids whose bytes differ", wlen);
        if (mpt_bpe_ordered(bpe)) {
            st = mpt_bpe_merge_heap(bpe, w, wlen, ids2, &n2, &err);
            FUZZ_CHECK(st == MPT_OK, "heap merge: %s", err.msg);
            n = mpt_bpe_merge_simple(bpe, w, wlen, ids);
            FUZZ_CHECK(n2 == n && memcmp(ids, ids2, n * sizeof *ids) == 0,
                       "loop and heap merges differ");
        }
    }
    mpt_bpe_free(bpe);
    mpt_bpe_free(NULL);
    return 0;
}
