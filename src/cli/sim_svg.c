/* sim_svg.c — `simulate --svg FILE`: the simulated step as an SVG timeline. One row per
 * pipeline rank (at most 64 drawn), each with a compute stream (F, B, W of every micro-batch)
 * and a communication stream under it (point-to-point activations and gradients, the
 * data-parallel reduction, the optimizer step with its ZeRO all-gather); a time axis in
 * seconds and a legend. */
#include "cli/sim_svg.h"

#include <stdio.h>

enum { LEFT_ = 70, WIDTH_ = 1100, TOP_ = 40, LANE_ = 16, COMM_ = 8, GAP_ = 8 };

static const char *fill_(int op) {
    return op == MPT_PP_F ? "#4c78a8" : op == MPT_PP_B ? "#54a24b" : "#f2a93b";
}
static const char *comm_fill_(int kind) {
    return kind == MPT_SIM_P2P_ACT    ? "#9ecae9"
           : kind == MPT_SIM_P2P_GRAD ? "#a1d99b"
           : kind == MPT_SIM_DP       ? "#b279a2"
                                      : "#e45756";
}

static void rect_(FILE *f, double x0, double x1, double y, double h, const char *fill,
                  const char *title) {
    double w = x1 - x0 < 0.3 ? 0.3 : x1 - x0;
    fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" "
               "stroke=\"white\" stroke-width=\"0.4\"><title>%s</title></rect>\n",
            x0, y, w, h, fill, title);
}

int mpt_sim_svg_write(const mpt_sim_result *r, const char *layout, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return 2;
    int rows = r->p < 64 ? r->p : 64;
    double span = r->step_time > 0 ? r->step_time : 1.0, sx = WIDTH_ / span;
    int row_h = LANE_ + COMM_ + GAP_, height = TOP_ + rows * row_h + 60;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", LEFT_ + WIDTH_ + 20, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"16\" font-size=\"13\">%s: step %.4g s, bubble %.1f%%, "
               "%d ranks (%d pipeline ranks shown)</text>\n", LEFT_, layout, r->step_time,
            100 * r->bubble, r->world, rows);
    for (int k = 0; k < rows; k++) {
        double y = TOP_ + k * row_h;
        fprintf(f, "<text x=\"4\" y=\"%.1f\">rank %d</text>\n", y + LANE_ - 4, k);
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#f4f4f4\"/>\n",
                LEFT_, y, WIDTH_, LANE_ + COMM_);
    }
    char title[64];
    for (size_t i = 0; i < r->n_ev; i++) {
        const mpt_pp_event *e = &r->ev[i];
        if (e->rank >= rows) continue;
        mpt_pp_action_str(&e->a, r->v, title, sizeof title);
        rect_(f, LEFT_ + e->start * sx, LEFT_ + e->end * sx, TOP_ + e->rank * row_h, LANE_,
              fill_(e->a.op), title);
    }
    const char *names[] = {"send activation", "send gradient", "data-parallel reduction",
                           "optimizer"};
    for (size_t i = 0; i < r->n_comm; i++) {
        const mpt_sim_comm *c = &r->comm[i];
        if (c->rank >= rows || c->kind < 0 || c->kind > MPT_SIM_OPTIMIZER) continue;
        rect_(f, LEFT_ + c->start * sx, LEFT_ + c->end * sx, TOP_ + c->rank * row_h + LANE_,
              COMM_, comm_fill_(c->kind), names[c->kind]);
    }
    double ya = TOP_ + rows * row_h + 4;
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", LEFT_, ya,
            LEFT_ + WIDTH_, ya);
    for (int t = 0; t <= 10; t++) {
        double x = LEFT_ + t * WIDTH_ / 10.0;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g s</text>\n",
                x, ya, x, ya + 4, x, ya + 16, span * t / 10.0);
    }
    const char *lg[] = {"F forward", "B backward", "W weight gradient", "send activation",
                        "send gradient", "data-parallel reduction", "optimizer"};
    const char *lc[] = {fill_(MPT_PP_F), fill_(MPT_PP_B), fill_(MPT_PP_W),
                        comm_fill_(MPT_SIM_P2P_ACT), comm_fill_(MPT_SIM_P2P_GRAD),
                        comm_fill_(MPT_SIM_DP), comm_fill_(MPT_SIM_OPTIMIZER)};
    for (int i = 0; i < 7; i++) {
        double x = LEFT_ + i * 150.0, y = ya + 30;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"10\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x, y, lc[i], x + 16, y + 9, lg[i]);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : 1;
}
