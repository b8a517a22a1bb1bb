/* cmd_plot.c — `mptrain plot`: one SVG picture of one or more training logs (JSON Lines written
 * by `mptrain train --log`, CONTRACT §7), readable in any browser with no other tool.
 *
 * Four panels share the x axis (optimizer steps, or tokens seen with --x tokens): the training
 * loss (solid) with the validation loss (dashed, dots at the evaluation steps), the learning
 * rate, tokens per second and the peak memory per rank. Every run has one colour in all panels
 * and a legend entry (the file name, or --label). Each series is an SVG <path> whose id names the
 * run and the series ("run0-loss", "run0-val_loss", "run1-lr", ...), so tests and scripts can
 * find them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/file.h"

#define MAX_RUNS_ 16

static const char intro_[] =
    "usage: mptrain plot RUN.jsonl [MORE.jsonl ...] [--svg FILE] [--x step|tokens]\n"
    "                    [--label A,B,...] [--title TEXT]\n"
    "\n"
    "Draws the logs of one or more `mptrain train --log` runs into one SVG: training and\n"
    "validation loss, learning rate, tokens/s and peak memory per rank against steps (or tokens\n"
    "seen), every run in its own colour with a legend.\n"
    "\n";

/* The series drawn, in panel order; val_loss shares the loss panel. */
enum { S_LOSS, S_VAL, S_LR, S_TPS, S_MEM, S_N };
static const char *series_key_[S_N] = {"loss", "val_loss", "lr", "tokens_per_s",
                                       "peak_mem_bytes"};
static const char *panel_title_[4] = {"loss (solid: training, dashed: validation)",
                                      "learning rate", "tokens / s", "peak memory per rank (MiB)"};

typedef struct series_ {
    double *x, *y;
    size_t n, cap;
} series_;

typedef struct run_ {
    char label[64];
    series_ s[S_N];
} run_;

static int push_(series_ *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return 0;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return 0;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return 1;
}

static void run_free_(run_ *r) {
    for (int k = 0; k < S_N; k++) {
        free(r->s[k].x);
        free(r->s[k].y);
    }
}

/* Reads one log: the start line gives the tokens per step; every step line adds its points. */
static mpt_status read_run_(const char *path, int by_tokens, run_ *run, mpt_error *err) {
    char *text = NULL;
    size_t len = 0;
    mpt_status st = mpt_file_read(path, (size_t)1 << 30, &text, &len, err);
    if (st) return st;
    double tokens_per_step = 0;
    size_t line_no = 0, steps = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        if (!*line) continue;
        cJSON *j = cJSON_Parse(line);
        if (!j) {
            free(text);
            return mpt_fail(err, MPT_ERR_INPUT, "%s line %zu is not JSON: is it a `mptrain train "
                            "--log` file?", path, line_no);
        }
        const cJSON *ev = cJSON_GetObjectItem(j, "event"), *step = cJSON_GetObjectItem(j, "step");
        if (cJSON_IsString(ev) && strcmp(ev->valuestring, "start") == 0) {
            const cJSON *b = cJSON_GetObjectItem(j, "batch"), *t = cJSON_GetObjectItem(j, "seq_len");
            if (cJSON_IsNumber(b) && cJSON_IsNumber(t)) tokens_per_step = b->valuedouble * t->valuedouble;
        } else if (!ev && cJSON_IsNumber(step)) {
            double x = by_tokens ? step->valuedouble * tokens_per_step : step->valuedouble;
            for (int k = 0; k < S_N; k++) {
                const cJSON *v = cJSON_GetObjectItem(j, series_key_[k]);
                if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) continue;
                double y = k == S_MEM ? v->valuedouble / (1024.0 * 1024.0) : v->valuedouble;
                if (!push_(&run->s[k], x, y)) {
                    cJSON_Delete(j);
                    free(text);
                    return mpt_fail(err, MPT_ERR_RUN, "out of memory reading %s", path);
                }
            }
            steps++;
        }
        cJSON_Delete(j);
    }
    free(text);
    if (!steps)
        return mpt_fail(err, MPT_ERR_INPUT, "%s has no step lines: give the --log file of a "
                        "`mptrain train` run that ran at least one step", path);
    if (by_tokens && tokens_per_step <= 0)
        return mpt_fail(err, MPT_ERR_INPUT, "%s has no start line with batch and seq_len, so "
                        "--x tokens cannot be computed: use --x step", path);
    return MPT_OK;
}

/* ---- drawing ---------------------------------------------------------------------------------- */

#define W_ 1100
#define H_ 760
#define PW_ 470 /* panel plot area */
#define PH_ 230

static const char *colour_[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#17becf"};

/* A step of 1, 2 or 5 times a power of ten giving about `want` ticks over [lo, hi]. */
static double tick_step_(double lo, double hi, int want) {
    double raw = (hi - lo) / want, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_num_(double v, char *buf, size_t n) {
    double a = fabs(v);
    if (a == 0) snprintf(buf, n, "0");
    else if (a >= 1e6) snprintf(buf, n, "%.3gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, n, "%.3gk", v / 1e3);
    else if (a < 1e-2) snprintf(buf, n, "%.1e", v);
    else snprintf(buf, n, "%.4g", v);
}

/* Range of the series of panel p over all runs; 0 when the panel has no point. */
static int panel_range_(const run_ *runs, int nr, int p, double r[4]) {
    int any = 0;
    for (int i = 0; i < nr; i++)
        for (int k = 0; k < S_N; k++) {
            int pk = k <= S_VAL ? 0 : k - 1;
            if (pk != p) continue;
            const series_ *s = &runs[i].s[k];
            for (size_t j = 0; j < s->n; j++) {
                if (!any) r[0] = r[1] = s->x[j], r[2] = r[3] = s->y[j];
                any = 1;
                r[0] = fmin(r[0], s->x[j]), r[1] = fmax(r[1], s->x[j]);
                r[2] = fmin(r[2], s->y[j]), r[3] = fmax(r[3], s->y[j]);
            }
        }
    if (!any) return 0;
    if (r[1] <= r[0]) r[1] = r[0] + 1;
    double pad = (r[3] - r[2]) * 0.05;
    if (pad <= 0) pad = fabs(r[3]) * 0.05 + 1e-12;
    r[2] -= pad, r[3] += pad;
    if (r[2] < 0 && r[2] + pad >= 0) r[2] = 0; /* non-negative series start at 0 when close */
    return 1;
}

static void draw_panel_(FILE *f, const run_ *runs, int nr, int p, int ox, int oy, int by_tokens) {
    double r[4] = {0, 1, 0, 1};
    fprintf(f, "<g transform=\"translate(%d,%d)\">\n", ox, oy);
    fprintf(f, "<text x=\"0\" y=\"-10\" class=\"title\">%s</text>\n", panel_title_[p]);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" class=\"frame\"/>\n", PW_, PH_);
    if (!panel_range_(runs, nr, p, r)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">no data</text>\n</g>\n", PW_ / 2 - 20,
                PH_ / 2);
        return;
    }
    double sx = PW_ / (r[1] - r[0]), sy = PH_ / (r[3] - r[2]);
    char buf[32];
    double ty = tick_step_(r[2], r[3], 5), tx = tick_step_(r[0], r[1], 6);
    for (double v = ceil(r[2] / ty) * ty; v <= r[3]; v += ty) {
        double y = PH_ - (v - r[2]) * sy;
        fmt_num_(v, buf, sizeof buf);
        fprintf(f, "<line x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"-6\" y=\"%.1f\" class=\"axis\" text-anchor=\"end\">%s</text>\n",
                PW_, y, y, y + 4, buf);
    }
    for (double v = ceil(r[0] / tx) * tx; v <= r[1]; v += tx) {
        double x = (v - r[0]) * sx;
        fmt_num_(v, buf, sizeof buf);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"0\" y2=\"%d\" class=\"grid\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">%s</text>\n",
                x, x, PH_, x, PH_ + 16, buf);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">%s</text>\n",
            PW_ / 2, PH_ + 32, by_tokens ? "tokens" : "step");
    for (int i = 0; i < nr; i++)
        for (int k = 0; k < S_N; k++) {
            int pk = k <= S_VAL ? 0 : k - 1;
            const series_ *s = &runs[i].s[k];
            if (pk != p || !s->n) continue;
            const char *c = colour_[i % (sizeof colour_ / sizeof *colour_)];
            fprintf(f, "<path id=\"run%d-%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s d=\"",
                    i, series_key_[k], c, k == S_VAL ? " stroke-dasharray=\"6,4\"" : "");
            for (size_t j = 0; j < s->n; j++)
                fprintf(f, "%c%.1f,%.1f", j ? 'L' : 'M', (s->x[j] - r[0]) * sx,
                        PH_ - (s->y[j] - r[2]) * sy);
            fprintf(f, "\"/>\n");
            for (size_t j = 0; k == S_VAL && j < s->n; j++)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                        (s->x[j] - r[0]) * sx, PH_ - (s->y[j] - r[2]) * sy, c);
        }
    fprintf(f, "</g>\n");
}

/* Writes text with the five XML special characters escaped. */
static void xml_text_(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
}

static int write_svg_(FILE *f, const run_ *runs, int nr, int by_tokens, const char *title) {
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
               "<style>.title{font-size:14px;font-weight:bold}.axis{font-size:11px;fill:#444}"
               ".frame{fill:none;stroke:#888}.grid{stroke:#e4e4e4}.legend{font-size:12px}</style>\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W_, H_, W_, H_);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">", W_ / 2);
    xml_text_(f, title);
    fprintf(f, "</text>\n");
    for (int p = 0; p < 4; p++)
        draw_panel_(f, runs, nr, p, 70 + (p % 2) * (PW_ + 80), 70 + (p / 2) * (PH_ + 90),
                    by_tokens);
    for (int i = 0; i < nr; i++) {
        int x = 70 + i * (W_ - 100) / (nr > 4 ? nr : 4), y = H_ - 22;
        const char *c = colour_[i % (sizeof colour_ / sizeof *colour_)];
        fprintf(f, "<g class=\"legend\"><line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
                   "stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">",
                x, x + 24, y - 4, y - 4, c, x + 30, y);
        xml_text_(f, runs[i].label);
        fprintf(f, "</text></g>\n");
    }
    fprintf(f, "</svg>\n");
    return ferror(f) ? -1 : 0;
}

int mpt_cli_plot(int argc, char **argv) {
    const char *svg = "plot.svg", *x = "step", *labels = NULL, *title = "mptrain";
    int help = 0;
    mpt_arg args[] = {
        {"svg", MPT_ARG_STRING, &svg, "output SVG file (default plot.svg; - for stdout)", NULL, MPT_NO_RANGE},
        {"x", MPT_ARG_STRING, &x, "x axis: step | tokens (default step)", NULL, MPT_NO_RANGE},
        {"label", MPT_ARG_STRING, &labels, "legend names, comma-separated, one per log", NULL, MPT_NO_RANGE},
        {"title", MPT_ARG_STRING, &title, "title above the panels", NULL, MPT_NO_RANGE},
    };
    size_t na = sizeof args / sizeof *args;
    mpt_error err = {0};
    /* the logs come first, then the options */
    int first_opt = 2;
    while (first_opt < argc && strncmp(argv[first_opt], "--", 2) != 0 &&
           strcmp(argv[first_opt], "-h") != 0)
        first_opt++;
    if (mpt_args_parse(args, na, argc, argv, first_opt, &help, "plot", &err))
        return mpt_cli_report(&err);
    if (help) {
        fputs(intro_, stdout);
        mpt_args_usage(args, na);
        return 0;
    }
    int nr = first_opt - 2;
    if (nr < 1) {
        mpt_fail(&err, MPT_ERR_INPUT, "plot needs at least one log file: mptrain plot run.jsonl "
                 "--svg run.svg");
        return mpt_cli_report(&err);
    }
    if (nr > MAX_RUNS_) {
        mpt_fail(&err, MPT_ERR_INPUT, "plot draws at most %d logs, %d given: pass at most %d",
                 MAX_RUNS_, nr, MAX_RUNS_);
        return mpt_cli_report(&err);
    }
    if (strcmp(x, "step") != 0 && strcmp(x, "tokens") != 0) {
        mpt_fail(&err, MPT_ERR_INPUT, "--x %s: use step or tokens", x);
        return mpt_cli_report(&err);
    }
    run_ runs[MAX_RUNS_];
    memset(runs, 0, sizeof runs);
    const char *lp = labels;
    mpt_status st = MPT_OK;
    for (int i = 0; i < nr && !st; i++) {
        const char *path = argv[2 + i], *base = strrchr(path, '/');
        snprintf(runs[i].label, sizeof runs[i].label, "%s", base ? base + 1 : path);
        if (lp && *lp) {
            size_t len = strcspn(lp, ",");
            snprintf(runs[i].label, sizeof runs[i].label, "%.*s", (int)len, lp);
            lp += len + (lp[len] == ',');
        }
        st = read_run_(path, strcmp(x, "tokens") == 0, &runs[i], &err);
    }
    int code = 0;
    if (st) {
        code = mpt_cli_report(&err);
    } else {
        FILE *f = strcmp(svg, "-") == 0 ? stdout : fopen(svg, "w");
        if (!f) {
            mpt_fail(&err, MPT_ERR_INPUT, "cannot write %s: check the directory exists", svg);
            code = mpt_cli_report(&err);
        } else {
            int bad = write_svg_(f, runs, nr, strcmp(x, "tokens") == 0, title);
            if (f != stdout && fclose(f) != 0) bad = -1;
            if (bad) {
                mpt_fail(&err, MPT_ERR_RUN, "writing %s failed (disk full?)", svg);
                code = mpt_cli_report(&err);
            }
        }
    }
    for (int i = 0; i < nr; i++) run_free_(&runs[i]);
    return code;
}
