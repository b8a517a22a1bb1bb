/* sim_svg.h — the SVG timeline of a simulated step (see sim_svg.c). */
#ifndef MPT_SIM_SVG_H
#define MPT_SIM_SVG_H

#include "plan/sim.h"

/* r simulated with events; layout: a caption. 0 written, 2 cannot open path, 1 write error. */
int mpt_sim_svg_write(const mpt_sim_result *r, const char *layout, const char *path);

#endif
