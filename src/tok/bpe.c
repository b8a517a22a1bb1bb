/* bpe.c — GPT-2 byte-pair merging: loads encoder.json and vocab.bpe, holds GPT-2's byte <->
 * unicode alphabet (bytes_to_unicode), and merges one word by rank (see bpe.h).
 *
 * Tokens are kept as raw bytes (the unicode alphabet only exists inside the two files), and a
 * merge is keyed by the ids of its two halves, so merging works on int ids, never on strings. */
#define HASH_NONFATAL_OOM 1 /* uthash: a failed insert leaves item->hh.tbl NULL, never exits */
#include "tok/bpe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "core/file.h"

#define ALPHABET_ 324  /* bytes_to_unicode uses code points U+0000..U+0143 */
#define SIMPLE_MAX_ 64 /* words of up to this many bytes take the simple algorithm */

typedef struct vocab_item_ {
    const char *bytes; /* borrowed from mpt_bpe.blob */
    uint32_t len;
    int32_t id;
    UT_hash_handle hh;
} vocab_item_;

typedef struct merge_item_ {
    uint64_t key; /* left id << 32 | right id */
    int32_t rank; /* line number in vocab.bpe, from 0: lower merges first */
    int32_t id;   /* the merged token */
    UT_hash_handle hh;
} merge_item_;

struct mpt_bpe {
    int size;
    char *blob;                /* owned: the bytes of every token */
    size_t *off;               /* owned: [size] start of id's bytes in blob */
    uint32_t *len;             /* owned: [size] byte length of id */
    vocab_item_ *vocab_items;  /* owned: [size] storage for the vocab hash */
    vocab_item_ *vocab;        /* hash head over vocab_items (bytes -> id) */
    merge_item_ *merge_items;  /* owned: storage for the merge hash */
    merge_item_ *merges;       /* hash head over merge_items ((left, right) -> rank, id) */
    int32_t byte_id[256];      /* id of each single byte */
    int ordered;
};

/* ---- GPT-2's byte <-> unicode alphabet ---------------------------------------------------- */

/* Bytes that print (33..126, 161..172, 174..255) stand for themselves; the other 68 bytes, in
 * increasing order, take U+0100, U+0101, ... so that every byte is a visible character. */
static int byte_prints_(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

static void byte_of_cp_table_(int16_t byte_of_cp[ALPHABET_]) {
    for (int cp = 0; cp < ALPHABET_; cp++) byte_of_cp[cp] = -1;
    int extra = 256;
    for (int b = 0; b < 256; b++) byte_of_cp[byte_prints_(b) ? b : extra++] = (int16_t)b;
}

/* Converts s[0..slen) (UTF-8 over the alphabet) into raw bytes in out (room for slen bytes).
 * Returns the byte count, or -1 when a character is outside the alphabet. */
static long unicode_to_bytes_(const int16_t *byte_of_cp, const char *s, size_t slen, char *out) {
    size_t i = 0, n = 0;
    while (i < slen) {
        unsigned c = (unsigned char)s[i];
        unsigned cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < slen && ((unsigned char)s[i + 1] & 0xC0) == 0x80) {
            cp = ((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1; /* the alphabet ends at U+0143: only 1- and 2-byte sequences */
        }
        if (cp >= ALPHABET_ || byte_of_cp[cp] < 0) return -1;
        out[n++] = (char)byte_of_cp[cp];
    }
    return (long)n;
}

/* ---- loading -------------------------------------------------------------------------- */

/* Reads a whole file into a malloc'd, NUL-terminated *data (caller frees). */
static mpt_status read_all_(const char *path, char **data, size_t *len, mpt_error *err) {
    mpt_status st = mpt_file_read(path, (size_t)1 << 30, data, len, err);
    if (st == MPT_ERR_INPUT)
        mpt_fail(err, st, "%s: cannot read it; run `make setup` (scripts/setup.sh) to fetch the "
                          "GPT-2 vocabulary", path);
    return st;
}

static mpt_status load_vocab_(mpt_bpe *b, const char *path, const char *text, size_t tlen,
                              const int16_t *byte_of_cp, mpt_error *err) {
    mpt_status st = MPT_OK;
    unsigned char *seen = NULL;
    cJSON *root = cJSON_ParseWithLength(text, tlen);
    if (!root || !cJSON_IsObject(root)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a JSON object of token -> id; re-fetch it "
                      "with `make setup`", path);
        goto cleanup;
    }
    /* Pass 1: count, largest id, and an upper bound on the bytes of all tokens. */
    size_t count = 0, blob_cap = 1;
    double max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v < 0 || v > 65535 || v != (double)(int)v || !it->string || !it->string[0]) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: entry \"%s\" is not a non-empty token with an "
                          "id in 0..65535; re-fetch the file with `make setup`", path,
                          it->string ? it->string : "?");
            goto cleanup;
        }
        if (v > max_id) max_id = v;
        count++;
        blob_cap += strlen(it->string);
    }
    b->size = (int)max_id + 1;
    if (count == 0 || count != (size_t)b->size) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: has %zu tokens but ids up to %d; ids must be "
                      "0..N-1, each once", path, count, b->size - 1);
        goto cleanup;
    }
    size_t sz = (size_t)b->size;
    b->blob = malloc(blob_cap);
    b->off = malloc(sz * sizeof *b->off);
    b->len = malloc(sz * sizeof *b->len);
    b->vocab_items = calloc(sz, sizeof *b->vocab_items);
    seen = calloc(sz, 1);
    if (!b->blob || !b->off || !b->len || !b->vocab_items || !seen) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", path);
        goto cleanup;
    }
    /* Pass 2: raw bytes of each token, stored by id. */
    size_t at = 0;
    cJSON_ArrayForEach(it, root) {
        int id = (int)it->valuedouble;
        long n = unicode_to_bytes_(byte_of_cp, it->string, strlen(it->string), b->blob + at);
        if (seen[id] || n < 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: token \"%s\" %s; re-fetch the file with "
                          "`make setup`", path, it->string,
                          seen[id] ? "repeats an id"
                                   : "has a character outside GPT-2's byte alphabet");
            goto cleanup;
        }
        seen[id] = 1;
        b->off[id] = at;
        b->len[id] = (uint32_t)n;
        at += (size_t)n;
    }
    for (int id = 0; id < b->size; id++) {
        vocab_item_ *v = &b->vocab_items[id], *dup = NULL;
        v->bytes = b->blob + b->off[id];
        v->len = b->len[id];
        v->id = id;
        HASH_FIND(hh, b->vocab, v->bytes, v->len, dup);
        if (dup) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: ids %d and %d are the same bytes", path,
                          dup->id, id);
            goto cleanup;
        }
        HASH_ADD_KEYPTR(hh, b->vocab, v->bytes, v->len, v);
        if (!v->hh.tbl) {
            st = mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", path);
            goto cleanup;
        }
    }
cleanup:
    free(seen);
    cJSON_Delete(root);
    return st;
}

static merge_item_ *find_merge_(const mpt_bpe *b, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    merge_item_ *m = NULL;
    HASH_FIND(hh, b->merges, &key, sizeof key, m);
    return m;
}

/* Parses vocab.bpe: an optional "#version" line, then one "left right" merge per line. As in
 * GPT-2, a merge's rank is its line index, and a repeated pair keeps its last rank. */
static mpt_status load_merges_(mpt_bpe *b, const char *path, char *text, size_t tlen,
                               const int16_t *byte_of_cp, mpt_error *err) {
    size_t lines = 1;
    for (size_t i = 0; i < tlen; i++) lines += text[i] == '\n';
    b->merge_items = calloc(lines, sizeof *b->merge_items);
    char *scratch = malloc(tlen + 1); /* the bytes of one line's halves, back to back */
    if (!b->merge_items || !scratch) {
        free(scratch);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", path);
    }
    mpt_status st = MPT_OK;
    size_t used = 0, lineno = 0;
    int32_t rank = 0;
    char *line = text, *end = text + tlen;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(end - line);
        char *next = nl ? nl + 1 : end;
        lineno++;
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll == 0 || (lineno == 1 && line[0] == '#')) {
            line = next;
            continue;
        }
        char *sp = memchr(line, ' ', ll);
        long la = -1, lb = -1;
        if (sp && sp > line && !memchr(sp + 1, ' ', ll - (size_t)(sp - line) - 1)) {
            la = unicode_to_bytes_(byte_of_cp, line, (size_t)(sp - line), scratch);
            size_t rest = ll - (size_t)(sp - line) - 1;
            if (la > 0 && rest > 0) lb = unicode_to_bytes_(byte_of_cp, sp + 1, rest, scratch + la);
        }
        if (la <= 0 || lb <= 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s line %zu: \"%.*s\" is not \"left right\" in "
                          "GPT-2's byte alphabet; re-fetch the file with `make setup`", path,
                          lineno, (int)(ll > 80 ? 80 : ll), line);
            break;
        }
        int left = mpt_bpe_lookup(b, scratch, (size_t)la);
        int right = mpt_bpe_lookup(b, scratch + la, (size_t)lb);
        int merged = mpt_bpe_lookup(b, scratch, (size_t)(la + lb));
        if (left < 0 || right < 0 || merged < 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s line %zu: merge \"%.*s\" uses or makes a token "
                          "missing from encoder.json: the two files do not belong together; "
                          "re-fetch them with `make setup`", path, lineno,
                          (int)(ll > 80 ? 80 : ll), line);
            break;
        }
        merge_item_ *m = find_merge_(b, left, right);
        if (m) {
            m->rank = rank;
        } else {
            m = &b->merge_items[used++];
            m->key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
            m->rank = rank;
            m->id = merged;
            HASH_ADD(hh, b->merges, key, sizeof m->key, m);
            if (!m->hh.tbl) {
                st = mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", path);
                break;
            }
        }
        if (rank == INT32_MAX) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: too many merges", path);
            break;
        }
        rank++;
        line = next;
    }
    free(scratch);
    if (st != MPT_OK) return st;
    /* ordered: each merge's halves are made only by lower-ranked merges (or are bytes). */
    int32_t *made = malloc((size_t)b->size * sizeof *made);
    if (!made) return mpt_fail(err, MPT_ERR_RUN, "out of memory loading %s", path);
    for (int i = 0; i < b->size; i++) made[i] = -1;
    for (size_t i = 0; i < used; i++)
        if (b->merge_items[i].rank > made[b->merge_items[i].id])
            made[b->merge_items[i].id] = b->merge_items[i].rank;
    b->ordered = 1;
    for (size_t i = 0; i < used; i++) {
        const merge_item_ *m = &b->merge_items[i];
        if (made[m->key >> 32] >= m->rank || made[m->key & 0xFFFFFFFFu] >= m->rank) b->ordered = 0;
    }
    free(made);
    return MPT_OK;
}

mpt_status mpt_bpe_load(mpt_bpe **out, const char *dir, mpt_error *err) {
    *out = NULL;
    int16_t byte_of_cp[ALPHABET_];
    byte_of_cp_table_(byte_of_cp);
    char path[4096];
    char *text = NULL;
    size_t tlen = 0;
    mpt_status st;
    mpt_bpe *b = calloc(1, sizeof *b);
    if (!b) return mpt_fail(err, MPT_ERR_RUN, "out of memory loading the GPT-2 vocabulary");

    if ((size_t)snprintf(path, sizeof path, "%s/encoder.json", dir) >= sizeof path) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: path too long", dir);
        goto fail;
    }
    if ((st = read_all_(path, &text, &tlen, err)) != MPT_OK) goto fail;
    st = load_vocab_(b, path, text, tlen, byte_of_cp, err);
    free(text);
    text = NULL;
    if (st != MPT_OK) goto fail;

    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    if ((st = read_all_(path, &text, &tlen, err)) != MPT_OK) goto fail;
    st = load_merges_(b, path, text, tlen, byte_of_cp, err);
    free(text);
    if (st != MPT_OK) goto fail;

    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        b->byte_id[c] = mpt_bpe_lookup(b, &ch, 1);
        if (b->byte_id[c] < 0) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s/encoder.json: no token for byte %d, so some "
                          "text could not be encoded; re-fetch it with `make setup`", dir, c);
            goto fail;
        }
    }
    *out = b;
    return MPT_OK;
fail:
    mpt_bpe_free(b);
    return st;
}

void mpt_bpe_free(mpt_bpe *b) {
    if (!b) return;
    HASH_CLEAR(hh, b->vocab);
    HASH_CLEAR(hh, b->merges);
    free(b->vocab_items);
    free(b->merge_items);
    free(b->blob);
    free(b->off);
    free(b->len);
    free(b);
}

int mpt_bpe_size(const mpt_bpe *b) { return b->size; }
int mpt_bpe_ordered(const mpt_bpe *b) { return b->ordered; }

int mpt_bpe_lookup(const mpt_bpe *b, const char *s, size_t len) {
    vocab_item_ *v = NULL;
    if (len == 0 || len > UINT32_MAX) return -1;
    HASH_FIND(hh, b->vocab, s, len, v);
    return v ? v->id : -1;
}

const char *mpt_bpe_bytes(const mpt_bpe *b, int id, size_t *len) {
    if (id < 0 || id >= b->size) return NULL;
    *len = b->len[id];
    return b->blob + b->off[id];
}

/* ---- merging -------------------------------------------------------------------------- */

size_t mpt_bpe_merge_simple(const mpt_bpe *b, const uint8_t *w, size_t len, int32_t *out) {
    size_t n = len;
    for (size_t i = 0; i < n; i++) out[i] = b->byte_id[w[i]];
    while (n > 1) {
        const merge_item_ *best = NULL;
        for (size_t i = 0; i + 1 < n; i++) {
            const merge_item_ *m = find_merge_(b, out[i], out[i + 1]);
            if (m && (!best || m->rank < best->rank)) best = m;
        }
        if (!best) break;
        int32_t left = (int32_t)(best->key >> 32), right = (int32_t)(best->key & 0xFFFFFFFFu);
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && out[i] == left && out[i + 1] == right) {
                out[j++] = best->id;
                i += 2;
            } else {
                out[j++] = out[i++];
            }
        }
        n = j;
    }
    return n;
}

/* Binary min-heap of (rank << 32 | position): lowest rank first, leftmost first among equals. */
static void heap_push_(uint64_t *h, size_t *hn, uint64_t v) {
    size_t i = (*hn)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop_(uint64_t *h, size_t *hn) {
    uint64_t top = h[0], v = h[--*hn];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = v;
    return top;
}

/* Queues the pair starting at p if it is a merge. */
static void push_pair_(const mpt_bpe *b, const int32_t *id, const int32_t *nxt, int32_t p,
                       uint64_t *h, size_t *hn) {
    const merge_item_ *m = find_merge_(b, id[p], id[nxt[p]]);
    if (m) heap_push_(h, hn, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)p);
}

mpt_status mpt_bpe_merge_heap(const mpt_bpe *b, const uint8_t *w, size_t len, int32_t *out,
                              size_t *n, mpt_error *err) {
    *n = 0;
    if (len == 0) return MPT_OK;
    if (len > INT32_MAX / 4)
        return mpt_fail(err, MPT_ERR_INPUT, "one word of %zu bytes is too long to encode "
                        "(limit %d); split the text", len, INT32_MAX / 4);
    size_t ints, cap = 3 * len, heap_bytes;
    if (!mpt_size_mul(len, 3 * sizeof(int32_t), &ints) ||
        !mpt_size_mul(cap, sizeof(uint64_t), &heap_bytes))
        return mpt_fail(err, MPT_ERR_RUN, "word of %zu bytes: size overflow", len);
    int32_t *id = malloc(ints);           /* id[p]: symbol at position p, -1 once merged away */
    uint64_t *heap = malloc(heap_bytes);  /* at most len-1 initial pairs + 2 per merge */
    if (!id || !heap) {
        free(id);
        free(heap);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory merging a word of %zu bytes", len);
    }
    int32_t *nxt = id + len, *prv = nxt + len; /* links between live symbols, -1 at the ends */
    int32_t last = (int32_t)len - 1;
    for (int32_t p = 0; p <= last; p++) {
        id[p] = b->byte_id[w[p]];
        nxt[p] = p < last ? p + 1 : -1;
        prv[p] = p - 1;
    }
    size_t hn = 0;
    for (int32_t p = 0; p < last; p++) push_pair_(b, id, nxt, p, heap, &hn);
    while (hn) {
        uint64_t top = heap_pop_(heap, &hn);
        int32_t rank = (int32_t)(top >> 32), p = (int32_t)(top & 0xFFFFFFFFu);
        if (id[p] < 0 || nxt[p] < 0) continue;
        int32_t q = nxt[p];
        const merge_item_ *m = find_merge_(b, id[p], id[q]);
        if (!m || m->rank != rank) continue; /* stale: the pair at p changed since queued */
        id[p] = m->id;
        id[q] = -1;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = p;
        if (prv[p] >= 0) push_pair_(b, id, nxt, prv[p], heap, &hn);
        if (nxt[p] >= 0) push_pair_(b, id, nxt, p, heap, &hn);
    }
    size_t k = 0;
    for (int32_t p = 0; p >= 0; p = nxt[p]) out[k++] = id[p];
    *n = k;
    free(id);
    free(heap);
    return MPT_OK;
}

mpt_status mpt_bpe_merge(const mpt_bpe *b, const uint8_t *w, size_t len, int32_t *out,
                         size_t *n, mpt_error *err) {
    if (len <= SIMPLE_MAX_ || !b->ordered) {
        *n = mpt_bpe_merge_simple(b, w, len, out);
        return MPT_OK;
    }
    return mpt_bpe_merge_heap(b, w, len, out, n, err);
}
