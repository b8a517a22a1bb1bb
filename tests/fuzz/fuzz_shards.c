/* fuzz_shards.c — libFuzzer target: the index of a sharded checkpoint (shards.json,
 * train/ckpt_shard.c) as the reader checks it against a model: tensor names and shapes, slice
 * boxes inside their tensor and their file, every tensor and kind covered exactly once.
 *
 * At start-up a scratch directory gets two shard files of 64 KiB each (the data are not under
 * test) and a manifest.json with their checksums (the reader verifies a file on its first read). Each input is written as the directory's shards.json and opened against a tiny model
 * (1 block, d 8, vocab 16). Properties: a refusal is MPT_ERR_INPUT with a message; an index
 * that opens serves every element of every tensor (parameters, and the AdamW moments when it
 * says it has them) without an error. MPT_FUZZ_WRITE_SEEDS=DIR writes the seed corpus
 * (tests/fuzz/corpus/shards): a valid index with one slice per tensor and one with each tensor
 * cut into two boxes over both files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fuzz_util.h"
#include "model/config.h"
#include "model/params.h"
#include "train/ckpt_shard.h"

static char dir_[4400];
static mpt_config cfg_;
static mpt_param_table pt_;
static float *buf_;
#define FILE_BYTES_ 65536

/* A valid index: every tensor whole in file 0 (split 0), or cut after its first row (or half
 * its elements) with the second box in file 1. */
static void seed_(const char *out, int split) {
    mpt_shard_box *b = calloc(3 * pt_.n * 2, sizeof *b);
    size_t n = 0;
    int64_t pos[2] = {0, 0};
    mpt_error err = {0};
    if (!b) abort();
    for (int k = 0; k < MPT_SHARD_KINDS; k++)
        for (size_t i = 0; i < pt_.n; i++) {
            const mpt_tensor *t = &pt_.t[i];
            int64_t rows = t->ndim == 2 ? (int64_t)t->shape[0] : 1;
            int64_t cols = t->ndim == 2 ? (int64_t)t->shape[1] : (int64_t)t->shape[0];
            if (!split || (rows < 2 && cols < 2)) {
                b[n++] = (mpt_shard_box){k, (int64_t)i, 0, 0, rows, 0, cols, pos[0]};
                pos[0] += rows * cols * 4;
            } else if (rows >= 2) {
                b[n++] = (mpt_shard_box){k, (int64_t)i, 0, 0, 1, 0, cols, pos[0]};
                b[n++] = (mpt_shard_box){k, (int64_t)i, 1, 1, rows - 1, 0, cols, pos[1]};
                pos[0] += cols * 4;
                pos[1] += (rows - 1) * cols * 4;
            } else {
                b[n++] = (mpt_shard_box){k, (int64_t)i, 0, 0, 1, 0, cols / 2, pos[0]};
                b[n++] = (mpt_shard_box){k, (int64_t)i, 1, 0, 1, cols / 2, cols - cols / 2, pos[1]};
                pos[0] += cols / 2 * 4;
                pos[1] += (cols - cols / 2) * 4;
            }
        }
    if (pos[0] > FILE_BYTES_ || pos[1] > FILE_BYTES_ ||
        mpt_shard_write_index(out, &pt_, 2, 1, b, n, &err)) {
        fprintf(stderr, "fuzz_shards: seed: %s\n", err.msg);
        abort();
    }
    free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[4600];
    fuzz_scratch_dir(dir_, 4096);
    mpt_error err = {0};
    if (mpt_config_preset(&cfg_, "tiny", &err)) abort();
    cfg_.n_layer = 1, cfg_.d_model = 8, cfg_.n_head = 2, cfg_.n_positions = 8, cfg_.vocab = 16;
    cfg_.ffn = 0, cfg_.padded_vocab = 0;
    if (mpt_config_finish(&cfg_, 1, &err) || mpt_params_build(&pt_, &cfg_, &err)) {
        fprintf(stderr, "fuzz_shards: %s\n", err.msg);
        abort();
    }
    uint8_t *zeros = calloc(FILE_BYTES_, 1);
    buf_ = calloc(pt_.total + 1, sizeof *buf_);
    if (!zeros || !buf_) abort();
    for (int r = 0; r < 2; r++) {
        char name[32];
        mpt_shard_file_name(r, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir_, name);
        if (fuzz_write_file(path, zeros, FILE_BYTES_)) abort();
    }
    /* manifest.json: the reader checksums each shard file it reads against it */
    char man[512];
    unsigned long long h = (unsigned long long)XXH3_64bits(zeros, FILE_BYTES_);
    snprintf(man, sizeof man, "{\"format\": \"mptrain-manifest\", \"files\": {"
             "\"shard-00000.bin\": {\"size\": %d, \"xxh3_64\": \"%016llx\"}, "
             "\"shard-00001.bin\": {\"size\": %d, \"xxh3_64\": \"%016llx\"}}}",
             FILE_BYTES_, h, FILE_BYTES_, h);
    snprintf(path, sizeof path, "%s/manifest.json", dir_);
    if (fuzz_write_file(path, (const uint8_t *)man, strlen(man))) abort();
    free(zeros);
    const char *seeds = getenv("MPT_FUZZ_WRITE_SEEDS");
    if (seeds) {
        for (int split = 0; split < 2; split++) {
            char src[4600], dst[4600];
            seed_(dir_, split);
            snprintf(src, sizeof src, "%s/%s", dir_, MPT_SHARD_INDEX_FILE);
            snprintf(dst, sizeof dst, "%s/%s", seeds, split ? "two-files" : "one-file");
            if (rename(src, dst) != 0) abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4600];
    snprintf(path, sizeof path, "%s/%s", dir_, MPT_SHARD_INDEX_FILE);
    if (fuzz_write_file(path, data, size)) abort();
    mpt_shards *s = NULL;
    mpt_error err = {0};
    mpt_status st = mpt_shards_open(&s, dir_, &pt_, &err);
    if (st) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "status %d, message '%s'", st, err.msg);
        FUZZ_CHECK(s == NULL, "a refused index left a reader");
        return 0;
    }
    int kinds = mpt_shards_has_opt(s) ? MPT_SHARD_KINDS : 1;
    for (int k = 0; k < kinds; k++)
        for (size_t i = 0; i < pt_.n; i++) {
            size_t n = mpt_tensor_ckpt_numel(&pt_.t[i]);
            st = mpt_shards_read(s, k, i, 0, n, buf_, &err);
            FUZZ_CHECK(st == MPT_OK, "an index that opened fails to serve %s: %s", pt_.t[i].name,
                       err.msg);
        }
    mpt_shards_close(s);
    return 0;
}
