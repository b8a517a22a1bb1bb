/* cmd_tokenize.c — `mptrain tokenize`: text files -> one llm.c token file, or shards of a
 * given size (CONTRACT §4, §6).
 *
 * argv is main's: argv[1] is "tokenize" and options start at argv[2], as for the other
 * commands (--in repeats, which args.h does not do, so this command parses its few options
 * itself). Each --in file, or each *.txt file of an --in folder in name order, is one document;
 * documents are encoded one at a time and joined with <|endoftext|> between them (gpt2) or
 * nothing (byte). With --shard-tokens N the token stream is cut into files of N tokens each
 * (the last holds the rest), written as they fill: OUT_000000.bin, OUT_000001.bin, ... (OUT
 * without its .bin), so that `train --data 'OUT_*.bin'` reads the same stream as one file. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/file.h"
#include "tok/tokenizer.h"
#include "tok/tokfile.h"

static const char usage_[] =
    "usage: mptrain tokenize --in TEXT --out FILE.bin [--tokenizer byte|gpt2] [--shard-tokens N]\n"
    "\n"
    "Turns text into a token file (llm.c layout: a header of 256 int32, then uint16 tokens).\n"
    "\n"
    "  --in PATH         a text file, or a folder whose *.txt files are read in name order;\n"
    "                    may be given several times. Each file is one document; documents are\n"
    "                    joined in order with <|endoftext|> between them (gpt2) or nothing (byte)\n"
    "  --out FILE.bin    the token file to write (written aside, then renamed into place)\n"
    "  --shard-tokens N  write shards of N tokens each instead (the last holds the rest):\n"
    "                    FILE_000000.bin, FILE_000001.bin, ...; `train --data 'FILE_*.bin'`\n"
    "                    reads them as one stream, equal to the single file\n"
    "  --tokenizer KIND  byte: one token per byte, vocab 256 (the default)\n"
    "                    gpt2: GPT-2's BPE, vocab 50257 (needs `make setup` to fetch it)\n"
    "  -h, --help        print this help\n";

/* A growable list of malloc'd strings; owns them. */
typedef struct strlist_ {
    char **v;
    size_t n, cap;
} strlist_;

static void strlist_free_(strlist_ *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* Appends a copy of a, or of a + "/" + b when b is given. Returns 0 when out of memory. */
static int strlist_add_(strlist_ *l, const char *a, const char *b) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16, bytes;
        if (!mpt_size_mul(cap, sizeof *l->v, &bytes)) return 0;
        char **v = realloc(l->v, bytes);
        if (!v) return 0;
        l->v = v;
        l->cap = cap;
    }
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    int slash = b && la && a[la - 1] != '/';
    char *s = malloc(la + (size_t)slash + lb + (b ? 1 : 0) + 1);
    if (!s) return 0;
    memcpy(s, a, la);
    if (slash) s[la] = '/';
    if (b) memcpy(s + la + slash, b, lb);
    s[la + (size_t)slash + lb] = '\0';
    l->v[l->n++] = s;
    return 1;
}

static int cmp_str_(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the documents named by one --in: the file itself, or a folder's *.txt files sorted. */
static mpt_status add_input_(strlist_ *docs, const char *path, mpt_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--in %s: %s; give a text file or a folder of "
                        ".txt files", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (!strlist_add_(docs, path, NULL)) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
        return MPT_OK;
    }
    DIR *d = opendir(path);
    if (!d) return mpt_fail(err, MPT_ERR_INPUT, "--in %s: cannot list it (%s)", path,
                            strerror(errno));
    strlist_ names = {0};
    mpt_status st = MPT_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".txt") != 0) continue;
        if (!strlist_add_(&names, e->d_name, NULL)) {
            st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
            break;
        }
    }
    closedir(d);
    if (st == MPT_OK && names.n == 0)
        st = mpt_fail(err, MPT_ERR_INPUT, "--in %s: the folder has no .txt files: name a text "
                      "file, or a folder holding .txt files", path);
    if (st == MPT_OK) qsort(names.v, names.n, sizeof *names.v, cmp_str_);
    for (size_t i = 0; st == MPT_OK && i < names.n; i++)
        if (!strlist_add_(docs, path, names.v[i])) st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
    strlist_free_(&names);
    return st;
}

/* Reads a whole file into malloc'd *data (caller frees). */
static mpt_status read_doc_(const char *path, char **data, size_t *len, mpt_error *err) {
    mpt_status st = mpt_file_read(path, SIZE_MAX - 1, data, len, err);
    return st ? mpt_error_prefix(err, "--in") : st;
}

/* Appends src[0..n) to the growable token array *all (length *len, capacity *cap). */
static int append_tokens_(int32_t **all, size_t *len, size_t *cap, const int32_t *src, size_t n) {
    size_t need;
    if (!mpt_size_add(*len, n, &need)) return 0;
    if (need > *cap) {
        size_t ncap = *cap ? *cap : 1 << 16, bytes;
        while (ncap < need)
            if (!mpt_size_mul(ncap, 2, &ncap)) return 0;
        if (!mpt_size_mul(ncap, sizeof **all, &bytes)) return 0;
        int32_t *p = realloc(*all, bytes);
        if (!p) return 0;
        *all = p;
        *cap = ncap;
    }
    if (n) memcpy(*all + *len, src, n * sizeof *src);
    *len = need;
    return 1;
}

/* If argv[*i] is --name VALUE or --name=VALUE, sets *val (advancing *i past VALUE) and returns
 * 1, or -1 when the value is missing; returns 0 for any other argument. */
static int take_opt_(int argc, char **argv, int *i, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t nl = strlen(name);
    if (strncmp(a, name, nl) != 0) return 0;
    if (a[nl] == '=') {
        *val = a + nl + 1;
        return **val ? 1 : -1;
    }
    if (a[nl] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

#define MAX_SHARD_TOKENS_ 2147483647LL /* a token file's int32 count */

/* The name of shard k: out without a trailing ".bin", then _NNNNNN.bin. */
static mpt_status shard_name_(const char *out, long k, char *buf, size_t n, mpt_error *err) {
    size_t len = strlen(out);
    if (len > 4 && strcmp(out + len - 4, ".bin") == 0) len -= 4;
    int w = snprintf(buf, n, "%.*s_%06ld.bin", (int)len, out, k);
    if (w < 0 || (size_t)w >= n) return mpt_fail(err, MPT_ERR_INPUT, "--out %s: name too long", out);
    return MPT_OK;
}

/* Writes full shards of `shard` tokens from the front of all[0..*n) and keeps the rest;
 * final: also the rest as the last shard. */
static mpt_status flush_shards_(const char *out, long long shard, int32_t *all, size_t *n,
                                long *k, int final, int tty, mpt_error *err) {
    size_t at = 0, per = (size_t)shard;
    while (*n - at >= per || (final && *n > at)) {
        size_t m = *n - at < per ? *n - at : per;
        char name[4200];
        mpt_status st = shard_name_(out, *k, name, sizeof name, err);
        if (!st) st = mpt_tokfile_write(name, all + at, m, err);
        if (st) return st;
        printf("%stokenize: shard %ld: %zu tokens -> %s%s", tty ? "\r\033[K" : "", *k, m, name,
               tty ? "" : "\n");
        fflush(stdout);
        (*k)++;
        at += m;
    }
    if (at) memmove(all, all + at, (*n - at) * sizeof *all);
    *n -= at;
    return MPT_OK;
}

static double now_s_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mpt_cli_tokenize(int argc, char **argv) {
    mpt_error err = {0};
    strlist_ docs = {0};
    const char *out = NULL, *kind = "byte", *shard_s = NULL;
    long long shard = 0;
    long shards = 0;
    size_t n_total = 0;
    int tty = mpt_cli_stdout_is_terminal();
    mpt_tokenizer *tok = NULL;
    int32_t *all = NULL;
    size_t n_all = 0, cap_all = 0, bytes_in = 0;
    int rc = 2, have_in = 0;

    for (int i = 2; i < argc; i++) {
        const char *val = NULL;
        int got;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_, stdout);
            rc = 0;
            goto done;
        } else if ((got = take_opt_(argc, argv, &i, "--in", &val)) != 0) {
            if (got < 0) goto missing;
            have_in = 1;
            if (add_input_(&docs, val, &err) != MPT_OK) goto report;
        } else if ((got = take_opt_(argc, argv, &i, "--out", &val)) != 0) {
            if (got < 0) goto missing;
            out = val;
        } else if ((got = take_opt_(argc, argv, &i, "--tokenizer", &val)) != 0) {
            if (got < 0) goto missing;
            kind = val;
        } else if ((got = take_opt_(argc, argv, &i, "--shard-tokens", &val)) != 0) {
            if (got < 0) goto missing;
            shard_s = val;
        } else {
            mpt_fail(&err, MPT_ERR_INPUT, "tokenize: unknown argument '%s'; see `mptrain "
                     "tokenize --help`", argv[i]);
            goto report;
        }
        continue;
    missing:
        mpt_fail(&err, MPT_ERR_INPUT, "tokenize: %s needs a value; see `mptrain tokenize "
                 "--help`", argv[i]);
        goto report;
    }
    if (!have_in || !out) {
        mpt_fail(&err, MPT_ERR_INPUT, "tokenize: %s is required; usage: mptrain tokenize --in "
                 "TEXT --out FILE.bin [--tokenizer byte|gpt2]", have_in ? "--out" : "--in");
        goto report;
    }
    if (strcmp(kind, "byte") != 0 && strcmp(kind, "gpt2") != 0) {
        mpt_fail(&err, MPT_ERR_INPUT, "tokenize: unknown --tokenizer '%s'; use byte or gpt2",
                 kind);
        goto report;
    }
    if (shard_s) {
        char *end = NULL;
        errno = 0;
        shard = strtoll(shard_s, &end, 10);
        if (errno || !end || *end || end == shard_s || shard < 1 || shard > MAX_SHARD_TOKENS_) {
            mpt_fail(&err, MPT_ERR_INPUT, "tokenize: --shard-tokens %s is out of range: use a "
                     "whole number from 1 to %lld", shard_s, MAX_SHARD_TOKENS_);
            goto report;
        }
    }
    char bpe_dir[4096];
    mpt_cli_cache_path(bpe_dir, sizeof bpe_dir, "gpt2-bpe");
    if (mpt_tokenizer_init(&tok, kind, bpe_dir, &err) != MPT_OK) goto report;

    double t0 = now_s_();
    int eot = mpt_tokenizer_eot(tok);
    for (size_t d = 0; d < docs.n; d++) {
        char *text = NULL;
        size_t len = 0, n = 0;
        int32_t *ids = NULL;
        if (read_doc_(docs.v[d], &text, &len, &err) != MPT_OK) goto report;
        mpt_status st = mpt_tokenizer_encode(tok, text, len, 0, &ids, &n, &err);
        free(text);
        if (st != MPT_OK) {
            mpt_error_prefix(&err, "--in %s", docs.v[d]);
            goto report;
        }
        int ok = (d == 0 || eot < 0 || append_tokens_(&all, &n_all, &cap_all, &eot, 1)) &&
                 append_tokens_(&all, &n_all, &cap_all, ids, n);
        free(ids);
        if (!ok) {
            mpt_fail(&err, MPT_ERR_RUN, "out of memory after %zu tokens", n_all);
            goto report;
        }
        bytes_in += len;
        n_total += n + (d > 0 && eot >= 0);
        if (shard && flush_shards_(out, shard, all, &n_all, &shards, 0, tty, &err)) goto report;
        if (tty) { /* the progress display: files, bytes, tokens and speed so far */
            double dt = now_s_() - t0;
            printf("\r\033[Ktokenize: %zu/%zu files, %.1f MB -> %zu tokens, %.0f tokens/s", d + 1,
                   docs.n, (double)bytes_in / 1e6, n_total, dt > 0 ? (double)n_total / dt : 0.0);
            fflush(stdout);
        }
    }
    if (tty) printf("\r\033[K");
    if (shard && n_total > 0 && flush_shards_(out, shard, all, &n_all, &shards, 1, tty, &err))
        goto report;
    if (tty && shard) printf("\n");
    double secs = now_s_() - t0;
    if (shard && n_total > 0) {
        char first[4200];
        if (shard_name_(out, 0, first, sizeof first, &err)) goto report;
        printf("tokenize: %zu bytes in %zu file%s -> %zu %s tokens (vocab %d) in %.2f s, %.0f "
               "tokens/s; wrote %ld shard%s of up to %lld tokens from %s\n", bytes_in, docs.n,
               docs.n == 1 ? "" : "s", n_total, mpt_tokenizer_kind(tok), mpt_tokenizer_vocab(tok),
               secs, secs > 0 ? (double)n_total / secs : 0.0, shards, shards == 1 ? "" : "s",
               shard, first);
        rc = 0;
        goto done;
    }
    if (n_all == 0) {
        mpt_fail(&err, MPT_ERR_INPUT, "tokenize: the input holds no text; nothing to write");
        goto report;
    }
    if (mpt_tokfile_write(out, all, n_all, &err) != MPT_OK) goto report;
    printf("tokenize: %zu bytes in %zu file%s -> %zu %s tokens (vocab %d) in %.2f s, %.0f "
           "tokens/s; wrote %s\n", bytes_in, docs.n, docs.n == 1 ? "" : "s", n_all,
           mpt_tokenizer_kind(tok), mpt_tokenizer_vocab(tok), secs,
           secs > 0 ? (double)n_all / secs : 0.0, out);
    rc = 0;
    goto done;
report:
    rc = mpt_cli_report(&err);
done:
    free(all);
    mpt_tokenizer_free(tok);
    strlist_free_(&docs);
    return rc;
}
