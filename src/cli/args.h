/* args.h — declarative option parsing for the mptrain commands.
 * A command lists its options in a table; mpt_args_parse fills the targets, accepting
 * "--name value" and "--name=value". Unknown options, missing or malformed values are
 * MPT_ERR_INPUT with a message that names the option and points at --help.
 *
 * Every numeric option carries its range (MPT_RANGE / MPT_ABOVE below). Whole numbers are read
 * into 64 bits (strtoll / strtoull) and checked against the range before they are converted to
 * the target's type; numbers (MPT_ARG_FLOAT) must be finite (no inf, no nan) and in range both
 * as read and as the float stored; sizes (MPT_ARG_BYTES) likewise. A numeric option whose table
 * entry has no range (min >= max) makes mpt_args_parse fail with MPT_ERR_RUN, whatever the
 * command line, so a table cannot leave one unchecked. Bounds must be exact in a double
 * (|bound| <= 2^53, or UINT64_MAX for MPT_ARG_U64). */
#ifndef MPT_ARGS_H
#define MPT_ARGS_H

#include <stddef.h>

#include "core/status.h"

typedef enum mpt_arg_kind {
    MPT_ARG_INT,    /* int* */
    MPT_ARG_LONG,   /* long* */
    MPT_ARG_U64,    /* uint64_t* */
    MPT_ARG_FLOAT,  /* float* */
    MPT_ARG_STRING, /* const char** (points into argv) */
    MPT_ARG_FLAG,   /* int*, set to 1, takes no value */
    MPT_ARG_BYTES,  /* size_t*, "512M" style */
} mpt_arg_kind;

typedef struct mpt_arg {
    const char *name;  /* without the leading "--" */
    mpt_arg_kind kind;
    void *target;
    const char *help;  /* one line; "" hides the option from --help */
    int *seen;         /* optional: set to 1 when given */
    double min, max;   /* numeric kinds: the accepted values, min <= x <= max ... */
    int above_min;     /* ... or min < x <= max when set */
} mpt_arg;

/* The range fields of a numeric option: min <= x <= max, or min < x <= max. */
#define MPT_RANGE(lo, hi) (double)(lo), (double)(hi), 0
#define MPT_ABOVE(lo, hi) (double)(lo), (double)(hi), 1
/* The range fields of a string or flag option (which has none). */
#define MPT_NO_RANGE 0.0, 0.0, 0

/* Parses argv[first..argc). Returns MPT_OK, or MPT_ERR_INPUT. *help set when --help/-h seen. */
mpt_status mpt_args_parse(const mpt_arg *args, size_t n, int argc, char **argv, int first,
                          int *help, const char *command, mpt_error *err);
/* Writes the usage block of a table to stdout (cli only). */
void mpt_args_usage(const mpt_arg *args, size_t n);

#endif
