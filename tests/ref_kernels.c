/* ref_kernels.c — the double-precision reference operators of a GPT block (see ref_kernels.h).
 * Every function is the textbook formula written out with plain loops, one element at a time,
 * so that it can be checked by reading it; the finite-difference tests check the backward
 * passes against the forward ones.
 */
#include "ref_kernels.h"

#include <math.h>

#define REF_LN_EPS 1e-5

/* ---------------------------------------------------------------- encoder */

void ref_encoder_forward(double *out, const int32_t *inp, const double *wte, const double *wpe,
                         int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const double *tok = wte + (size_t)inp[b * T + t] * D;
            const double *pos = wpe + (size_t)t * D;
            double *o = out + ((size_t)b * T + t) * D;
            for (int i = 0; i < D; i++) o[i] = tok[i] + pos[i];
        }
}

void ref_encoder_backward(double *dwte, double *dwpe, const double *dout, const int32_t *inp,
                          int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double *dtok = dwte + (size_t)inp[b * T + t] * D;
            double *dpos = dwpe + (size_t)t * D;
            const double *d = dout + ((size_t)b * T + t) * D;
            for (int i = 0; i < D; i++) {
                dtok[i] += d[i];
                dpos[i] += d[i];
            }
        }
}

/* ---------------------------------------------------------------- layernorm */

void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, size_t N, int C) {
    for (size_t n = 0; n < N; n++) {
        const double *x = inp + n * C;
        double m = 0.0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        double var = 0.0;                                  /* biased: divide by C */
        for (int i = 0; i < C; i++) var += (x[i] - m) * (x[i] - m);
        var /= C;
        double s = 1.0 / sqrt(var + REF_LN_EPS);
        for (int i = 0; i < C; i++) out[n * C + i] = (x[i] - m) * s * w[i] + b[i];
        mean[n] = m;
        rstd[n] = s;
    }
}

/* With xhat = (x - mean) * rstd and y = xhat * w + b:
 *   dxhat = dy * w,  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
void ref_layernorm_backward(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, size_t N, int C) {
    for (size_t n = 0; n < N; n++) {
        const double *x = inp + n * C, *dy = dout + n * C;
        double mean_dxhat = 0.0, mean_dxhat_xhat = 0.0;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - mean[n]) * rstd[n];
            double dxhat = dy[i] * w[i];
            mean_dxhat += dxhat;
            mean_dxhat_xhat += dxhat * xhat;
            if (dw) dw[i] += dy[i] * xhat;
            if (db) db[i] += dy[i];
        }
        mean_dxhat /= C;
        mean_dxhat_xhat /= C;
        if (!dinp) continue;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - mean[n]) * rstd[n];
            double dxhat = dy[i] * w[i];
            dinp[n * C + i] += rstd[n] * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}

/* ---------------------------------------------------------------- matmul */

void ref_matmul_forward(double *out, const double *inp, const double *w, const double *bias,
                        size_t N, int C, int OC) {
    for (size_t n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < C; i++) s += inp[n * C + i] * w[(size_t)i * OC + o];
            out[n * OC + o] = s;
        }
}

void ref_matmul_backward(double *dinp, double *dw, double *dbias, const double *dout,
                         const double *inp, const double *w, size_t N, int C, int OC) {
    for (size_t n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double d = dout[n * OC + o];
            for (int i = 0; i < C; i++) {
                if (dinp) dinp[n * C + i] += d * w[(size_t)i * OC + o];
                dw[(size_t)i * OC + o] += d * inp[n * C + i];
            }
            if (dbias) dbias[o] += d;
        }
}

void ref_lmhead_forward(double *out, const double *inp, const double *w, size_t N, int C, int V,
                        int ldo) {
    for (size_t n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double s = 0.0;
            for (int i = 0; i < C; i++) s += inp[n * C + i] * w[(size_t)v * C + i];
            out[n * ldo + v] = s;
        }
}

void ref_lmhead_backward(double *dinp, double *dw, const double *dout, const double *inp,
                         const double *w, size_t N, int C, int V, int ldo) {
    for (size_t n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double d = dout[n * ldo + v];
            for (int i = 0; i < C; i++) {
                dinp[n * C + i] += d * w[(size_t)v * C + i];
                dw[(size_t)v * C + i] += d * inp[n * C + i];
            }
        }
}

/* ---------------------------------------------------------------- attention */

/* Offset of head h of part p (0 = q, 1 = k, 2 = v) of token (b, t) in qkv (B,T,3D). */
static size_t qkv_at_(int b, int t, int p, int h, int T, int D, int hs) {
    return ((size_t)b * T + t) * 3 * D + (size_t)p * D + (size_t)h * hs;
}

void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int D,
                           int H) {
    int hs = D / H;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + qkv_at_(b, t, 0, h, T, D, hs);
                double *a = att + (((size_t)b * H + h) * T + t) * T;       /* row (T) */
                /* scores over the visible keys t2 <= t, then a stable softmax */
                double mx = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *k = qkv + qkv_at_(b, t2, 1, h, T, D, hs);
                    double s = 0.0;
                    for (int i = 0; i < hs; i++) s += q[i] * k[i];
                    a[t2] = s * scale;
                    if (a[t2] > mx) mx = a[t2];
                }
                double sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    a[t2] = exp(a[t2] - mx);
                    sum += a[t2];
                }
                for (int t2 = 0; t2 <= t; t2++) a[t2] /= sum;
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0;
                /* out = att @ v */
                double *o = out + ((size_t)b * T + t) * D + (size_t)h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *v = qkv + qkv_at_(b, t2, 2, h, T, D, hs);
                    for (int i = 0; i < hs; i++) o[i] += a[t2] * v[i];
                }
            }
}

/* Per row (b, h, t), with p = att row, s = pre-softmax scores:
 *   datt[t2] = dout_t . v_t2          dv_t2 += p[t2] dout_t
 *   ds[t2]   = p[t2] (datt[t2] - sum_j p[j] datt[j])
 *   dq_t    += scale ds[t2] k_t2      dk_t2 += scale ds[t2] q_t */
void ref_attention_backward(double *dqkv, double *datt, const double *dout, const double *qkv,
                            const double *att, int B, int T, int D, int H) {
    int hs = D / H;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *p = att + (((size_t)b * H + h) * T + t) * T;
                double *da = datt + (((size_t)b * H + h) * T + t) * T;
                const double *dy = dout + ((size_t)b * T + t) * D + (size_t)h * hs;
                const double *q = qkv + qkv_at_(b, t, 0, h, T, D, hs);
                double *dq = dqkv + qkv_at_(b, t, 0, h, T, D, hs);
                for (int t2 = 0; t2 < T; t2++) da[t2] = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *v = qkv + qkv_at_(b, t2, 2, h, T, D, hs);
                    double *dv = dqkv + qkv_at_(b, t2, 2, h, T, D, hs);
                    for (int i = 0; i < hs; i++) {
                        da[t2] += dy[i] * v[i];
                        dv[i] += p[t2] * dy[i];
                    }
                }
                double p_dot_da = 0.0;
                for (int t2 = 0; t2 <= t; t2++) p_dot_da += p[t2] * da[t2];
                for (int t2 = 0; t2 <= t; t2++) {
                    double ds = p[t2] * (da[t2] - p_dot_da);
                    const double *k = qkv + qkv_at_(b, t2, 1, h, T, D, hs);
                    double *dk = dqkv + qkv_at_(b, t2, 1, h, T, D, hs);
                    for (int i = 0; i < hs; i++) {
                        dq[i] += scale * ds * k[i];
                        dk[i] += scale * ds * q[i];
                    }
                }
            }
}

/* ---------------------------------------------------------------- gelu */

#define REF_GELU_S 0.79788456080286535588    /* sqrt(2/pi) */
#define REF_GELU_C 0.044715

void ref_gelu_forward(double *out, const double *inp, size_t N) {
    for (size_t i = 0; i < N; i++) {
        double x = inp[i];
        out[i] = 0.5 * x * (1.0 + tanh(REF_GELU_S * (x + REF_GELU_C * x * x * x)));
    }
}

/* d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx,
 * u = s (x + c x^3), du/dx = s (1 + 3 c x^2). */
void ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t N) {
    for (size_t i = 0; i < N; i++) {
        double x = inp[i];
        double th = tanh(REF_GELU_S * (x + REF_GELU_C * x * x * x));
        double du = REF_GELU_S * (1.0 + 3.0 * REF_GELU_C * x * x);
        dinp[i] += dout[i] * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du);
    }
}

/* ---------------------------------------------------------------- residual */

void ref_residual_forward(double *out, const double *a, const double *b, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void ref_add_inplace(double *y, const double *x, size_t N) {
    for (size_t i = 0; i < N; i++) y[i] += x[i];
}

/* ---------------------------------------------------------------- softmax, cross-entropy */

void ref_crossentropy_fused(double *logits, double *losses, const int32_t *targets, size_t N,
                            int V, int Vp, double dloss) {
    for (size_t n = 0; n < N; n++) {
        double *z = logits + n * Vp;
        double mx = -INFINITY;
        for (int j = 0; j < V; j++)
            if (z[j] > mx) mx = z[j];
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += exp(z[j] - mx);
        double lse = mx + log(sum);                     /* log sum_j exp z_j */
        int y = targets[n];
        losses[n] = lse - z[y];
        for (int j = 0; j < V; j++) {
            double p = exp(z[j] - lse);
            z[j] = dloss * (p - (j == y ? 1.0 : 0.0));
        }
        for (int j = V; j < Vp; j++) z[j] = 0.0;
    }
}

void ref_softmax_row(double *probs, const double *logits, int V, double temperature) {
    double mx = -INFINITY;
    for (int j = 0; j < V; j++)
        if (logits[j] / temperature > mx) mx = logits[j] / temperature;
    double sum = 0.0;
    for (int j = 0; j < V; j++) {
        probs[j] = exp(logits[j] / temperature - mx);
        sum += probs[j];
    }
    for (int j = 0; j < V; j++) probs[j] /= sum;
}
