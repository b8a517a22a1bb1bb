/* args.c — option parsing (see args.h). Part of cli/: may print usage. */
#include "cli/args.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/memplan.h"

static mpt_status set_(const mpt_arg *a, const char *v, const char *command, mpt_error *err) {
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case MPT_ARG_INT: {
        long x = strtol(v, &end, 10);
        if (*v && !*end && !errno && x >= INT_MIN && x <= INT_MAX) {
            *(int *)a->target = (int)x;
            return MPT_OK;
        }
        break;
    }
    case MPT_ARG_LONG: {
        long x = strtol(v, &end, 10);
        if (*v && !*end && !errno) {
            *(long *)a->target = x;
            return MPT_OK;
        }
        break;
    }
    case MPT_ARG_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (*v && !*end && !errno && v[0] != '-') {
            *(uint64_t *)a->target = (uint64_t)x;
            return MPT_OK;
        }
        break;
    }
    case MPT_ARG_FLOAT: {
        float x = strtof(v, &end);
        if (*v && !*end && !errno) {
            *(float *)a->target = x;
            return MPT_OK;
        }
        break;
    }
    case MPT_ARG_STRING:
        *(const char **)a->target = v;
        return MPT_OK;
    case MPT_ARG_BYTES:
        if (mpt_parse_bytes(v, (size_t *)a->target)) return MPT_OK;
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--%s '%s' is not a size: write it like 512M or 2G (see mptrain %s "
                        "--help)",
                        a->name, v, command);
    case MPT_ARG_FLAG:
        break;
    }
    return mpt_fail(err, MPT_ERR_INPUT, "--%s '%s' is not a valid %s (see mptrain %s --help)",
                    a->name, v, a->kind == MPT_ARG_FLOAT ? "number" : "whole number", command);
}

mpt_status mpt_args_parse(const mpt_arg *args, size_t n, int argc, char **argv, int first,
                          int *help, const char *command, mpt_error *err) {
    *help = 0;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            *help = 1;
            continue;
        }
        if (strncmp(s, "--", 2) != 0)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "unexpected argument '%s': options start with -- (see mptrain %s "
                            "--help)",
                            s, command);
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const mpt_arg *a = NULL;
        for (size_t k = 0; k < n && !a; k++)
            if (strlen(args[k].name) == len && strncmp(args[k].name, name, len) == 0) a = &args[k];
        if (!a)
            return mpt_fail(err, MPT_ERR_INPUT, "unknown option '%.*s' for %s: see mptrain %s --help",
                            (int)(len + 2), s, command, command);
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
        mpt_status st = set_(a, v, command, err);
        if (st) return st;
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
