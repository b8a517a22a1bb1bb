/* args.h — declarative option parsing for the mptrain commands.
 * A command lists its options in a table; mpt_args_parse fills the targets, accepting
 * "--name value" and "--name=value". Unknown options, missing or malformed values are
 * MPT_ERR_INPUT with a message that names the option and points at --help. */
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
} mpt_arg;

/* Parses argv[first..argc). Returns MPT_OK, or MPT_ERR_INPUT. *help set when --help/-h seen. */
mpt_status mpt_args_parse(const mpt_arg *args, size_t n, int argc, char **argv, int first,
                          int *help, const char *command, mpt_error *err);
/* Writes the usage block of a table to stdout (cli only). */
void mpt_args_usage(const mpt_arg *args, size_t n);

#endif
