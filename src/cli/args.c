/* args.c — option parsing with checked ranges (see args.h). Part of cli/: may print usage. */
#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/memplan.h"

/* "from 1 to 1024", "above 0 and at most 10": the range of a, for messages. */
static void range_text_(const mpt_arg *a, char *buf, size_t n) {
    if (a->kind == MPT_ARG_BYTES) {
        char lo[32], hi[32];
        mpt_format_bytes((size_t)a->min, lo, sizeof lo);
        mpt_format_bytes((size_t)a->max, hi, sizeof hi);
        snprintf(buf, n, "%s %s and at most %s", a->above_min ? "above" : "at least", lo, hi);
    } else if (a->kind == MPT_ARG_U64 && a->max >= 0x1p64) {
        snprintf(buf, n, "from %.0f to %llu", a->min, (unsigned long long)UINT64_MAX);
    } else {
        const char *fmt = a->kind == MPT_ARG_FLOAT ? "%s %g %s %g" : "%s %.0f %s %.0f";
        snprintf(buf, n, fmt, a->above_min ? "above" : "from", a->min,
                 a->above_min ? "and at most" : "to", a->max);
    }
}

static int in_range_(const mpt_arg *a, double x) {
    return (a->above_min ? x > a->min : x >= a->min) && x <= a->max;
}

static mpt_status out_of_range_(const mpt_arg *a, const char *v, const char *command,
                                mpt_error *err) {
    char range[128];
    range_text_(a, range, sizeof range);
    return mpt_fail(err, MPT_ERR_INPUT, "--%s %s is out of range: use a %s %s (see mptrain %s "
                    "--help)", a->name, v,
                    a->kind == MPT_ARG_FLOAT ? "number" : a->kind == MPT_ARG_BYTES ? "size"
                                                                              : "whole number",
                    range, command);
}

static mpt_status set_(const mpt_arg *a, const char *v, const char *command, mpt_error *err) {
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case MPT_ARG_INT:
    case MPT_ARG_LONG: {
        long long x = strtoll(v, &end, 10); /* 64 bits whatever the target */
        if (!*v || *end) break;
        if (errno == ERANGE || !in_range_(a, (double)x)) return out_of_range_(a, v, command, err);
        if (a->kind == MPT_ARG_INT) *(int *)a->target = (int)x; /* in range: fits an int */
        else *(long *)a->target = (long)x;
        return MPT_OK;
    }
    case MPT_ARG_U64: {
        const char *p = v;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '-') return out_of_range_(a, v, command, err); /* strtoull would wrap it */
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end) break;
        if (errno == ERANGE || !in_range_(a, (double)x)) return out_of_range_(a, v, command, err);
        *(uint64_t *)a->target = (uint64_t)x;
        return MPT_OK;
    }
    case MPT_ARG_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end) break;
        if (!isfinite(x))
            return mpt_fail(err, MPT_ERR_INPUT, "--%s %s is not a finite number: give a number "
                            "(see mptrain %s --help)", a->name, v, command);
        float f = (float)x; /* the range holds for the value stored too (1e-50 is 0 as a float) */
        if (errno == ERANGE || !in_range_(a, x) || !in_range_(a, (double)f))
            return out_of_range_(a, v, command, err);
        *(float *)a->target = f;
        return MPT_OK;
    }
    case MPT_ARG_STRING:
        *(const char **)a->target = v;
        return MPT_OK;
    case MPT_ARG_BYTES: {
        size_t x = 0;
        if (!mpt_parse_bytes(v, &x))
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--%s '%s' is not a size: write it like 512M or 2G (see mptrain %s "
                            "--help)",
                            a->name, v, command);
        if (!in_range_(a, (double)x)) return out_of_range_(a, v, command, err);
        *(size_t *)a->target = x;
        return MPT_OK;
    }
    case MPT_ARG_FLAG:
        break;
    }
    return mpt_fail(err, MPT_ERR_INPUT, "--%s '%s' is not a valid %s (see mptrain %s --help)",
                    a->name, v, a->kind == MPT_ARG_FLOAT ? "number" : "whole number", command);
}

/* A numeric entry without a range, or with one its target type cannot hold, is a bug in the
 * command's table: refused before any argument is read. */
static mpt_status check_table_(const mpt_arg *args, size_t n, mpt_error *err) {
    for (size_t k = 0; k < n; k++) {
        const mpt_arg *a = &args[k];
        int numeric = a->kind == MPT_ARG_INT || a->kind == MPT_ARG_LONG ||
                      a->kind == MPT_ARG_U64 || a->kind == MPT_ARG_FLOAT ||
                      a->kind == MPT_ARG_BYTES;
        if (!numeric) continue;
        int fits = a->min < a->max;
        if (a->kind == MPT_ARG_INT) fits = fits && a->min >= INT_MIN && a->max <= INT_MAX;
        if (a->kind == MPT_ARG_LONG) fits = fits && a->min >= -0x1p53 && a->max <= 0x1p53;
        if (a->kind == MPT_ARG_U64 || a->kind == MPT_ARG_BYTES) fits = fits && a->min >= 0;
        if (a->kind == MPT_ARG_FLOAT) fits = fits && a->min >= -FLT_MAX && a->max <= FLT_MAX;
        if (!fits)
            return mpt_fail(err, MPT_ERR_RUN, "option table: --%s has no valid range [%g, %g]",
                            a->name, a->min, a->max);
    }
    return MPT_OK;
}

/* Edit distance between a[0..na) and b[0..nb) (insert, delete, substitute, swap of two
 * neighbours), capped at 9: enough to tell a typo from another word. */
static int edit_distance_(const char *a, size_t na, const char *b, size_t nb) {
    enum { W = 48 };
    if (na >= W || nb >= W) return 9;
    int d[W][W];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[na][nb] < 9 ? d[na][nb] : 9;
}

/* The documented option nearest to name[0..len) (a typo, or a prefix of a longer name), or
 * NULL when none is near: within 1 edit for short names, 2 from 5 characters, 3 from 10. */
static const char *nearest_(const mpt_arg *args, size_t n, const char *name, size_t len) {
    const char *best = NULL;
    int best_d = 99;
    for (size_t k = 0; k < n; k++) {
        if (!args[k].help[0]) continue; /* the hidden testing options are never suggested */
        size_t m = strlen(args[k].name);
        int d = edit_distance_(name, len, args[k].name, m);
        if (len >= 4 && m > len && strncmp(args[k].name, name, len) == 0) d = 1; /* a prefix */
        if (m >= 2 && len > m && strncmp(name, args[k].name, m) == 0 && name[m] == '-')
            d = 1; /* the name with a word added: --batch-size, --zero-stage */
        if (d < best_d) best_d = d, best = args[k].name;
    }
    int limit = len >= 10 ? 3 : len >= 5 ? 2 : 1;
    return best_d <= limit ? best : NULL;
}

mpt_status mpt_args_parse(const mpt_arg *args, size_t n, int argc, char **argv, int first,
                          int *help, const char *command, mpt_error *err) {
    *help = 0;
    mpt_status st = check_table_(args, n, err);
    if (st) return st;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            *help = 1;
            continue;
        }
        if (strncmp(s, "--", 2) != 0) {
            const char *near = s[0] == '-' ? nearest_(args, n, s + 1, strlen(s + 1)) : NULL;
            if (s[0] == '-' && !near && strcmp(s + 1, "help") == 0) near = "help";
            if (near)
                return mpt_fail(err, MPT_ERR_INPUT, "unexpected argument '%s': did you mean "
                                "--%s? (options start with --; see mptrain %s --help)",
                                s, near, command);
            return mpt_fail(err, MPT_ERR_INPUT,
                            "unexpected argument '%s': options start with -- (see mptrain %s "
                            "--help)",
                            s, command);
        }
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const mpt_arg *a = NULL;
        for (size_t k = 0; k < n && !a; k++)
            if (strlen(args[k].name) == len && strncmp(args[k].name, name, len) == 0) a = &args[k];
        if (!a) {
            const char *near = nearest_(args, n, name, len);
            if (near)
                return mpt_fail(err, MPT_ERR_INPUT, "unknown option '%.*s' for %s: did you mean "
                                "--%s? (see mptrain %s --help)",
                                (int)(len + 2), s, command, near, command);
            return mpt_fail(err, MPT_ERR_INPUT, "unknown option '%.*s' for %s: see mptrain %s --help",
                            (int)(len + 2), s, command, command);
        }
        if (a->seen) *a->seen = 1;
        if (a->kind == MPT_ARG_FLAG) {
            if (eq)
                return mpt_fail(err, MPT_ERR_INPUT, "--%s takes no value", a->name);
            *(int *)a->target = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return mpt_fail(err, MPT_ERR_INPUT, "--%s needs a value (see mptrain %s --help)",
                                a->name, command);
            v = argv[++i];
        }
        if ((st = set_(a, v, command, err))) return st;
    }
    return MPT_OK;
}

void mpt_args_usage(const mpt_arg *args, size_t n) {
    for (size_t k = 0; k < n; k++) {
        if (!args[k].help[0]) continue;
        const char *val = args[k].kind == MPT_ARG_FLAG ? "" : " X";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", args[k].name, val);
        printf("  %-24s %s\n", left, args[k].help);
    }
}
