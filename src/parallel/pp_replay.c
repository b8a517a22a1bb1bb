/* pp_replay.c — a measured pipeline step replayed on each action's own duration (see
 * pp_replay.h). */
#include "parallel/pp_replay.h"

#include <stdlib.h>
#include <string.h>

void mpt_pp_replay_tables(int p, int m, int v, const double *recs, double *dur, double *comm) {
    size_t mw = (size_t)m * (size_t)v, nm = 2 * mw, len = mpt_pp_record_size((int)mw);
    for (int s = 0; s < p; s++) {
        const double *x = recs + (size_t)s * len + MPT_PP_REC_HEAD;
        const double *wait = x + 2 * nm, *got = wait + nm, *post = got + nm, *d = post + nm;
        memcpy(dur + (size_t)s * 3 * mw, d, 3 * mw * sizeof *dur);
        for (size_t i = 0; i < nm; i++) {
            double sent = 0.0; /* posted by the stage whose record names s as this tag's peer */
            for (int q = 0; q < p; q++) {
                const double *y = recs + (size_t)q * len + MPT_PP_REC_HEAD;
                if (y[i] > 0 && (int)y[nm + i] == s) sent = y[i];
            }
            double c = 0.0;
            if (got[i] > 0 && sent > 0) {
                double from = sent > wait[i] ? sent : wait[i], dt = got[i] - from;
                c = (dt > 0 ? dt : 0.0) + post[i];
            }
            comm[(size_t)s * nm + i] = c;
        }
    }
}

mpt_status mpt_pp_replay_bubble(mpt_pp_kind kind, int p, int m, int v, const double *recs,
                                double *bubble, mpt_error *err) {
    size_t mw = (size_t)m * (size_t)v, P = (size_t)p;
    double *dur = malloc(P * 5 * mw * sizeof *dur);
    if (!dur) return mpt_fail(err, MPT_ERR_RUN, "out of memory replaying the pipeline step");
    mpt_pp_replay_tables(p, m, v, recs, dur, dur + P * 3 * mw);
    mpt_pp_durations d = {dur, dur + P * 3 * mw};
    mpt_pp_timeline t;
    mpt_status st = mpt_pp_simulate_exact(kind, p, m, v, &d, &t, err);
    if (!st) *bubble = t.bubble;
    mpt_pp_timeline_free(&t);
    free(dur);
    return st;
}
