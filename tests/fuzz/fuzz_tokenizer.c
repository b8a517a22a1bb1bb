/* fuzz_tokenizer.c — libFuzzer target: the GPT-2 BPE tokenizer (tok/tokenizer.c, tok/bpe.c)
 * and the byte tokenizer on any bytes (valid UTF-8 or not).
 *
 * Properties, for input text x (the first byte picks whether "<|endoftext|>" is special):
 *   - both tokenizers encode x; every id is below their vocabulary
 *   - decoding gives back exactly x (byte-level BPE loses nothing)
 *   - the GPT-2 merge of x as one word is the same by the quadratic loop GPT-2 uses and by the
 *     priority queue used for long words (up to 512 bytes, where the loop is still quick)
 *   - decoding the input read as int32 ids refuses ids out of range with MPT_ERR_INPUT
 * The BPE files come from $MPT_BPE_DIR (default .cache/gpt2-bpe, fetched by scripts/setup.sh). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tok/bpe.h"
#include "tok/tokenizer.h"

static mpt_tokenizer *gpt2_, *byte_;
static mpt_bpe *bpe_;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("MPT_BPE_DIR");
    if (!dir || !dir[0]) dir = ".cache/gpt2-bpe";
    mpt_error err = {0};
    if (mpt_tokenizer_init(&gpt2_, "gpt2", dir, &err) || mpt_tokenizer_init(&byte_, "byte", NULL, &err) ||
        mpt_bpe_load(&bpe_, dir, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s (set MPT_BPE_DIR)\n", err.msg);
        abort();
    }
    return 0;
}

static void round_trip_(const mpt_tokenizer *tok, const char *text, size_t len, int special) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    size_t blen = 0;
    mpt_error err = {0};
    mpt_status st = mpt_tokenizer_encode(tok, text, len, special, &ids, &n, &err);
    FUZZ_CHECK(st == MPT_OK, "%s: encoding %zu bytes: %s", mpt_tokenizer_kind(tok), len, err.msg);
    FUZZ_CHECK(n <= len, "%s: %zu ids for %zu bytes", mpt_tokenizer_kind(tok), n, len);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < mpt_tokenizer_vocab(tok), "%s: id %d", 
                   mpt_tokenizer_kind(tok), ids[i]);
    st = mpt_tokenizer_decode(tok, ids, n, &back, &blen, &err);
    FUZZ_CHECK(st == MPT_OK, "%s: decoding: %s", mpt_tokenizer_kind(tok), err.msg);
    FUZZ_CHECK(blen == len && memcmp(back, text, len) == 0 && back[blen] == '\0',
               "%s: %zu bytes decode to %zu different bytes", mpt_tokenizer_kind(tok), len, blen);
    free(ids);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    round_trip_(gpt2_, text, len, special);
    round_trip_(byte_, text, len, special);

    if (len > 0 && len <= 512 && mpt_bpe_ordered(bpe_)) {
        int32_t *a = malloc(len * sizeof *a), *b = malloc(len * sizeof *b);
        if (!a || !b) abort();
        size_t na = mpt_bpe_merge_simple(bpe_, (const uint8_t *)text, len, a), nb = 0;
        mpt_error err = {0};
        mpt_status st = mpt_bpe_merge_heap(bpe_, (const uint8_t *)text, len, b, &nb, &err);
        FUZZ_CHECK(st == MPT_OK, "heap merge: %s", err.msg);
        FUZZ_CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0,
                   "%zu bytes merge to %zu ids by the loop, %zu by the heap", len, na, nb);
        free(a);
        free(b);
    }

    /* the input as ids: decoded, or refused when one is out of range */
    size_t n = len / 4;
    if (n) {
        int32_t *ids = malloc(n * sizeof *ids);
        if (!ids) abort();
        memcpy(ids, text, n * sizeof *ids);
        int bad = 0;
        for (size_t i = 0; i < n; i++) bad |= ids[i] < 0 || ids[i] >= mpt_tokenizer_vocab(gpt2_);
        char *out = NULL;
        size_t olen = 0;
        mpt_error err = {0};
        mpt_status st = mpt_tokenizer_decode(gpt2_, ids, n, &out, &olen, &err);
        FUZZ_CHECK(bad ? st == MPT_ERR_INPUT : st == MPT_OK, "decoding %zu ids (%s range): "
                   "status %d '%s'", n, bad ? "out of" : "in", st, err.msg);
        free(out);
        free(ids);
    }
    return 0;
}
