/* cmd_schedule.c — `mptrain schedule`: prints a pipeline schedule as a per-rank timeline
 * (CONTRACT §6) — the very action lists the executor runs (parallel/schedule.h), timed by the
 * simulator under a small cost model — with the simulated and theoretical bubble, optionally
 * the raw action lists with their communication (--actions) and an SVG drawing (--svg). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "parallel/schedule.h"

/* Largest --cost-*: time units are relative, so 1e6 leaves room for any ratio worth drawing. */
#define MAX_COST_ 1e6

/* Widest text timeline drawn, in cells; longer ones point at --svg. */
#define MAX_CELLS_ 4000

static const char intro_[] =
    "usage: mptrain schedule [--pp P] [--microbatches M] [--schedule KIND] [--virtual-stages V]\n"
    "                        [--cost-f X --cost-b X --cost-w X --cost-comm X] [--svg FILE]\n"
    "                        [--actions] [--steps S]\n"
    "\n"
    "Prints the pipeline schedule that `mptrain train` runs with the same options: one line per\n"
    "pipeline rank showing, in time order, the forward [F3], backward [B3] and weight-gradient\n"
    "[W3] actions of each micro-batch (F3.1: chunk 1 of the rank, interleaved) and idle time\n"
    "[  ], timed by a simulator in which every rank waits for its inputs, then the bubble (idle\n"
    "time / (ranks x makespan)) measured and as theory predicts it.\n"
    "\n"
    "KIND: naive | gpipe | 1f1b | interleaved | zb-h1 | zb-v (default 1f1b). Costs are in time units\n"
    "for one stage and one micro-batch: F forward, B input-gradient backward, W weight-gradient\n"
    "backward (a full backward, as every kind but zb-h1 runs it, costs B + W), comm the transfer\n"
    "time between stages. Interleaved chunks cost 1/V of a stage each.\n"
    "2bw with --steps S > 1 also simulates PipeDream-2BW without the flush: S steps' micro-batches\n"
    "as one 1F1B order (step n+1's forwards enter while step n's backwards run), with its\n"
    "bubble, the weight versions in use at once and how early each update is ready.\n"
    "\n";

/* Command-line values. */
typedef struct opts_ {
    int pp, m, v, v_seen, actions, steps;
    const char *kind, *svg;
    float cost[MPT_PP_COSTS];
} opts_;

/* ---- text timeline ------------------------------------------------------------------------- */

/* The time of one cell: the shortest compute action, split further (up to 8 ways) when that
 * puts every start and end on the grid. *exact says whether it did. */
static double cell_unit_(const mpt_pp_timeline *t, int *exact) {
    double shortest = 0;
    for (size_t i = 0; i < t->n; i++) {
        double d = t->ev[i].end - t->ev[i].start;
        if (d > 0 && (shortest == 0 || d < shortest)) shortest = d;
    }
    if (shortest == 0) shortest = 1;
    for (int div = 1; div <= 8; div++) {
        double u = shortest / div;
        int ok = 1;
        for (size_t i = 0; i < t->n && ok; i++) {
            double a = t->ev[i].start / u, b = t->ev[i].end / u;
            ok = fabs(a - nearbyint(a)) < 1e-6 && fabs(b - nearbyint(b)) < 1e-6;
        }
        if (ok) {
            *exact = 1;
            return u;
        }
    }
    *exact = 0;
    return shortest;
}

/* Prints "[label   ]" filling `width` characters. */
static void box_(const char *label, int width) {
    int len = (int)strlen(label);
    if (width < len + 2) width = len + 2;
    printf("[%s%*s]", label, width - len - 2, "");
}

/* The time axis: a label every few cells, where it fits. */
static void ruler_(int prefix, long cells, int cw, double unit) {
    size_t width = (size_t)cells * (size_t)cw + 16;
    char *line = malloc(width + 1);
    if (!line) return;
    memset(line, ' ', width);
    line[width] = '\0';
    long every = 1;
    while (every * cw < 8) every++;
    size_t free_from = 0;
    for (long c = 0; c <= cells; c += every) {
        char num[32];
        int n = snprintf(num, sizeof num, "%g", (double)c * unit);
        size_t at = (size_t)c * (size_t)cw;
        if (at < free_from || at + (size_t)n > width) continue;
        memcpy(line + at, num, (size_t)n);
        free_from = at + (size_t)n + 1;
    }
    size_t end = width;
    while (end > 0 && line[end - 1] == ' ') end--;
    line[end] = '\0';
    printf("%-*s%s\n", prefix, "time", line);
    free(line);
}

/* One line per rank: each compute action as a box as wide as its duration, idle cells [  ]. */
static void draw_text_(const mpt_pp_timeline *t) {
    int exact, cw = 4;
    double unit = cell_unit_(t, &exact);
    char label[48];
    for (size_t i = 0; i < t->n; i++) {
        int len = (int)strlen(mpt_pp_action_str(&t->ev[i].a, t->v, label, sizeof label));
        if (len + 2 > cw) cw = len + 2;
    }
    long cells = lround(t->makespan / unit);
    if (cells > MAX_CELLS_) {
        printf("(the timeline is %ld cells long, too long to draw here; use --svg FILE)\n", cells);
        return;
    }
    char idle[48];
    snprintf(idle, sizeof idle, "[%*s]", cw - 2, "");
    int digits = snprintf(label, sizeof label, "%d", t->p - 1);
    int prefix = 7 + digits; /* "rank N: " */
    printf("legend: one cell = %g time unit%s; [%s] forward of micro-batch 0%s; ", unit,
           unit == 1 ? "" : "s", t->v > 1 ? "F0.1" : "F0",
           t->v > 1 ? (t->kind == MPT_PP_ZB_V ? " on the rank's chunk 1 (stage 2p-1-rank)"
                                              : " on the rank's chunk 1 (stage 1*p + rank)")
                    : "");
    if (mpt_pp_split(t->kind))
        printf("[B0] its input-gradient backward; [W0] its weight-gradient backward; ");
    else
        printf("[B0...] its backward (input and weight gradients); ");
    printf("%s idle%s\n", idle, exact ? "" : "; times rounded to whole cells");
    ruler_(prefix, cells, cw, unit);
    for (int r = 0; r < t->p; r++) {
        printf("rank %*d: ", digits, r);
        long at = 0;
        for (size_t i = t->first[r]; i < t->first[r + 1]; i++) {
            const mpt_pp_event *e = &t->ev[i];
            long cs = lround(e->start / unit), ce = lround(e->end / unit);
            if (cs < at) cs = at;
            if (ce <= cs) ce = cs + 1;
            for (; at < cs; at++) fputs(idle, stdout);
            box_(mpt_pp_action_str(&e->a, t->v, label, sizeof label), (int)(ce - cs) * cw);
            at = ce;
        }
        for (; at < cells; at++) fputs(idle, stdout);
        putchar('\n');
    }
}

/* The raw action lists, communication included: what the executor runs. */
static mpt_status print_actions_(const opts_ *o, mpt_pp_kind kind, mpt_error *err) {
    printf("actions per rank (recv-act3<0: post the receive of micro-batch 3's activations from "
           "rank 0; send-grad3>0: post the send of its input gradient to rank 0):\n");
    for (int r = 0; r < o->pp; r++) {
        mpt_pp_action *a;
        size_t n;
        mpt_status st = mpt_pp_schedule(kind, o->pp, o->m, o->v, r, &a, &n, err);
        if (st) return st;
        printf("rank %d:", r);
        char name[48];
        for (size_t i = 0; i < n; i++) printf(" %s", mpt_pp_action_str(&a[i], o->v, name, sizeof name));
        putchar('\n');
        free(a);
    }
    return MPT_OK;
}

/* ---- SVG ----------------------------------------------------------------------------------- */

static const char *fill_(int op) {
    return op == MPT_PP_F ? "#4e79a7" : op == MPT_PP_B ? "#59a14f" : "#f28e2b";
}

/* A tick step of 1, 2 or 5 x 10^k time units at least min_units apart. */
static double tick_step_(double min_units) {
    static const double mult[3] = {1, 2, 5};
    double base = pow(10.0, floor(log10(min_units > 0 ? min_units : 1)));
    for (;; base *= 10)
        for (int i = 0; i < 3; i++)
            if (mult[i] * base >= min_units) return mult[i] * base;
}

/* Draws t into f (opened by the caller, closed here). */
static mpt_status write_svg_(const mpt_pp_timeline *t, FILE *f, const char *path,
                             mpt_error *err) {
    const double left = 70, top = 50, row = 28, gap = 6, plot_w = 1100;
    double scale = t->makespan > 0 ? plot_w / t->makespan : 1;
    double height = top + t->p * (row + gap) + 70;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"monospace\" font-size=\"11\">\n",
            left + plot_w + 60, height);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    char vs[48] = "";
    if (t->v > 1) snprintf(vs, sizeof vs, ", %d virtual stages per rank", t->v);
    fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"14\">%s schedule: %d ranks, %d "
               "micro-batches%s, makespan %g, bubble %.2f%%</text>\n",
            left, mpt_pp_kind_name(t->kind), t->p, t->m, vs, t->makespan, 100.0 * t->bubble);
    for (int r = 0; r < t->p; r++) {
        double y = top + r * (row + gap);
        fprintf(f, "<text x=\"8\" y=\"%.1f\">rank %d</text>\n", y + row * 0.65, r);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"#eeeeee\"/>\n",
                left, y, t->makespan * scale, row);
    }
    char label[48];
    for (size_t i = 0; i < t->n; i++) {
        const mpt_pp_event *e = &t->ev[i];
        double x = left + e->start * scale, w = (e->end - e->start) * scale;
        double y = top + e->rank * (row + gap);
        double shade = t->v > 1 ? 1.0 - 0.45 * e->a.chunk / (t->v - 1) : 1.0;
        mpt_pp_action_str(&e->a, t->v, label, sizeof label);
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.0f\" fill=\"%s\" "
                   "fill-opacity=\"%.2f\" stroke=\"white\" stroke-width=\"0.5\"><title>rank %d "
                   "%s: %g to %g</title></rect>\n",
                x, y, w, row, fill_(e->a.op), shade, e->rank, label, e->start, e->end);
        if (w >= 7.0 * (double)strlen(label) + 2)
            fprintf(f, "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"white\">%s"
                       "</text>\n", x + w / 2, y + row * 0.65, label);
    }
    double axis_y = top + t->p * (row + gap) + 4, step = tick_step_(60.0 / scale);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left,
            axis_y, left + t->makespan * scale, axis_y);
    for (double x = 0; x <= t->makespan * (1 + 1e-12); x += step)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                left + x * scale, axis_y, left + x * scale, axis_y + 5, left + x * scale,
                axis_y + 17, x);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">time</text>\n", left + t->makespan * scale + 6,
            axis_y + 4);
    double ly = axis_y + 36;
    const char *names[3] = {"F forward", "B backward", "W weight gradient"};
    int nlegend = mpt_pp_split(t->kind) ? 3 : 2;
    if (!mpt_pp_split(t->kind)) names[1] = "B backward (input + weight grads)";
    for (int k = 0; k < nlegend; k++)
        fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\">%s</text>\n",
                left + 260.0 * k, ly - 10, fill_(k), left + 260.0 * k + 18, ly, names[k]);
    if (t->v > 1)
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">lighter: later chunk of the rank (F3.1 = "
                   "micro-batch 3 on chunk 1)</text>\n", left + 520.0, ly);
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return mpt_fail(err, MPT_ERR_RUN, "--svg %s: write failed (%s)", path, strerror(errno));
    return MPT_OK;
}

/* ---- the command --------------------------------------------------------------------------- */

int mpt_cli_schedule(int argc, char **argv) {
    opts_ o = {.pp = 4, .m = 8, .v = 1, .steps = 1, .kind = "1f1b", .cost = {1, 1, 1, 0}};
    mpt_error err = {0};
    int help = 0;
    const mpt_arg args[] = {
        {"pp", MPT_ARG_INT, &o.pp, "pipeline stages = ranks (default 4)", NULL, MPT_RANGE(1, 65536)},
        {"microbatches", MPT_ARG_INT, &o.m, "micro-batches per step (default 8)", NULL, MPT_RANGE(1, 1048576)},
        {"schedule", MPT_ARG_STRING, &o.kind, "naive|gpipe|1f1b|interleaved|zb-h1|zb-v|2bw (default 1f1b)", NULL, MPT_NO_RANGE},
        {"virtual-stages", MPT_ARG_INT, &o.v, "model chunks per rank (interleaved: default 2; zb-v: 2)", &o.v_seen, MPT_RANGE(1, 1024)},
        {"cost-f", MPT_ARG_FLOAT, &o.cost[MPT_PP_COST_F], "forward time (default 1)", NULL, MPT_ABOVE(0, MAX_COST_)},
        {"cost-b", MPT_ARG_FLOAT, &o.cost[MPT_PP_COST_B], "input-gradient backward time (default 1)", NULL, MPT_ABOVE(0, MAX_COST_)},
        {"cost-w", MPT_ARG_FLOAT, &o.cost[MPT_PP_COST_W], "weight-gradient backward time (default 1)", NULL, MPT_RANGE(0, MAX_COST_)},
        {"cost-comm", MPT_ARG_FLOAT, &o.cost[MPT_PP_COST_COMM], "stage-to-stage transfer time (default 0)", NULL, MPT_RANGE(0, MAX_COST_)},
        {"svg", MPT_ARG_STRING, &o.svg, "also draw the timeline into this SVG file", NULL, MPT_NO_RANGE},
        {"actions", MPT_ARG_FLAG, &o.actions, "also print each rank's actions with communication", NULL, MPT_NO_RANGE},
        {"steps", MPT_ARG_INT, &o.steps, "2bw: also simulate this many steps without the flush (default 1: no)", NULL, MPT_RANGE(1, 4096)},
    };
    size_t nargs = sizeof args / sizeof *args;
    mpt_status st = mpt_args_parse(args, nargs, argc, argv, 2, &help, "schedule", &err);
    if (help) {
        fputs(intro_, stdout);
        mpt_args_usage(args, nargs);
        printf("\nexample:\n  mptrain schedule --pp 4 --microbatches 8 --schedule 1f1b\n"
               "  mptrain schedule --pp 4 --microbatches 8 --schedule zb-h1 --svg zb.svg\n");
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    mpt_pp_kind kind;
    if ((st = mpt_pp_kind_parse(o.kind, &kind, &err))) return mpt_cli_report(&err);
    if ((kind == MPT_PP_INTERLEAVED || kind == MPT_PP_ZB_V) && !o.v_seen) o.v = 2;
    if ((st = mpt_pp_check(kind, o.pp, o.m, o.v, &err))) return mpt_cli_report(&err);
    static const char *const cost_names[MPT_PP_COSTS] = {"cost-f", "cost-b", "cost-w", "cost-comm"};
    double cost[MPT_PP_COSTS];
    for (int i = 0; i < MPT_PP_COSTS; i++) {
        cost[i] = o.cost[i];
        int need_positive = i == MPT_PP_COST_F || i == MPT_PP_COST_B;
        if (!isfinite(cost[i]) || cost[i] < 0 || (need_positive && cost[i] == 0)) {
            mpt_fail(&err, MPT_ERR_INPUT, "--%s %g: must be a number %s 0", cost_names[i],
                     cost[i], need_positive ? ">" : ">=");
            return mpt_cli_report(&err);
        }
    }
    FILE *svg = NULL; /* opened first, so a bad path fails before anything is printed */
    if (o.svg && !(svg = fopen(o.svg, "w"))) {
        mpt_fail(&err, MPT_ERR_INPUT, "--svg %s: cannot create it (%s)", o.svg, strerror(errno));
        return mpt_cli_report(&err);
    }
    mpt_pp_timeline t;
    if ((st = mpt_pp_simulate(kind, o.pp, o.m, o.v, cost, &t, &err))) goto fail;
    printf("%s schedule: %d pipeline rank%s, %d micro-batch%s", mpt_pp_kind_name(kind), o.pp,
           o.pp == 1 ? "" : "s", o.m, o.m == 1 ? "" : "es");
    if (o.v > 1) printf(", %d virtual stages per rank (%d stages)", o.v, o.v * o.pp);
    printf("; costs F=%g B=%g W=%g comm=%g", cost[0], cost[1], cost[2], cost[3]);
    if (!mpt_pp_split(kind)) printf(" (backward = B+W = %g)", cost[1] + cost[2]);
    printf("\n");
    draw_text_(&t);
    double theory = mpt_pp_bubble_theory(kind, o.pp, o.m, o.v, cost);
    const char *formula = kind == MPT_PP_NAIVE         ? "(p-1)/p"
                          : kind == MPT_PP_INTERLEAVED ? "(p-1)/(v*m+p-1)"
                          : kind == MPT_PP_ZB_H1       ? "1 - m(F+B+W)/((m+p-1)(F+B)+max(m-p+1,1)W)"
                          : kind == MPT_PP_ZB_V        ? "greedy V order, free transfers"
                                                       : "(p-1)/(m+p-1)";
    printf("makespan: %g time units, %g busy over %d rank%s\n", t.makespan, t.busy, o.pp,
           o.pp == 1 ? "" : "s");
    printf("bubble (idle / (ranks x makespan)): simulated %.4f (%.2f%%), theoretical %s = "
           "%.4f (%.2f%%)%s\n", t.bubble, 100.0 * t.bubble, formula, theory, 100.0 * theory,
           cost[MPT_PP_COST_COMM] > 0 ? "; the theory leaves out communication" : "");
    printf("peak %s in flight (forwarded, backward not finished) per rank:",
           o.v > 1 ? "micro-batch chunks (1/v of a stage's activations each)" : "micro-batches");
    for (int r = 0; r < o.pp; r++) printf(" %d", t.peak_inflight[r]);
    printf("\n");
    if (kind == MPT_PP_2BW && o.steps > 1) {
        mpt_pp_2bw_report r2;
        if ((st = mpt_pp_2bw_simulate(o.pp, o.m, o.steps, cost, &r2, &err))) goto fail;
        printf("2bw without the flush, %d steps as one 1F1B order: bubble %.4f (%.2f%%) against "
               "%.4f drained step by step; at most %d weight versions in flight on a rank; each "
               "update ready %g time units before a rank needs it\n", o.steps, r2.bubble,
               100.0 * r2.bubble, r2.bubble_flush, r2.versions, r2.slack);
    }
    if (o.actions && (st = print_actions_(&o, kind, &err))) goto fail;
    if (svg) {
        st = write_svg_(&t, svg, o.svg, &err);
        svg = NULL;
        if (st) goto fail;
        printf("wrote %s\n", o.svg);
    }
    mpt_pp_timeline_free(&t);
    return 0;
fail:
    if (svg) fclose(svg);
    if (o.svg) remove(o.svg);
    mpt_pp_timeline_free(&t);
    return mpt_cli_report(&err);
}
