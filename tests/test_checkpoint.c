/* test_checkpoint.c — safetensors I/O, Hugging Face config.json and checkpoint directories:
 * round trips (bit-exact), F16/BF16/F64 conversion, keep-K pruning and `latest`, resolve(),
 * untied heads, padded vocabularies, Hugging Face style directories, and corrupt or mismatched
 * files that must fail with MPT_ERR_INPUT naming the file; the streaming paths (a writer fed in
 * pieces, range reads, a save session fed in pieces) give the same bytes as the whole-buffer
 * ones. Works under a mkdtemp dir in /tmp. */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/config.h"
#include "model/params.h"
#include "train/checkpoint.h"
#include "train/hfconfig.h"
#include "train/safetensors.h"

static char g_root[64];   /* the test's temporary directory */

static const char *tmp_path_(const char *rel) {
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", g_root, rel);
    return p;
}

static void fill_(float *x, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        x[i] = (float)((double)s / 4294967296.0 * 2.0 - 1.0);
    }
}

static void write_file_(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n, "cannot write %s", path);
    if (f) fclose(f);
}

/* A safetensors file from a literal header and `nbytes` of data (little-endian length). */
static void make_st_(const char *path, const char *header, const void *data, size_t nbytes) {
    size_t hl = strlen(header), total = 8 + hl + nbytes;
    unsigned char *b = malloc(total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (nbytes) memcpy(b + 8 + hl, data, nbytes);
    write_file_(path, b, total);
    free(b);
}

/* The call failed as bad input and the message names `a` (and `b` when given). */
static void expect_input_(mpt_status st, const mpt_error *err, const char *a, const char *b,
                          const char *what) {
    printf("  %-28s -> %s\n", what, st == MPT_OK ? "(no error)" : err->msg);
    CHECK(st == MPT_ERR_INPUT, "%s: status %d, want MPT_ERR_INPUT", what, (int)st);
    CHECK(st != MPT_OK && strstr(err->msg, a) && (!b || strstr(err->msg, b)),
          "%s: message '%s' should name '%s'%s%s", what, err->msg, a, b ? " and " : "",
          b ? b : "");
}

static size_t g_align = 1;   /* unit alignment of the tables tiny_ builds */

static int tiny_(mpt_config *c, int tied, int vocab, int pad, int positions, mpt_param_table *pt) {
    mpt_error err;
    mpt_config_preset(c, "tiny", &err);
    c->tied = tied;
    c->vocab = vocab;
    c->n_positions = positions;
    return mpt_config_finish(c, pad, &err) == MPT_OK &&
           mpt_params_build_aligned(pt, c, g_align, &err) == MPT_OK;
}

/* Zeroes what belongs to no checkpoint element: padding rows and the padding between units. */
static void zero_padding_(const mpt_param_table *pt, float *x) {
    size_t at = 0;
    for (size_t i = 0; i < pt->n; i++) {
        const mpt_tensor *t = &pt->t[i];
        for (; at < t->offset; at++) x[at] = 0.0f;
        for (size_t j = mpt_tensor_ckpt_numel(t); j < t->numel; j++) x[t->offset + j] = 0.0f;
        at = t->offset + t->numel;
    }
    for (; at < pt->total; at++) x[at] = 0.0f;
}

static void test_conversion(void) {
    const unsigned short h[6] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x7C00};
    const unsigned short bf[4] = {0x3F80, 0xC040, 0x4049, 0x8000};
    const double d[3] = {0.1, -1e10, 3.0};
    const int64_t i64 = 42;
    unsigned char data[52];
    memcpy(data, h, 12), memcpy(data + 12, bf, 8), memcpy(data + 20, d, 24);
    memcpy(data + 44, &i64, 8);
    const char *p = tmp_path_("conv.safetensors");
    make_st_(p, "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[12,20]},"
                "\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[20,44]},"
                "\"__metadata__\":{\"format\":\"pt\"},"
                "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[44,52]}}", data, 52);
    mpt_safetensors f;
    mpt_error err;
    float out[6];
    CHECK(mpt_safetensors_open(&f, p, &err) == MPT_OK, "open hand-built file: %s", err.msg);
    const mpt_st_info *t = mpt_safetensors_find(&f, "h");
    CHECK(t && mpt_safetensors_read_f32(&f, t, out, 6, &err) == MPT_OK, "read F16");
    const float want_h[6] = {1.0f, -2.0f, 0.5f, 65504.0f, 0x1p-24f, INFINITY};
    CHECK(memcmp(out, want_h, sizeof want_h) == 0, "F16 values %g %g %g %g %g %g", out[0], out[1],
          out[2], out[3], out[4], out[5]);
    t = mpt_safetensors_find(&f, "b");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && mpt_safetensors_read_f32(&f, t, out, 4, &err) == MPT_OK,
          "read BF16");
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[2] == 3.140625f && out[3] == 0.0f &&
          signbit(out[3]), "BF16 values %g %g %g %g", out[0], out[1], out[2], out[3]);
    t = mpt_safetensors_find(&f, "d");
    CHECK(t && mpt_safetensors_read_f32(&f, t, out, 3, &err) == MPT_OK, "read F64");
    CHECK(out[0] == 0.1f && out[1] == -1e10f && out[2] == 3.0f, "F64 values");
    t = mpt_safetensors_find(&f, "i");
    CHECK(t && t->ndim == 0 && t->numel == 1, "I64 scalar listed");
    if (t) expect_input_(mpt_safetensors_read_f32(&f, t, out, 1, &err), &err, p, "I64", "I64");
    CHECK(mpt_safetensors_meta(&f, "format") && !strcmp(mpt_safetensors_meta(&f, "format"), "pt"),
          "metadata");
    mpt_safetensors_free(&f);
    mpt_safetensors_free(&f);   /* twice is safe */
    mpt_safetensors_free(NULL);
}

static void test_st_roundtrip(void) {
    float a[12], b[4], s = 2.5f;
    fill_(a, 12, 1), fill_(b, 4, 2);
    mpt_st_entry e[4] = {{"a.weight", 2, {3, 4}, a}, {"a.bias", 1, {4}, b}, {"scalar", 0, {0}, &s},
                         {"empty", 2, {0, 5}, NULL}};
    mpt_st_meta meta = {"format", "pt"};
    mpt_error err;
    const char *p = tmp_path_("rt.safetensors");
    CHECK(mpt_safetensors_write(p, e, 4, &meta, 1, 1, &err) == MPT_OK, "write: %s", err.msg);
    unsigned char head[8];
    FILE *fp = fopen(p, "rb");
    CHECK(fp && fread(head, 1, 8, fp) == 8, "read length");
    if (fp) fclose(fp);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)head[i] << (8 * i);
    CHECK(hl % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)hl);
    mpt_safetensors f;
    CHECK(mpt_safetensors_open(&f, p, &err) == MPT_OK, "reopen: %s", err.msg);
    CHECK(f.n == 4 && !strcmp(f.t[0].name, "a.weight") && !strcmp(f.t[3].name, "empty"),
          "order kept");
    const mpt_st_info *t = mpt_safetensors_find(&f, "a.weight");
    float ra[12], rb[4], rs;
    CHECK(t && t->shape[0] == 3 && t->shape[1] == 4 && t->begin == 0 && t->end == 48 &&
          mpt_safetensors_read_f32(&f, t, ra, 12, &err) == MPT_OK && !memcmp(ra, a, sizeof a),
          "a.weight");
    t = mpt_safetensors_find(&f, "a.bias");
    CHECK(t && t->begin == 48 && mpt_safetensors_read_f32(&f, t, rb, 4, &err) == MPT_OK &&
          !memcmp(rb, b, sizeof b), "a.bias");
    t = mpt_safetensors_find(&f, "scalar");
    CHECK(t && t->ndim == 0 && mpt_safetensors_read_f32(&f, t, &rs, 1, &err) == MPT_OK && rs == s,
          "scalar");
    CHECK(!mpt_safetensors_find(&f, "nope"), "absent name");
    CHECK(f.data_size == 68, "data size %zu", f.data_size);
    mpt_safetensors_free(&f);
}

static void test_st_malformed(void) {
    struct { const char *what, *header; size_t nbytes; const char *needle; } c[] = {
        {"bad json", "{\"a\":{\"dtype\":\"F32\",", 16, "JSON"},
        {"past end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", 16,
         "truncated"},
        {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
         "need 3 elements"},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16,
         "overlap"},
        {"bad dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
         "dtype"},
        {"duplicate", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 16,
         "twice"},
        {"negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 16,
         "shape"},
        {"not object", "[1,2]", 0, "not a JSON object"},
        {"trailing", "{} x", 0, "after"},
    };
    unsigned char zeros[16] = {0};
    mpt_error err;
    mpt_safetensors f;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const char *p = tmp_path_("bad.safetensors");
        make_st_(p, c[i].header, zeros, c[i].nbytes);
        expect_input_(mpt_safetensors_open(&f, p, &err), &err, p, c[i].needle, c[i].what);
    }
    const char *p = tmp_path_("short.safetensors");
    write_file_(p, "abc", 3);
    expect_input_(mpt_safetensors_open(&f, p, &err), &err, p, "too short", "3-byte file");
    unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_file_(p, big, sizeof big);
    expect_input_(mpt_safetensors_open(&f, p, &err), &err, p, "header length", "huge length");
    expect_input_(mpt_safetensors_open(&f, tmp_path_("absent"), &err), &err, "absent", NULL,
                  "missing file");
}

static void test_hfconfig(void) {
    mpt_config c, r;
    mpt_error err;
    mpt_config_preset(&c, "tiny", &err);
    c.tied = 0, c.ffn = 200, c.experts = 4, c.top_k = 2;
    char *text = mpt_hfconfig_to_json(&c);
    CHECK(text && strstr(text, "\"GPT2LMHeadModel\"") && strstr(text, "\"gelu_new\""),
          "json has architectures and activation");
    CHECK(text && mpt_hfconfig_parse(text, strlen(text), "x", &r, &err) == MPT_OK, "parse: %s",
          err.msg);
    CHECK(r.n_layer == 2 && r.d_model == 64 && r.n_head == 4 && r.n_positions == 64 &&
          r.vocab == 256 && r.ffn == 200 && r.tied == 0 && r.experts == 4 && r.top_k == 2 &&
          r.padded_vocab == 0, "round trip");
    free(text);
    const char *hf = "{\"model_type\":\"gpt2\",\"n_embd\":32,\"n_layer\":3,\"n_head\":2,"
                     "\"n_inner\":null,\"n_ctx\":16,\"vocab_size\":100,\"bos_token_id\":50256,"
                     "\"activation_function\":\"gelu_pytorch_tanh\",\"resid_pdrop\":0.1}";
    CHECK(mpt_hfconfig_parse(hf, strlen(hf), "hf", &r, &err) == MPT_OK && r.ffn == 128 &&
          r.tied == 1 && r.n_positions == 1024 && r.experts == 0, "HF config: n_inner null, "
          "defaults for the rest: %s", err.msg);
    struct { const char *json, *needle; } bad[] = {
        {"{\"activation_function\":\"gelu\"}", "activation_function"},
        {"{\"activation_function\":\"relu\"}", "relu"},
        {"{\"layer_norm_epsilon\":1e-6}", "layer_norm_epsilon"},
        {"{\"model_type\":\"llama\"}", "model_type"},
        {"{\"n_embd\":12.5}", "n_embd"},
        {"{\"n_layer\":0}", "n_layer"},
        {"{\"tie_word_embeddings\":1}", "tie_word_embeddings"},
        {"{\"scale_attn_by_inverse_layer_idx\":true}", "scale_attn"},
        {"{\"n_embd\":", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_input_(mpt_hfconfig_parse(bad[i].json, strlen(bad[i].json), "cfg.json", &r, &err),
                      &err, "cfg.json", bad[i].needle, bad[i].json);
    const char *p = tmp_path_("config.json");
    CHECK(mpt_hfconfig_write(p, &c, 0, &err) == MPT_OK && mpt_hfconfig_read(p, &r, &err) == MPT_OK &&
          r.ffn == 200 && r.experts == 4, "file round trip");
    expect_input_(mpt_hfconfig_read(tmp_path_("none.json"), &r, &err), &err, "none.json", NULL,
                  "missing config");
}

/* Saves a random tiny model (+ optimizer) and loads it back bit-exactly. */
static void test_roundtrip(int tied, int vocab, int pad) {
    printf("round trip: tied %d vocab %d pad %d unit align %zu\n", tied, vocab, pad, g_align);
    mpt_config c, rc;
    mpt_param_table pt;
    mpt_error err;
    if (!tiny_(&c, tied, vocab, pad, 64, &pt)) {
        CHECK(0, "build tiny model");
        return;
    }
    size_t n = pt.total;
    float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
    float *p2 = malloc(n * 4), *m2 = malloc(n * 4), *v2 = malloc(n * 4);
    fill_(p, n, 3), fill_(m, n, 4), fill_(v, n, 5);
    fill_(p2, n, 6), fill_(m2, n, 7), fill_(v2, n, 8);   /* garbage the load must replace */
    mpt_train_state st = {.step = 7, .seed = 0xfedcba9876543211ull, .rng_counter = (1ull << 60) + 3};
    snprintf(st.options_json, sizeof st.options_json, "{\"lr\":0.001,\"dp\":2}");
    char root[512], out[512];
    snprintf(root, sizeof root, "%s", tmp_path_(tied ? "rt_tied" : "rt_untied"));
    CHECK(mpt_checkpoint_save(root, 0, &c, &pt, p, m, v, &st, out, sizeof out, &err) == MPT_OK,
          "save: %s", err.msg);
    char want[600];
    snprintf(want, sizeof want, "%s/step_000007", root);
    CHECK(!strcmp(out, want), "out_dir %s", out);
    CHECK(mpt_checkpoint_read_config(out, &rc, &err) == MPT_OK && rc.vocab == vocab &&
          rc.tied == tied && rc.n_layer == c.n_layer && rc.ffn == c.ffn && rc.padded_vocab == 0,
          "read_config: %s", err.msg);
    mpt_train_state st2;
    int has_opt = -1;
    CHECK(mpt_checkpoint_load(out, &pt, p2, m2, v2, &has_opt, &st2, &err) == MPT_OK, "load: %s",
          err.msg);
    CHECK(has_opt == 1 && st2.step == 7 && st2.seed == st.seed &&
          st2.rng_counter == st.rng_counter && strstr(st2.options_json, "\"dp\":2"),
          "state: step %ld seed %llx rng %llx options %s", st2.step,
          (unsigned long long)st2.seed, (unsigned long long)st2.rng_counter, st2.options_json);
    /* bit-exact outside the padding, zeros inside it */
    zero_padding_(&pt, p), zero_padding_(&pt, m), zero_padding_(&pt, v);
    CHECK(!memcmp(p, p2, n * 4) && !memcmp(m, m2, n * 4) && !memcmp(v, v2, n * 4),
          "params, m, v bit-exact (padding zeroed)");
    mpt_safetensors f;
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (mpt_safetensors_open(&f, path, &err) == MPT_OK) {
        const mpt_st_info *w = mpt_safetensors_find(&f, "transformer.wte.weight");
        CHECK(w && w->shape[0] == (size_t)vocab && w->shape[1] == 64 && w->dtype == MPT_ST_F32,
              "wte holds V rows");
        CHECK((mpt_safetensors_find(&f, "lm_head.weight") != NULL) == !tied, "lm_head iff untied");
        CHECK(f.n == pt.n, "tensor count %zu", f.n);
        CHECK(mpt_safetensors_meta(&f, "format") && !strcmp(mpt_safetensors_meta(&f, "format"), "pt"),
              "format metadata");
        mpt_safetensors_free(&f);
    } else CHECK(0, "open %s: %s", path, err.msg);
    /* weights only */
    st.step = 8;
    CHECK(mpt_checkpoint_save(root, 0, &c, &pt, p, NULL, NULL, &st, out, sizeof out, &err) ==
              MPT_OK, "save weights only: %s", err.msg);
    CHECK(mpt_checkpoint_load(out, &pt, p2, m2, v2, &has_opt, NULL, &err) == MPT_OK &&
              has_opt == 0 && m2[0] == 0.0f && v2[n - 1] == 0.0f && !memcmp(p, p2, n * 4),
          "weights-only load: %s", err.msg);
    free(p), free(m), free(v), free(p2), free(m2), free(v2);
    mpt_params_free(&pt);
    mpt_params_free(NULL);
}

static int count_entries_(const char *dir, const char *needle) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c -- '%s'", dir, needle);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

static void test_keep_latest(void) {
    mpt_config c;
    mpt_param_table pt;
    mpt_error err;
    if (!tiny_(&c, 1, 256, 1, 64, &pt)) { CHECK(0, "tiny"); return; }
    float *p = malloc(pt.total * 4), *p2 = malloc(pt.total * 4);
    fill_(p, pt.total, 9);
    const char *root = tmp_path_("keep/nested");   /* parents are created */
    mpt_train_state st = {0};
    char out[512], link[600], target[600];
    for (long s = 1; s <= 5; s++) {
        st.step = s;
        CHECK(mpt_checkpoint_save(root, 2, &c, &pt, p, NULL, NULL, &st, out, sizeof out, &err) ==
                  MPT_OK, "save %ld: %s", s, err.msg);
    }
    CHECK(count_entries_(root, "^step_") == 2 && count_entries_(root, "^step_000004$") == 1 &&
              count_entries_(root, "^step_000005$") == 1, "keep 2 leaves steps 4 and 5");
    CHECK(count_entries_(root, "tmp") == 0, "no temporary entries left");
    snprintf(link, sizeof link, "%s/latest", root);
    ssize_t n = readlink(link, target, sizeof target - 1);
    CHECK(n > 0 && (target[n] = 0, !strcmp(target, "step_000005")), "latest -> step_000005");
    CHECK(mpt_checkpoint_resolve(root, out, sizeof out, &err) == MPT_OK &&
              strstr(out, "step_000005") && !strncmp(out, root, strlen(root)),
          "resolve root: %s", out);
    snprintf(target, sizeof target, "%s/step_000004", root);
    CHECK(mpt_checkpoint_resolve(target, out, sizeof out, &err) == MPT_OK && !strcmp(out, target),
          "resolve step dir");
    expect_input_(mpt_checkpoint_resolve(tmp_path_("nowhere"), out, sizeof out, &err), &err,
                  "nowhere", NULL, "resolve missing");
    mkdir(tmp_path_("emptydir"), 0755);
    expect_input_(mpt_checkpoint_resolve(tmp_path_("emptydir"), out, sizeof out, &err), &err,
                  "emptydir", "latest", "resolve empty dir");
    char small[8];
    CHECK(mpt_checkpoint_resolve(root, small, sizeof small, &err) != MPT_OK, "small out buffer");
    /* a failing save (bad options JSON, found after the weights are written) changes nothing */
    st.step = 6;
    snprintf(st.options_json, sizeof st.options_json, "{bad");
    CHECK(mpt_checkpoint_save(root, 2, &c, &pt, p, NULL, NULL, &st, out, sizeof out, &err) ==
              MPT_ERR_RUN, "failing save reports an error");
    CHECK(count_entries_(root, "step_000006") == 0 && count_entries_(root, "^step_") == 2,
          "failed save leaves no directory");
    n = readlink(link, target, sizeof target - 1);
    CHECK(n > 0 && (target[n] = 0, !strcmp(target, "step_000005")), "latest untouched");
    /* saving an existing step again replaces it */
    st.options_json[0] = 0;
    st.step = 5;
    fill_(p, pt.total, 10);
    CHECK(mpt_checkpoint_save(root, 2, &c, &pt, p, NULL, NULL, &st, out, sizeof out, &err) ==
              MPT_OK && mpt_checkpoint_load(out, &pt, p2, NULL, NULL, NULL, NULL, &err) == MPT_OK &&
              !memcmp(p, p2, pt.total * 4) && count_entries_(root, "^step_") == 2,
          "re-save of step 5 replaces it: %s", err.msg);
    free(p), free(p2);
    mpt_params_free(&pt);
}

static void flip_byte_(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    if (!f) { CHECK(0, "open %s", path); return; }
    fseek(f, at, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(ch ^ 0x10, f);
    fclose(f);
}

static long file_size_(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_corrupt(void) {
    mpt_config c, c32;
    mpt_param_table pt, pt32;
    mpt_error err;
    if (!tiny_(&c, 1, 256, 1, 64, &pt) || !tiny_(&c32, 1, 256, 1, 32, &pt32))
        { CHECK(0, "tiny"); return; }
    float *p = malloc(pt.total * 4), *m = malloc(pt.total * 4), *v = malloc(pt.total * 4);
    fill_(p, pt.total, 11), fill_(m, pt.total, 12), fill_(v, pt.total, 13);
    mpt_train_state st = {.step = 1};
    char dir[512], f[700], f2[700];
    int k = 0;
#define FRESH_(with_manifest)                                                                  \
    do {                                                                                       \
        char r_[64];                                                                           \
        snprintf(r_, sizeof r_, "corrupt%d", k++);                                             \
        CHECK(mpt_checkpoint_save(tmp_path_(r_), 0, &c, &pt, p, m, v, &st, dir, sizeof dir,   \
                                  &err) == MPT_OK, "save: %s", err.msg);                       \
        snprintf(f, sizeof f, "%s/model.safetensors", dir);                                    \
        snprintf(f2, sizeof f2, "%s/manifest.json", dir);                                      \
        if (!(with_manifest)) unlink(f2);                                                      \
    } while (0)
    FRESH_(1);
    CHECK(truncate(f, file_size_(f) / 2) == 0, "truncate");
    expect_input_(mpt_checkpoint_load(dir, &pt, p, m, v, NULL, NULL, &err), &err,
                  "model.safetensors", "bytes", "truncated (manifest)");
    FRESH_(0);
    CHECK(truncate(f, file_size_(f) / 2) == 0, "truncate");
    expect_input_(mpt_checkpoint_load(dir, &pt, p, NULL, NULL, NULL, NULL, &err), &err,
                  "model.safetensors", "truncated", "truncated (no manifest)");
    FRESH_(1);
    flip_byte_(f, file_size_(f) / 2);
    expect_input_(mpt_checkpoint_load(dir, &pt, p, m, v, NULL, NULL, &err), &err,
                  "model.safetensors", "checksum mismatch", "flipped byte");
    FRESH_(1);
    snprintf(f, sizeof f, "%s/optimizer.safetensors", dir);
    flip_byte_(f, file_size_(f) - 3);
    expect_input_(mpt_checkpoint_load(dir, &pt, p, m, v, NULL, NULL, &err), &err,
                  "optimizer.safetensors", "checksum mismatch", "flipped optimizer byte");
    FRESH_(0);
    flip_byte_(f, 8);   /* the header's opening brace */
    expect_input_(mpt_checkpoint_load(dir, &pt, p, NULL, NULL, NULL, NULL, &err), &err,
                  "model.safetensors", "JSON", "bad header JSON");
    FRESH_(1);
    write_file_(f2, "{\"files\": ", 10);
    expect_input_(mpt_checkpoint_load(dir, &pt, p, NULL, NULL, NULL, NULL, &err), &err,
                  "manifest.json", NULL, "bad manifest");
    FRESH_(1);
    float *q = malloc(pt32.total * 4);
    expect_input_(mpt_checkpoint_load(dir, &pt32, q, NULL, NULL, NULL, NULL, &err), &err,
                  "model.safetensors", "transformer.wpe.weight", "shape mismatch");
    CHECK(strstr(err.msg, "[64, 64]") && strstr(err.msg, "[32, 64]"), "both shapes: %s", err.msg);
    free(q);
    FRESH_(0);
    expect_input_(mpt_checkpoint_load(dir, &pt, p, NULL, NULL, NULL, &st, &err), &err, dir,
                  "--init-from", "resume of a weights-only dir");
    /* missing tensor: everything but ln_f.bias */
    mpt_st_entry *e = calloc(pt.n, sizeof *e);
    for (size_t i = 0, j = 0; i < pt.n; i++) {
        if (i == pt.lnf_b) continue;
        e[j++] = (mpt_st_entry){pt.t[i].name, pt.t[i].ndim, {pt.t[i].shape[0], pt.t[i].shape[1]},
                                p + pt.t[i].offset};
    }
    CHECK(mpt_safetensors_write(f, e, pt.n - 1, NULL, 0, 0, &err) == MPT_OK, "write: %s", err.msg);
    expect_input_(mpt_checkpoint_load(dir, &pt, p, NULL, NULL, NULL, NULL, &err), &err,
                  "model.safetensors", "missing tensor 'transformer.ln_f.bias'", "missing tensor");
    free(e);
#undef FRESH_
    free(p), free(m), free(v);
    mpt_params_free(&pt);
    mpt_params_free(&pt32);
}

/* A Hugging Face style directory: no manifest, names without "transformer.", no lm_head, mask
 * buffers present, a config.json as transformers writes it. */
static void test_hf_dir(void) {
    const char *dir = tmp_path_("hf");
    char path[600];
    mpt_error err;
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\n  \"activation_function\": \"gelu_new\",\n  \"architectures\": "
                      "[\"GPT2LMHeadModel\"],\n  \"attn_pdrop\": 0.1,\n  \"bos_token_id\": 50256,\n"
                      "  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n"
                      "  \"n_ctx\": 16,\n  \"n_embd\": 32,\n  \"n_head\": 4,\n  \"n_inner\": null,\n"
                      "  \"n_layer\": 2,\n  \"n_positions\": 16,\n  \"vocab_size\": 50\n}\n";
    write_file_(path, cfg, strlen(cfg));
    mpt_config c;
    mpt_param_table pt;
    CHECK(mpt_checkpoint_read_config(dir, &c, &err) == MPT_OK && c.ffn == 128 && c.tied == 1,
          "HF config: %s", err.msg);
    if (mpt_config_finish(&c, 64, &err) != MPT_OK || mpt_params_build(&pt, &c, &err) != MPT_OK)
        { CHECK(0, "model from HF config: %s", err.msg); return; }
    float *p = malloc(pt.total * 4), *p2 = malloc(pt.total * 4);
    fill_(p, pt.total, 14), fill_(p2, pt.total, 15);
    size_t T = 16;
    float *mask = calloc(T * T, 4), masked = -1e4f;
    mpt_st_entry *e = calloc(pt.n + 2 * 2 + 1, sizeof *e);
    char (*names)[128] = calloc(pt.n + 5, 128);
    size_t n = 0;
    for (size_t i = 0; i < pt.n; i++) {
        const mpt_tensor *t = &pt.t[i];
        snprintf(names[n], 128, "%s", t->name + strlen("transformer."));
        e[n] = (mpt_st_entry){names[n], t->ndim, {t->shape[0], t->shape[1]}, p + t->offset};
        n++;
        if (t->layer >= 0 && i == pt.layer[t->layer * MPT_LAYER_SLOTS + MPT_LN1_W]) {
            snprintf(names[n], 128, "h.%d.attn.bias", t->layer);
            e[n] = (mpt_st_entry){names[n], 4, {1, 1, T, T}, mask};
            n++;
            snprintf(names[n], 128, "h.%d.attn.masked_bias", t->layer);
            e[n] = (mpt_st_entry){names[n], 0, {0}, &masked};
            n++;
        }
    }
    mpt_st_meta meta = {"format", "pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(mpt_safetensors_write(path, e, n, &meta, 1, 0, &err) == MPT_OK, "write: %s", err.msg);
    int has_opt = -1;
    float *m = malloc(pt.total * 4), *v = malloc(pt.total * 4);
    CHECK(mpt_checkpoint_load(dir, &pt, p2, m, v, &has_opt, NULL, &err) == MPT_OK && has_opt == 0,
          "HF dir loads: %s", err.msg);
    const mpt_tensor *w = &pt.t[pt.wte];
    zero_padding_(&pt, p);
    CHECK(!memcmp(p, p2, pt.total * 4), "HF weights bit-exact, padding (V 50 -> 64) zeroed");
    /* with the prefix and a tied duplicate lm_head.weight equal to wte (as torch.save keeps) */
    for (size_t i = 0; i < n; i++)
        if (!strstr(names[i], "attn.bias") && !strstr(names[i], "masked_bias")) {
            char tmp[128];
            snprintf(tmp, sizeof tmp, "transformer.%s", names[i]);
            snprintf(names[i], 128, "%s", tmp);
        }
    e[n++] = (mpt_st_entry){"lm_head.weight", 2, {w->shape[0], w->shape[1]}, p + w->offset};
    CHECK(mpt_safetensors_write(path, e, n, &meta, 1, 0, &err) == MPT_OK, "write: %s", err.msg);
    CHECK(mpt_checkpoint_load(dir, &pt, p2, NULL, NULL, NULL, NULL, &err) == MPT_OK &&
              !memcmp(p, p2, pt.total * 4), "prefixed names + tied lm_head: %s", err.msg);
    float *zeros = calloc(mpt_tensor_ckpt_numel(w), 4);
    e[n - 1].data = zeros;   /* an lm_head unlike wte */
    CHECK(mpt_safetensors_write(path, e, n, &meta, 1, 0, &err) == MPT_OK, "write: %s", err.msg);
    expect_input_(mpt_checkpoint_load(dir, &pt, p2, NULL, NULL, NULL, NULL, &err), &err,
                  "model.safetensors", "tie_word_embeddings", "untied lm_head in a tied model");
    free(zeros), free(p), free(p2), free(m), free(v), free(mask), free(e), free(names);
    mpt_params_free(&pt);
}

static int rm_(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* 1 when the two files hold the same bytes. */
static int same_file_(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca = 0, cb = 0;
    while (same && (ca = fgetc(fa)) != EOF) same = ca == (cb = fgetc(fb));
    if (same) same = fgetc(fb) == EOF;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Streaming: pieces of odd sizes give the whole-buffer bytes; range reads convert like whole
 * reads; a session short of data fails and leaves nothing behind. */
static void test_streaming(void) {
    printf("streaming\n");
    mpt_error err;
    float a[12], b[4], c[7];
    fill_(a, 12, 11), fill_(b, 4, 12), fill_(c, 7, 13);
    mpt_st_entry e[3] = {{"a", 2, {3, 4}, a}, {"b", 1, {4}, b}, {"c", 1, {7}, c}};
    const mpt_st_meta meta = {"format", "pt"};
    const char *whole = tmp_path_("whole.safetensors"), *piece = tmp_path_("piece.safetensors");
    CHECK(mpt_safetensors_write(whole, e, 3, &meta, 1, 0, &err) == MPT_OK, "write: %s", err.msg);
    float all[23];
    memcpy(all, a, sizeof a), memcpy(all + 12, b, sizeof b), memcpy(all + 16, c, sizeof c);
    mpt_st_writer w;
    const mpt_st_entry shapes[3] = {{"a", 2, {3, 4}, NULL}, {"b", 1, {4}, NULL}, {"c", 1, {7}, NULL}};
    CHECK(mpt_st_writer_open(&w, piece, shapes, 3, &meta, 1, &err) == MPT_OK, "open: %s", err.msg);
    size_t cuts[] = {0, 5, 6, 13, 23};   /* across tensor boundaries */
    for (int i = 0; i + 1 < 5; i++)
        CHECK(mpt_st_writer_put(&w, all + cuts[i], cuts[i + 1] - cuts[i], &err) == MPT_OK,
              "put: %s", err.msg);
    CHECK(mpt_st_writer_put(&w, all, 1, &err) != MPT_OK, "a put past the header's size fails");
    CHECK(mpt_st_writer_close(&w, 1, &err) == MPT_OK && same_file_(whole, piece),
          "pieces give the same bytes as one write");
    CHECK(mpt_st_writer_open(&w, piece, shapes, 3, &meta, 1, &err) == MPT_OK &&
              mpt_st_writer_put(&w, all, 22, &err) == MPT_OK &&
              mpt_st_writer_close(&w, 0, &err) != MPT_OK && access(piece, F_OK) != 0,
          "a file one element short fails and is removed");
    mpt_safetensors f;
    float out[7];
    CHECK(mpt_safetensors_open(&f, whole, &err) == MPT_OK, "open: %s", err.msg);
    const mpt_st_info *t = mpt_safetensors_find(&f, "a");
    CHECK(t && mpt_safetensors_read_f32_range(&f, t, 5, 6, out, &err) == MPT_OK &&
              !memcmp(out, a + 5, 6 * sizeof *out), "range read of rows 1..2 (F32)");
    CHECK(t && mpt_safetensors_read_f32_range(&f, t, 10, 3, out, &err) != MPT_OK,
          "a range past the tensor fails");
    mpt_safetensors_free(&f);
    /* F64 through the conversion buffer: 3000 elements, more than one stack buffer's worth */
    enum { N64 = 3000 };
    double *d = malloc(N64 * sizeof *d);
    float *got = malloc(N64 * sizeof *got);
    for (int i = 0; i < N64; i++) d[i] = 0.5 * i - 7.25;
    char hdr[128];
    snprintf(hdr, sizeof hdr, "{\"d\":{\"dtype\":\"F64\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
             N64, N64 * 8);
    const char *p64 = tmp_path_("f64.safetensors");
    make_st_(p64, hdr, d, N64 * sizeof *d);
    CHECK(mpt_safetensors_open(&f, p64, &err) == MPT_OK, "open F64: %s", err.msg);
    t = mpt_safetensors_find(&f, "d");
    int ok = t && mpt_safetensors_read_f32_range(&f, t, 1, N64 - 1, got, &err) == MPT_OK;
    for (int i = 1; ok && i < N64; i++) ok = got[i - 1] == (float)d[i];
    CHECK(ok, "F64 range read across conversion chunks");
    mpt_safetensors_free(&f);
    free(d);
    free(got);
}

/* A save session fed in pieces of odd sizes writes the same directory as a whole-buffer save. */
static void test_save_session(void) {
    printf("save session\n");
    mpt_config c;
    mpt_param_table pt;
    mpt_error err;
    if (!tiny_(&c, 0, 250, 64, 64, &pt)) {
        CHECK(0, "build tiny model");
        return;
    }
    size_t n = pt.total, data = 0;
    for (size_t i = 0; i < pt.n; i++) data += mpt_tensor_ckpt_numel(&pt.t[i]);
    float *bufs[3], *flat = malloc(3 * data * sizeof *flat);
    for (int k = 0; k < 3; k++) {
        bufs[k] = calloc(n, sizeof *bufs[k]);
        for (size_t i = 0; i < pt.n; i++)
            fill_(bufs[k] + pt.t[i].offset, mpt_tensor_ckpt_numel(&pt.t[i]), 20 + (uint32_t)(3 * i + k));
    }
    size_t at = 0;   /* the data in file order */
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < pt.n; i++) {
            memcpy(flat + at, bufs[k] + pt.t[i].offset, mpt_tensor_ckpt_numel(&pt.t[i]) * 4);
            at += mpt_tensor_ckpt_numel(&pt.t[i]);
        }
    mpt_train_state st = {.step = 4, .seed = 9};
    char a[512], b[512];
    CHECK(mpt_checkpoint_save(tmp_path_("sess_whole"), 0, &c, &pt, bufs[0], bufs[1], bufs[2], &st,
                              a, sizeof a, &err) == MPT_OK, "whole save: %s", err.msg);
    mpt_ckpt_writer w;
    mpt_status rc = mpt_checkpoint_begin(&w, tmp_path_("sess_piece"), 0, 4, &c, &pt, 1, &err);
    for (size_t i = 0, step = 1; rc == MPT_OK && i < 3 * data; i += step, step = step * 3 + 1)
        rc = mpt_checkpoint_put(&w, flat + i, i + step < 3 * data ? step : 3 * data - i, &err);
    CHECK(rc == MPT_OK && mpt_checkpoint_commit(&w, &st, b, sizeof b, &err) == MPT_OK,
          "session: %s", err.msg);
    const char *files[] = {"model.safetensors", "optimizer.safetensors", "manifest.json",
                           "config.json", "trainer_state.json"};
    for (int i = 0; i < 5; i++) {
        char fa[1100], fb[1100];
        snprintf(fa, sizeof fa, "%s/%s", a, files[i]);
        snprintf(fb, sizeof fb, "%s/%s", b, files[i]);
        CHECK(same_file_(fa, fb), "session and whole save: %s differs", files[i]);
    }
    rc = mpt_checkpoint_begin(&w, tmp_path_("sess_short"), 0, 5, &c, &pt, 1, &err);
    if (rc == MPT_OK) rc = mpt_checkpoint_put(&w, flat, data, &err);   /* the model only */
    CHECK(rc == MPT_OK && mpt_checkpoint_commit(&w, &st, b, sizeof b, &err) != MPT_OK,
          "a session short of the optimizer state does not publish");
    CHECK(access(tmp_path_("sess_short/latest"), F_OK) != 0, "no latest after a failed session");
    for (int k = 0; k < 3; k++) free(bufs[k]);
    free(flat);
    mpt_params_free(&pt);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/mpt_ckpt_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_conversion();
    test_st_roundtrip();
    test_st_malformed();
    test_hfconfig();
    test_roundtrip(1, 256, 1);
    test_roundtrip(0, 256, 1);     /* untied lm_head */
    test_roundtrip(0, 250, 64);    /* padded vocab: Vp 256 > V 250, both heads */
    g_align = 1000;                /* units padded too (ZeRO layouts) */
    test_roundtrip(0, 250, 64);
    g_align = 1;
    test_keep_latest();
    test_corrupt();
    test_hf_dir();
    test_streaming();
    test_save_session();
    nftw(g_root, rm_, 16, FTW_DEPTH | FTW_PHYS);
    return check_finish();
}
