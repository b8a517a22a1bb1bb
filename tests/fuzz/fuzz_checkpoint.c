/* fuzz_checkpoint.c — libFuzzer target: the checkpoint directory reader (train/checkpoint_load.c):
 * the manifest (manifest.json), the trainer state (trainer_state.json) and the weights file as
 * the checkpoint reader matches it against the model (names, shapes, dtypes, the tied head).
 *
 * At start-up a real checkpoint of a tiny model (1 block, d 8, vocab 16, with optimizer state)
 * is saved into a scratch directory. Each input replaces one of its files, chosen by the first
 * byte mod 3: 0 manifest.json, 1 trainer_state.json, 2 model.safetensors; for 1 and 2 the
 * manifest is rewritten with the new file's size and checksum, so the reader gets past the
 * checksums to the contents. Then the directory is loaded as --resume would (manifest,
 * weights, optimizer state, trainer state). Properties: a refusal is MPT_ERR_INPUT with a
 * message; a load that succeeds keeps what was not replaced (the optimizer state always, the
 * weights unless their file was the one replaced), and every tensor of a checkpoint that opens
 * can be read. MPT_FUZZ_WRITE_SEEDS=DIR writes the seed corpus (tests/fuzz/corpus/checkpoint). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fuzz_util.h"
#include "model/config.h"
#include "model/params.h"
#include "train/checkpoint.h"

static char dir_[4400];
static mpt_config cfg_;
static mpt_param_table pt_;
static float *p_, *m_, *v_;
static uint8_t *orig_[3];   /* manifest, trainer state, weights as saved */
static size_t orig_len_[3];
static const char *const files_[3] = {"manifest.json", "trainer_state.json", "model.safetensors"};

static uint8_t *slurp_(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    *len = (size_t)n;
    return b;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char root[4096], path[4600];
    fuzz_scratch_dir(root, sizeof root);
    mpt_error err = {0};
    if (mpt_config_preset(&cfg_, "tiny", &err)) abort();
    cfg_.n_layer = 1, cfg_.d_model = 8, cfg_.n_head = 2, cfg_.n_positions = 8, cfg_.vocab = 16;
    cfg_.ffn = 0, cfg_.padded_vocab = 0;
    if (mpt_config_finish(&cfg_, 1, &err) || mpt_params_build(&pt_, &cfg_, &err)) {
        fprintf(stderr, "fuzz_checkpoint: %s\n", err.msg);
        abort();
    }
    p_ = calloc(pt_.total, sizeof *p_), m_ = calloc(pt_.total, sizeof *m_);
    v_ = calloc(pt_.total, sizeof *v_);
    if (!p_ || !m_ || !v_) abort();
    for (size_t i = 0; i < pt_.total; i++) p_[i] = (float)i / 64, m_[i] = 1, v_[i] = 2;
    mpt_train_state st = {.step = 3, .seed = 1337, .rng_counter = 5};
    if (mpt_checkpoint_save(root, 0, &cfg_, &pt_, p_, m_, v_, &st, dir_, sizeof dir_, &err)) {
        fprintf(stderr, "fuzz_checkpoint: save: %s\n", err.msg);
        abort();
    }
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", dir_, files_[k]);
        orig_[k] = slurp_(path, &orig_len_[k]);
    }
    /* MPT_FUZZ_WRITE_SEEDS=DIR: write the seed corpus (each file as saved, behind its byte) */
    const char *seeds = getenv("MPT_FUZZ_WRITE_SEEDS");
    for (int k = 0; seeds && k < 3; k++) {
        uint8_t *b = malloc(orig_len_[k] + 1);
        if (!b) abort();
        b[0] = (uint8_t)k;
        memcpy(b + 1, orig_[k], orig_len_[k]);
        snprintf(path, sizeof path, "%s/%s", seeds, files_[k]);
        if (fuzz_write_file(path, b, orig_len_[k] + 1)) abort();
        free(b);
    }
    return 0;
}

/* The saved manifest with file `name`'s entry describing data[0..len). malloc'd text. */
static char *manifest_for_(const char *name, const uint8_t *data, size_t len) {
    cJSON *root = cJSON_ParseWithLength((const char *)orig_[0], orig_len_[0]);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "files"),
                                                name);
    if (!e) abort();
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, (uint64_t)XXH3_64bits(data, len));
    cJSON_ReplaceItemInObjectCaseSensitive(e, "size", cJSON_CreateNumber((double)len));
    cJSON_ReplaceItemInObjectCaseSensitive(e, "xxh3_64", cJSON_CreateString(hex));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) abort();
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 3;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    char path[4600];
    for (int k = 0; k < 3; k++) {   /* the other files as saved */
        snprintf(path, sizeof path, "%s/%s", dir_, files_[k]);
        if (k == which) fuzz_write_file(path, body, len);
        else if (k == 0 && which != 0) {
            char *man = manifest_for_(files_[which], body, len);
            fuzz_write_file(path, (const uint8_t *)man, strlen(man));
            free(man);
        } else fuzz_write_file(path, orig_[k], orig_len_[k]);
    }
    float *p = calloc(pt_.total, sizeof *p), *m = calloc(pt_.total, sizeof *m);
    float *v = calloc(pt_.total, sizeof *v);
    if (!p || !m || !v) abort();
    int has_opt = -1;
    mpt_train_state st;
    mpt_error err = {0};
    mpt_status rc = mpt_checkpoint_load(dir_, &pt_, p, m, v, &has_opt, &st, &err);
    if (rc != MPT_OK) {
        FUZZ_CHECK(rc == MPT_ERR_INPUT && err.msg[0], "load: status %d, '%s'", rc, err.msg);
    } else {
        FUZZ_CHECK(has_opt == 1, "the optimizer state went missing");
        FUZZ_CHECK(st.step >= 0, "step %ld", st.step);
        if (which != 2)   /* the weights were not touched: they load as saved */
            FUZZ_CHECK(memcmp(p, p_, pt_.total * sizeof *p) == 0, "weights changed");
        FUZZ_CHECK(memcmp(m, m_, pt_.total * sizeof *m) == 0, "optimizer state changed");
    }
    /* the streaming reader alone, and the trainer state alone */
    mpt_ckpt_reader rd;
    rc = mpt_checkpoint_open(&rd, dir_, &pt_, 1, &err);
    FUZZ_CHECK(rc == MPT_OK || (rc == MPT_ERR_INPUT && err.msg[0]), "open: status %d, '%s'", rc,
               err.msg);
    if (rc == MPT_OK)
        for (size_t i = 0; i < pt_.n; i++) {
            size_t n = mpt_tensor_ckpt_numel(&pt_.t[i]);
            rc = mpt_checkpoint_read(&rd, 0, i, 0, n, p, &err);
            FUZZ_CHECK(rc == MPT_OK, "reading tensor %zu of an open checkpoint: %s", i, err.msg);
        }
    mpt_checkpoint_close(&rd);
    rc = mpt_checkpoint_read_state(dir_, &st, &err);
    FUZZ_CHECK(rc == MPT_OK || (rc == MPT_ERR_INPUT && err.msg[0]), "state: status %d, '%s'", rc,
               err.msg);
    free(p), free(m), free(v);
    return 0;
}
