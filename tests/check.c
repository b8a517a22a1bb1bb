/* check.c — see check.h. */
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int check_passed, check_failed;

double check_close_d(const char *name, const double *a, const double *b, size_t n, double tol,
                     double floor) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / fmax(fabs(b[i]), floor);
        if (!(d <= worst)) { worst = d; at = i; }   /* NaN counts as worst */
    }
    printf("  %-40s max rel diff %.3e (at %zu)\n", name, worst, at);
    CHECK(n > 0, "%s: no elements to compare", name);
    CHECK(worst <= tol, "%s: max rel diff %.3e > %.1e at %zu (got %.8g want %.8g)", name, worst,
          tol, at, n ? a[at] : 0.0, n ? b[at] : 0.0);
    return worst;
}

double check_close(const char *name, const float *a, const float *b, size_t n, double tol,
                   double floor) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(fabs((double)b[i]), floor);
        if (!(d <= worst)) { worst = d; at = i; }
    }
    printf("  %-40s max rel diff %.3e (at %zu)\n", name, worst, at);
    CHECK(n > 0, "%s: no elements to compare", name);
    CHECK(worst <= tol, "%s: max rel diff %.3e > %.1e at %zu (got %.8g want %.8g)", name, worst,
          tol, at, n ? (double)a[at] : 0.0, n ? (double)b[at] : 0.0);
    return worst;
}

int check_finish(void) {
    if (check_passed == 0) {
        check_failed++;
        fprintf(stderr, "FAIL no check ran\n");
    }
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

int check_small(void) {
    const char *s = getenv("MPT_TEST_SMALL");
    int small = s && *s && strcmp(s, "0") != 0;
    static int said;
    if (small && !said++) printf("MPT_TEST_SMALL: a checking build, smaller sizes (same paths)\n");
    return small;
}
