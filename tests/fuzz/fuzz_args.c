/* fuzz_args.c — libFuzzer target: the command-line parser (cli/args.c) with two real tables.
 *
 * The input is a command line: arguments separated by NUL bytes (at most 64). The first byte
 * picks the table:
 *   even  the options `mptrain plan` and `simulate` share (cli/plan_opts.c), then, when the
 *         line parses, the job and layout they build and (for at most 64 ranks) the memory plan
 *   odd   a table with every numeric kind (int, long, u64, float, bytes) at the ranges
 *         `mptrain train` gives them, plus a string and a flag
 * Properties: a refusal is MPT_ERR_INPUT with a message; an accepted line leaves every numeric
 * target inside its option's range (the parser's promise that t_bad_input.sh relies on). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/plan_opts.h"
#include "fuzz_util.h"
#include "plan/plan.h"

#define MAX_ARGS_ 64

/* Every numeric target of table a[0..n) within its range. */
static void check_ranges_(const mpt_arg *a, size_t n) {
    for (size_t k = 0; k < n; k++) {
        double x;
        switch (a[k].kind) {
        case MPT_ARG_INT: x = *(int *)a[k].target; break;
        case MPT_ARG_LONG: x = (double)*(long *)a[k].target; break;
        case MPT_ARG_U64: x = (double)*(uint64_t *)a[k].target; break;
        case MPT_ARG_FLOAT: x = *(float *)a[k].target; break;
        case MPT_ARG_BYTES: x = (double)*(size_t *)a[k].target; break;
        default: continue;
        }
        if (a[k].seen && !*a[k].seen) continue;
        FUZZ_CHECK(isfinite(x) && (a[k].above_min ? x > a[k].min : x >= a[k].min) &&
                   x <= a[k].max, "--%s accepted as %g, outside [%g, %g]", a[k].name, x,
                   a[k].min, a[k].max);
    }
}

static void plan_table_(int argc, char **argv) {
    plan_cli c;
    plan_cli_defaults(&c);
    mpt_arg args[48];
    size_t n = plan_cli_table(&c, args);
    mpt_error err = {0};
    int help = 0;
    mpt_status st = mpt_args_parse(args, n, argc, argv, 2, &help, "plan", &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "status %d, '%s'", st, err.msg);
        return;
    }
    /* defaults are in range too, except the zeros that mean "not given" */
    for (size_t k = 0; k < n; k++)
        if (args[k].kind == MPT_ARG_INT && *(int *)args[k].target == 0 && args[k].min > 0)
            args[k].kind = MPT_ARG_STRING;   /* skip an option left at "not given" */
    if (c.mem_limit == 0) c.mem_limit = 1;   /* likewise: 0 is "the cluster's" */
    check_ranges_(args, n);
    if (c.mem_limit == 1) c.mem_limit = 0;
    mpt_plan_job job;
    mpt_plan_layout lay;
    st = plan_cli_job(&c, &job, &lay, &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "job: status %d, '%s'", st, err.msg);
        return;
    }
    if (mpt_plan_layout_world(&lay) > 64) return;
    mpt_plan_memory mem;
    st = mpt_plan_memory_eval(&job, &lay, &mem, &err);
    FUZZ_CHECK(st == MPT_OK || st == MPT_ERR_INPUT, "memory: status %d, '%s'", st, err.msg);
}

static void kinds_table_(int argc, char **argv) {
    int i = 1, flag = 0, seen[5] = {0};
    long l = 0;
    uint64_t u = 0;
    float f = 1;
    size_t b = 1;
    const char *s = "";
    const mpt_arg args[] = {
        {"layers", MPT_ARG_INT, &i, "int", &seen[0], MPT_RANGE(1, 1024)},
        {"steps", MPT_ARG_LONG, &l, "long", &seen[1], MPT_RANGE(0, 1e15)},
        {"seed", MPT_ARG_U64, &u, "u64", &seen[2], MPT_RANGE(0, UINT64_MAX)},
        {"lr", MPT_ARG_FLOAT, &f, "float", &seen[3], MPT_ABOVE(0, 10)},
        {"mem-limit", MPT_ARG_BYTES, &b, "bytes", &seen[4], MPT_ABOVE(0, 0x1p50)},
        {"data", MPT_ARG_STRING, &s, "string", NULL, MPT_NO_RANGE},
        {"quiet", MPT_ARG_FLAG, &flag, "flag", NULL, MPT_NO_RANGE},
    };
    size_t n = sizeof args / sizeof *args;
    mpt_error err = {0};
    int help = 0;
    mpt_status st = mpt_args_parse(args, n, argc, argv, 2, &help, "train", &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "status %d, '%s'", st, err.msg);
        return;
    }
    check_ranges_(args, n);
    FUZZ_CHECK(s != NULL, "a string option set to NULL");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* a private NUL-terminated copy: argv strings point into it */
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *argv[MAX_ARGS_ + 3] = {"mptrain", "plan"};
    int argc = 2;
    for (size_t p = 0; p < size - 1 && argc < MAX_ARGS_ + 2;) {
        argv[argc++] = buf + p;
        p += strlen(buf + p) + 1;
    }
    argv[argc] = NULL;
    if (data[0] % 2 == 0) plan_table_(argc, argv);
    else kinds_table_(argc, argv);
    free(buf);
    return 0;
}
