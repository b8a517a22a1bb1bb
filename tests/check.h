/* check.h — a minimal assertion harness shared by the C unit tests.
 * CHECK(cond, fmt, ...) records one pass or failure (printing the message on failure);
 * check_close() compares arrays and prints the largest relative difference;
 * check_finish() prints "N passed, N failed" and returns the process exit code: 1 when a check
 * failed or when none ran (a test that checked nothing has shown nothing);
 * check_small() says whether the test runs in a checking build (ASan + UBSan, valgrind): there
 * CMakeLists.txt sets MPT_TEST_SMALL=1 and a slow test runs the same code paths on smaller
 * numbers (fewer finite-difference samples, smaller searches), with the same tolerances; each
 * such test says what it shrinks. */
#ifndef MPT_TEST_CHECK_H
#define MPT_TEST_CHECK_H

#include <stddef.h>
#include <stdio.h>

extern int check_passed, check_failed;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            check_passed++;                                                           \
        } else {                                                                      \
            check_failed++;                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                      \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

/* Largest |a-b| / max(|b|, floor) over n elements; prints "name: max rel diff X" and checks
 * it is <= tol (n = 0 fails: nothing was compared). Returns the difference. */
double check_close(const char *name, const float *a, const float *b, size_t n, double tol,
                   double floor);
double check_close_d(const char *name, const double *a, const double *b, size_t n, double tol,
                     double floor);
int check_finish(void);
int check_small(void);

#endif
