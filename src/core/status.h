/* status.h — status codes and error messages for every mptrain function.
 *
 * The library never prints or exits: a failing function fills the caller's mpt_error with a
 * message that says what is wrong and what to do, and returns its status. Only cli/ prints.
 *   MPT_ERR_INPUT  bad command line, config, layout or input file (exit 2, before training)
 *   MPT_ERR_RUN    failure while running (exit 1; the last checkpoint stays intact)
 */
#ifndef MPT_STATUS_H
#define MPT_STATUS_H

#include <stddef.h>

typedef enum mpt_status {
    MPT_OK = 0,
    MPT_ERR_RUN = 1,
    MPT_ERR_INPUT = 2,
} mpt_status;

typedef struct mpt_error {
    mpt_status status;
    char msg[1024];
} mpt_error;

/* Formats a message into err (which may be NULL) and returns st. */
mpt_status mpt_fail(mpt_error *err, mpt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "context: " (e.g. a file name). Returns err->status. */
mpt_status mpt_error_prefix(mpt_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *mpt_status_name(mpt_status st);

/* Checked size arithmetic: return 0 and leave *out untouched on overflow. */
int mpt_size_mul(size_t a, size_t b, size_t *out);
int mpt_size_add(size_t a, size_t b, size_t *out);

#endif
