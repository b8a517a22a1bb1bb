/* tokenizer.c — the "byte" and "gpt2" tokenizers (see tokenizer.h).
 *
 * gpt2 encoding: (with allow_special) split the text at "<|endoftext|>", then pre-tokenize each
 * piece with GPT-2's regex through PCRE2 (UTF + Unicode properties, JIT when available), then
 * merge each word with bpe.c. Bytes the regex cannot match (invalid UTF-8, which PCRE2 skips
 * under PCRE2_MATCH_INVALID_UTF) are merged as words of their own, so any byte string
 * round-trips through encode and decode.
 *
 * Threads: the compiled regex and the vocabulary are read-only; match data and the JIT stack
 * belong to one encode call; the word cache is shared and guarded by a read-write lock. */
#define PCRE2_CODE_UNIT_WIDTH 8
#define HASH_NONFATAL_OOM 1 /* uthash: a failed insert leaves item->hh.tbl NULL, never exits */
#include "tok/tokenizer.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "tok/bpe.h"

#define EOT_TEXT_ "<|endoftext|>"
#define EOT_LEN_ (sizeof EOT_TEXT_ - 1)
#define CACHE_WORD_MAX_ 64         /* longer words are merged every time, never cached */
#define CACHE_ITEMS_MAX_ 200000    /* the cache stops growing here (~100 bytes per item) */
#define JIT_STACK_MAX_ (8u << 20)  /* per encode call; touched only as deep as a match needs */

static const char gpt2_pattern_[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* One cached word: its bytes (the key) and its ids. One malloc holds both. */
typedef struct cache_item_ {
    UT_hash_handle hh;
    uint32_t nbytes, ntok;
    int32_t tok[]; /* ntok ids, then nbytes key bytes */
} cache_item_;

typedef struct word_cache_ {
    pthread_rwlock_t lock;
    cache_item_ *head; /* guarded by lock; owns its items */
    size_t items;      /* guarded by lock */
    atomic_int full;   /* set once items reaches CACHE_ITEMS_MAX_ */
} word_cache_;

enum { KIND_BYTE_, KIND_GPT2_ };

struct mpt_tokenizer {
    int kind, vocab, eot;
    mpt_bpe *bpe;        /* owned (gpt2) */
    pcre2_code *re;      /* owned (gpt2) */
    int jit;             /* re was JIT-compiled */
    word_cache_ *cache;  /* owned (gpt2); mutable behind the const tokenizer */
};

/* Per-call PCRE2 state: match data and (with JIT) a private stack. */
typedef struct match_state_ {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
} match_state_;

static void cache_free_(word_cache_ *c) {
    if (!c) return;
    cache_item_ *it, *tmp;
    HASH_ITER(hh, c->head, it, tmp) {
        HASH_DEL(c->head, it);
        free(it);
    }
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

void mpt_tokenizer_free(mpt_tokenizer *tok) {
    if (!tok) return;
    cache_free_(tok->cache);
    pcre2_code_free(tok->re);
    mpt_bpe_free(tok->bpe);
    free(tok);
}

static mpt_status init_gpt2_(mpt_tokenizer *t, const char *bpe_dir, mpt_error *err) {
    if (!bpe_dir)
        return mpt_fail(err, MPT_ERR_INPUT, "the gpt2 tokenizer needs the folder holding "
                        "encoder.json and vocab.bpe");
    mpt_status st = mpt_bpe_load(&t->bpe, bpe_dir, err);
    if (st != MPT_OK) return st;
    t->vocab = mpt_bpe_size(t->bpe);
    t->eot = mpt_bpe_lookup(t->bpe, EOT_TEXT_, EOT_LEN_);
    if (t->eot < 0)
        return mpt_fail(err, MPT_ERR_INPUT, "%s/encoder.json has no %s token; re-fetch it with "
                        "`make setup`", bpe_dir, EOT_TEXT_);
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern_, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return mpt_fail(err, MPT_ERR_RUN, "PCRE2 rejected GPT-2's pattern at %zu: %s (is "
                        "libpcre2-8 built with Unicode support?)", (size_t)at, (char *)msg);
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0; /* else: the interpreter */
    t->cache = calloc(1, sizeof *t->cache);
    if (!t->cache) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    if (pthread_rwlock_init(&t->cache->lock, NULL) != 0) {
        free(t->cache);
        t->cache = NULL;
        return mpt_fail(err, MPT_ERR_RUN, "cannot create the tokenizer's cache lock");
    }
    return MPT_OK;
}

mpt_status mpt_tokenizer_init(mpt_tokenizer **out, const char *kind, const char *bpe_dir,
                              mpt_error *err) {
    *out = NULL;
    mpt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    mpt_status st = MPT_OK;
    if (kind && strcmp(kind, "byte") == 0) {
        t->kind = KIND_BYTE_;
        t->vocab = 256;
        t->eot = -1;
    } else if (kind && strcmp(kind, "gpt2") == 0) {
        t->kind = KIND_GPT2_;
        st = init_gpt2_(t, bpe_dir, err);
    } else {
        st = mpt_fail(err, MPT_ERR_INPUT, "unknown tokenizer \"%s\"; use byte or gpt2",
                      kind ? kind : "(none)");
    }
    if (st != MPT_OK) {
        mpt_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MPT_OK;
}

int mpt_tokenizer_vocab(const mpt_tokenizer *tok) { return tok->vocab; }
int mpt_tokenizer_eot(const mpt_tokenizer *tok) { return tok->eot; }
const char *mpt_tokenizer_kind(const mpt_tokenizer *tok) {
    return tok->kind == KIND_GPT2_ ? "gpt2" : "byte";
}

/* ---- gpt2 encoding ----------------------------------------------------------------------- */

/* Merges one word into out (room for wlen ids), through the shared cache. */
static mpt_status encode_word_(const mpt_tokenizer *tok, const char *w, size_t wlen,
                               int32_t *out, size_t *n, mpt_error *err) {
    word_cache_ *c = tok->cache;
    int cacheable = wlen <= CACHE_WORD_MAX_;
    if (cacheable) {
        cache_item_ *it = NULL;
        pthread_rwlock_rdlock(&c->lock);
        HASH_FIND(hh, c->head, w, wlen, it);
        if (it) {
            memcpy(out, it->tok, it->ntok * sizeof *out);
            *n = it->ntok;
        }
        pthread_rwlock_unlock(&c->lock);
        if (it) return MPT_OK;
    }
    mpt_status st = mpt_bpe_merge(tok->bpe, (const uint8_t *)w, wlen, out, n, err);
    if (st != MPT_OK || !cacheable || atomic_load_explicit(&c->full, memory_order_relaxed))
        return st;
    /* Best effort: a word that cannot be cached is still encoded. */
    cache_item_ *it = malloc(sizeof *it + *n * sizeof(int32_t) + wlen);
    if (!it) return MPT_OK;
    it->nbytes = (uint32_t)wlen;
    it->ntok = (uint32_t)*n;
    memcpy(it->tok, out, *n * sizeof(int32_t));
    char *key = (char *)(it->tok + *n);
    memcpy(key, w, wlen);
    cache_item_ *have = NULL;
    pthread_rwlock_wrlock(&c->lock);
    HASH_FIND(hh, c->head, key, wlen, have);
    if (!have && c->items < CACHE_ITEMS_MAX_) {
        HASH_ADD_KEYPTR(hh, c->head, key, wlen, it);
        if (it->hh.tbl) {
            it = NULL; /* the cache owns it now */
            if (++c->items == CACHE_ITEMS_MAX_) atomic_store(&c->full, 1);
        }
    }
    pthread_rwlock_unlock(&c->lock);
    free(it);
    return MPT_OK;
}

/* Pre-tokenizes s[0..len) with GPT-2's regex and appends the ids of every piece to out. */
static mpt_status encode_text_(const mpt_tokenizer *tok, match_state_ *ms, const char *s,
                               size_t len, int32_t *out, size_t *n, mpt_error *err) {
    size_t pos = 0;
    while (pos < len) {
        int rc = pcre2_match(tok->re, (PCRE2_SPTR)s, len, pos, 0, ms->md, ms->mctx);
        size_t start = len, end = len;
        if (rc >= 0) {
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->md);
            start = ov[0];
            end = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return mpt_fail(err, MPT_ERR_RUN, "GPT-2 pre-tokenizer failed at byte %zu: %s", pos,
                            (char *)msg);
        }
        size_t k;
        mpt_status st;
        if (start > pos) { /* bytes the regex skipped: invalid UTF-8 */
            if ((st = encode_word_(tok, s + pos, start - pos, out + *n, &k, err)) != MPT_OK)
                return st;
            *n += k;
        }
        if (start >= len) break;
        if (end == start) end = start + 1; /* no alternative matches empty; never loop */
        if ((st = encode_word_(tok, s + start, end - start, out + *n, &k, err)) != MPT_OK)
            return st;
        *n += k;
        pos = end;
    }
    return MPT_OK;
}

static void match_state_free_(match_state_ *ms) {
    pcre2_match_data_free(ms->md);
    pcre2_match_context_free(ms->mctx);
    pcre2_jit_stack_free(ms->stack);
}

static mpt_status match_state_init_(const mpt_tokenizer *tok, match_state_ *ms, mpt_error *err) {
    memset(ms, 0, sizeof *ms);
    ms->md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    int ok = ms->md != NULL;
    if (ok && tok->jit) {
        ms->mctx = pcre2_match_context_create(NULL);
        ms->stack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX_, NULL);
        ok = ms->mctx && ms->stack;
        if (ok) pcre2_jit_stack_assign(ms->mctx, NULL, ms->stack);
    }
    if (!ok) {
        match_state_free_(ms);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the GPT-2 pre-tokenizer");
    }
    return MPT_OK;
}

static mpt_status encode_gpt2_(const mpt_tokenizer *tok, const char *text, size_t len,
                               int allow_special, int32_t *out, size_t *n, mpt_error *err) {
    match_state_ ms;
    mpt_status st = match_state_init_(tok, &ms, err);
    if (st != MPT_OK) return st;
    const char *p = text, *end = text + len;
    for (;;) {
        const char *hit = allow_special ? memmem(p, (size_t)(end - p), EOT_TEXT_, EOT_LEN_) : NULL;
        size_t seg = hit ? (size_t)(hit - p) : (size_t)(end - p);
        if ((st = encode_text_(tok, &ms, p, seg, out, n, err)) != MPT_OK || !hit) break;
        out[(*n)++] = tok->eot; /* fits: the 13 bytes it replaces had room for 13 ids */
        p = hit + EOT_LEN_;
    }
    match_state_free_(&ms);
    return st;
}

mpt_status mpt_tokenizer_encode(const mpt_tokenizer *tok, const char *text, size_t len,
                                int allow_special, int32_t **tokens, size_t *n, mpt_error *err) {
    *tokens = NULL;
    *n = 0;
    size_t bytes;
    /* Every id covers at least one byte, so len ids always suffice. */
    if (!mpt_size_mul(len ? len : 1, sizeof(int32_t), &bytes))
        return mpt_fail(err, MPT_ERR_INPUT, "text of %zu bytes is too large to encode", len);
    int32_t *out = malloc(bytes);
    if (!out) return mpt_fail(err, MPT_ERR_RUN, "out of memory encoding %zu bytes", len);
    size_t count = 0;
    mpt_status st = MPT_OK;
    if (tok->kind == KIND_BYTE_) {
        for (size_t i = 0; i < len; i++) out[i] = (unsigned char)text[i];
        count = len;
    } else {
        st = encode_gpt2_(tok, text, len, allow_special, out, &count, err);
    }
    if (st != MPT_OK) {
        free(out);
        return st;
    }
    if (count && count < len) { /* give back the unused tail */
        int32_t *shrunk = realloc(out, count * sizeof *out);
        if (shrunk) out = shrunk;
    }
    *tokens = out;
    *n = count;
    return MPT_OK;
}

/* ---- decoding ------------------------------------------------------------------------- */

mpt_status mpt_tokenizer_decode(const mpt_tokenizer *tok, const int32_t *tokens, size_t n,
                                char **text, size_t *len, mpt_error *err) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= tok->vocab)
            return mpt_fail(err, MPT_ERR_INPUT, "token %d at position %zu is outside the %s "
                            "vocabulary (0..%d)", (int)tokens[i], i, mpt_tokenizer_kind(tok),
                            tok->vocab - 1);
        size_t tl = 1;
        if (tok->kind == KIND_GPT2_) mpt_bpe_bytes(tok->bpe, tokens[i], &tl);
        if (!mpt_size_add(total, tl, &total))
            return mpt_fail(err, MPT_ERR_INPUT, "decoded text too large");
    }
    size_t cap;
    if (!mpt_size_add(total, 1, &cap))
        return mpt_fail(err, MPT_ERR_INPUT, "decoded text too large");
    char *buf = malloc(cap);
    if (!buf) return mpt_fail(err, MPT_ERR_RUN, "out of memory decoding %zu tokens", n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok->kind == KIND_BYTE_) {
            buf[at++] = (char)(unsigned char)tokens[i];
        } else {
            size_t tl;
            const char *b = mpt_bpe_bytes(tok->bpe, tokens[i], &tl);
            memcpy(buf + at, b, tl);
            at += tl;
        }
    }
    buf[at] = '\0';
    *text = buf;
    *len = at;
    return MPT_OK;
}
