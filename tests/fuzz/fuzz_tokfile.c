/* fuzz_tokfile.c — libFuzzer target: the token-file reader (tok/tokfile.c).
 *
 * The input is a whole file. The reader must refuse it with MPT_ERR_INPUT and a message, or
 * accept exactly a file of 1024 + 2 n bytes holding the llm.c magic and version and n tokens;
 * with a vocabulary, every accepted token is below it, and the largest token it reports is
 * the largest in the file. An accepted file written back (mpt_tokfile_write) reads back equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tok/tokfile.h"

static char in_[4200], out_[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[4096];
    fuzz_scratch_dir(dir, sizeof dir);
    snprintf(in_, sizeof in_, "%s/in.bin", dir);
    snprintf(out_, sizeof out_, "%s/out.bin", dir);
    return 0;
}

static int32_t le32_(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_write_file(in_, data, size)) return 0;
    /* the vocabulary the reader checks against: none, the byte tokenizer's, GPT-2's */
    const int vocabs[3] = {0, 256, 50257};
    for (int k = 0; k < 3; k++) {
        mpt_tokfile f;
        mpt_error err = {0};
        mpt_status st = mpt_tokfile_read(in_, vocabs[k], &f, &err);
        if (st != MPT_OK) {
            FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "status %d, '%s'", st, err.msg);
            FUZZ_CHECK(f.map == NULL && f.n == 0, "a refused file left a mapping");
            if (k == 0) break;   /* refused without a vocabulary: refused with any */
            continue;
        }
        FUZZ_CHECK(size >= 1024 && le32_(data) == MPT_TOKFILE_MAGIC &&
                   le32_(data + 4) == MPT_TOKFILE_VERSION && le32_(data + 8) >= 0 &&
                   size == 1024 + 2 * (size_t)le32_(data + 8) && f.n == (size_t)le32_(data + 8),
                   "accepted a %zu-byte file whose header says %d tokens", size, le32_(data + 8));
        int max = -1;
        for (size_t i = 0; i < f.n; i++) {
            int t = data[1024 + 2 * i] | data[1024 + 2 * i + 1] << 8;
            FUZZ_CHECK(f.tokens[i] == t, "token %zu read as %d, the file holds %d", i,
                       f.tokens[i], t);
            FUZZ_CHECK(vocabs[k] == 0 || t < vocabs[k], "token %d accepted with vocab %d", t,
                       vocabs[k]);
            if (t > max) max = t;
        }
        FUZZ_CHECK(f.max_token == max, "max_token %d, the file's largest %d", f.max_token, max);
        if (k == 0 && f.n <= 4096) {   /* write it back and read it again */
            int32_t *ids = malloc((f.n + 1) * sizeof *ids);
            if (!ids) abort();
            for (size_t i = 0; i < f.n; i++) ids[i] = f.tokens[i];
            st = mpt_tokfile_write(out_, ids, f.n, &err);
            FUZZ_CHECK(st == MPT_OK, "writing back: %s", err.msg);
            mpt_tokfile g;
            st = mpt_tokfile_read(out_, 0, &g, &err);
            FUZZ_CHECK(st == MPT_OK && g.n == f.n, "reading back: %s", err.msg);
            for (size_t i = 0; i < f.n; i++)
                FUZZ_CHECK(g.tokens[i] == f.tokens[i], "token %zu changed on the way back", i);
            mpt_tokfile_free(&g);
            free(ids);
        }
        mpt_tokfile_free(&f);
        mpt_tokfile_free(&f);   /* twice is safe */
    }
    return 0;
}
