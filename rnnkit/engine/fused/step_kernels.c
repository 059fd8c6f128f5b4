/* The element-wise work of one fused RNN, LSTM or GRU step, in one pass per row.
 *
 * Between a step's matrix products the fused engine applies a chain of element-wise operations: the
 * gates' sigmoids, the cell update, tanh, and with layer normalisation the normalisations and their
 * gradients. Written with torch's operators that chain is 8–14 kernel calls per step, each a few
 * microseconds of dispatch and a pass over memory; at the sizes of most recurrent models (B32 H128) it
 * costs more than the step's matrix product. Here each step's chain is one call, over each row once.
 *
 * These functions are the same computations as the torch-operator loops of lstm.py and gru.py, which
 * stay the path for every case these do not take (CUDA, other dtypes, no compiler at install time); the
 * tests hold the two, and the reference cells, to each other. Plain C, no Python API: loaded with
 * ctypes by step_kernels.py, which checks KERNELS_VERSION against its own.
 *
 * Conventions: every matrix is row-major with unit column stride and the given row stride (in
 * elements); `b` live rows, hidden size `H`; a NULL pointer means "this option is off". The internal
 * gate layouts are lstm.py's and gru.py's: an LSTM's g pre-activation and a GRU's n input part arrive
 * doubled, so tanh(a) = 2σ(2a) − 1 costs one exponential.
 */
#include <math.h>
#include <stddef.h>

#define KERNELS_VERSION 8

long rnnkit_step_kernels_version(void) { return KERNELS_VERSION; }

/* x86-64: clones for AVX-512 (16 floats at a time), AVX2 (8) and the baseline, chosen when the library loads. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTORISED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTORISED
#endif

#define DEFINE_KERNELS(real, sfx, EXP, SQRT, FABS)                                                             \
                                                                                                              \
/* σ(x) from e = exp(−|x|) ≤ 1, which cannot overflow: 1/(1 + exp(−x)) with exp(−x) = inf gave NaN under    \
   -ffast-math (a reciprocal approximation that assumes no infinities) for float32 x below about −88. A NaN    \
   x stays NaN (e is NaN). */                                                                                 \
static inline real sigmoid_##sfx(real x) {                                                                    \
    real e = EXP(-FABS(x)), s = (real)1 / ((real)1 + e);                                                     \
    return x >= 0 ? s : e * s;                                                                                \
}                                                                                                             \
                                                                                                              \
/* mean and 1/std of x[0:n] (biased variance, as torch's layer norm). */                                      \
static inline void moments_##sfx(const real *x, long n, real eps, real *mean, real *rstd) {                   \
    real s = 0, v = 0;                                                                                        \
    for (long j = 0; j < n; j++) s += x[j];                                                                   \
    real m = s / (real)n;                                                                                     \
    for (long j = 0; j < n; j++) { real d = x[j] - m; v += d * d; }                                           \
    *mean = m;                                                                                                \
    *rstd = (real)1 / SQRT(v / (real)n + eps);                                                                \
}                                                                                                             \
                                                                                                              \
/* The input gradient of y = LN(x)·w + bias given dy: with x̂ = (x − mean)·rstd and g = dy·w,              \
   dx = rstd·(g − a − (x − mean)·c), a = mean(g), c = rstd²·mean(g·(x − mean)). ln_coefficients gives a, c,  \
   and adds the gain's and bias's gradients of this row, dy·x̂ and dy, to gw and gb (in double; NULL: not). */  \
static inline void ln_coefficients_##sfx(const real *dy, const real *x, const real *w, real mean, real rstd,  \
                                         long n, real *a, real *c, double *gw, double *gb) {                  \
    real sg = 0, sgx = 0;                                                                                     \
    for (long j = 0; j < n; j++) {                                                                            \
        real g = dy[j] * w[j];                                                                                \
        sg += g;                                                                                              \
        sgx += g * (x[j] - mean);                                                                             \
    }                                                                                                         \
    *a = sg / (real)n;                                                                                        \
    *c = sgx * rstd * rstd / (real)n;                                                                         \
    if (gw)                                                                                                   \
        for (long j = 0; j < n; j++) {                                                                        \
            gw[j] += (double)(dy[j] * (x[j] - mean) * rstd);                                                  \
            gb[j] += (double)dy[j];                                                                           \
        }                                                                                                     \
}                                                                                                             \
                                                                                                              \
static inline void ln_backward_##sfx(const real *dy, const real *x, const real *w, real mean, real rstd,      \
                                     long n, real *dx, double *gw, double *gb) {                              \
    real a, c;                                                                                                \
    ln_coefficients_##sfx(dy, x, w, mean, rstd, n, &a, &c, gw, gb);                                           \
    for (long j = 0; j < n; j++) dx[j] = rstd * (dy[j] * w[j] - a - (x[j] - mean) * c);                       \
}                                                                                                             \
                                                                                                              \
/* x[0:n] = φ(x) in place: tanh, as 2σ(2x) − 1 (one exponential), or with relu max(x, 0) (a NaN stays). */  \
static inline void rnn_phi_##sfx(real *x, long n, long relu) {                                                \
    if (relu)                                                                                                 \
        for (long j = 0; j < n; j++) x[j] = x[j] < 0 ? 0 : x[j];                                              \
    else                                                                                                      \
        for (long j = 0; j < n; j++) x[j] = 2 * sigmoid_##sfx(2 * x[j]) - 1;                                  \
}                                                                                                             \
                                                                                                              \
/* Vanilla RNN forward step. S (b, H): the pre-activation in, h̃ = φ(S) out, in place (tanh, or ReLU with    \
   relu). With zh: out = h̃ + z_h (h_{t-1} − h̃) (hp: h_{t-1}). */                                              \
VECTORISED void rnn_forward_step_##sfx(long b, long H, long relu, real *S, long ss, const real *zh, long zhs,  \
                                       const real *hp, long hps, real *out, long os) {                        \
    for (long r = 0; r < b; r++) {                                                                            \
        real *s = S + r * ss;                                                                                 \
        rnn_phi_##sfx(s, H, relu);                                                                            \
        if (zh) {                                                                                             \
            const real *z = zh + r * zhs, *h = hp + r * hps;                                                  \
            real *y = out + r * os;                                                                           \
            for (long j = 0; j < H; j++) y[j] = s[j] + z[j] * (h[j] - s[j]);                                  \
        }                                                                                                     \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* The same without zoneout, with fewer arguments (ctypes converts each one, which shows at small sizes):  \
   b rows of H values s apart (a contiguous block can be passed as one row of b·H). */                       \
VECTORISED void rnn_activate_##sfx(long b, long H, long relu, real *S, long s) {                              \
    for (long r = 0; r < b; r++) rnn_phi_##sfx(S + r * s, H, relu);                                          \
}                                                                                                             \
                                                                                                              \
/* Vanilla RNN backward step. dh = carry + dy, the gradient at h_t (carry NULL: dy alone); with zh, kept =   \
   dh·z_h (the part zoneout passes straight to h_{t-1}) and dh·(1 − z_h) goes on; da = that · φ'(a) into  \
   da, φ' = 1 − h̃² (tanh) or [h̃ > 0] (relu), from h̃ in ht. */                                              \
VECTORISED void rnn_backward_step_##sfx(long b, long H, long relu, const real *carry, long cs, const real *dy, \
                                        long dys, const real *ht, long hts, const real *zh, long zhs,          \
                                        real *da, long das, real *kept, long ks) {                             \
    for (long r = 0; r < b; r++) {                                                                            \
        const real *y = dy + r * dys, *h = ht + r * hts;                                                      \
        real *d = da + r * das;                                                                               \
        if (carry) {                                                                                          \
            const real *c = carry + r * cs;                                                                   \
            for (long j = 0; j < H; j++) d[j] = c[j] + y[j];                                                  \
        } else {                                                                                              \
            for (long j = 0; j < H; j++) d[j] = y[j];                                                         \
        }                                                                                                     \
        if (zh) {                                                                                             \
            const real *z = zh + r * zhs;                                                                     \
            real *k = kept + r * ks;                                                                          \
            for (long j = 0; j < H; j++) { k[j] = d[j] * z[j]; d[j] -= k[j]; }                                \
        }                                                                                                     \
        if (relu)                                                                                             \
            for (long j = 0; j < H; j++) d[j] = h[j] <= 0 ? 0 : d[j]; /* (as torch's: NaN passes) */         \
        else                                                                                                  \
            for (long j = 0; j < H; j++) d[j] *= 1 - h[j] * h[j];                                             \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* The same without zoneout: da = (carry + dy)·φ'(a) over b rows of H values, carry's rows H apart, the     \
   others' s apart (a contiguous block: one row of b·H). */                                                  \
VECTORISED void rnn_backward_rows_##sfx(long b, long H, long relu, const real *carry, const real *dy,          \
                                        const real *ht, real *da, long s) {                                   \
    for (long r = 0; r < b; r++) {                                                                            \
        const real *c = carry + r * H, *y = dy + r * s, *h = ht + r * s;                                      \
        real *d = da + r * s;                                                                                 \
        if (relu)                                                                                             \
            for (long j = 0; j < H; j++) d[j] = h[j] <= 0 ? 0 : c[j] + y[j];                                  \
        else                                                                                                  \
            for (long j = 0; j < H; j++) d[j] = (c[j] + y[j]) * (1 - h[j] * h[j]);                            \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* LSTM forward step. G (b, 4H) [i f g o]: the input part in (and the recurrent product, when A is NULL),  \
   the activated gates out (g as tanh). With A (b, 4H): G += LN(A)·lnw + lnb, its moments to mean_h,      \
   rstd_h. C̃ = f·C_{t-1} + i·g to ct; tanh(C̃) — of LN(C̃)·lcw + lcb with lcw — to tc; o·tc to out.        \
   Zoneout: with zh, out = h̃ + z_h (h_{t-1} − h̃) (hp: h_{t-1}); with zc, cz = C̃ + z_c (C_{t-1} − C̃). */   \
VECTORISED void lstm_forward_step_##sfx(                                                                     \
    long b, long H, real *G, long gs, const real *A, long as, const real *lnw, const real *lnb,              \
    real *mean_h, real *rstd_h, const real *cp, long cps, real *ct, long cts, const real *lcw,               \
    const real *lcb, real *mean_c, real *rstd_c, real *tc, long tcs, real *out, long os, const real *zh,     \
    long zhs, const real *hp, long hps, const real *zc, long zcs, real *cz, long czs, real eps) {            \
    const long n4 = 4 * H;                                                                                    \
    for (long r = 0; r < b; r++) {                                                                            \
        real *g = G + r * gs;                                                                                 \
        if (A) {                                                                                              \
            const real *a = A + r * as;                                                                       \
            real m, s;                                                                                        \
            moments_##sfx(a, n4, eps, &m, &s);                                                                \
            mean_h[r] = m;                                                                                    \
            rstd_h[r] = s;                                                                                    \
            for (long j = 0; j < n4; j++) g[j] = sigmoid_##sfx(g[j] + (a[j] - m) * s * lnw[j] + lnb[j]);      \
        } else {                                                                                              \
            for (long j = 0; j < n4; j++) g[j] = sigmoid_##sfx(g[j]);                                         \
        }                                                                                                     \
        real *i = g, *f = g + H, *gg = g + 2 * H, *o = g + 3 * H;                                             \
        const real *c0 = cp + r * cps;                                                                        \
        real *c = ct + r * cts, *t = tc + r * tcs, *y = out + r * os;                                         \
        for (long j = 0; j < H; j++) {                                                                        \
            gg[j] = 2 * gg[j] - 1;                                                                            \
            c[j] = f[j] * c0[j] + i[j] * gg[j];                                                               \
        }                                                                                                     \
        if (lcw) {                                                                                            \
            real m, s;                                                                                        \
            moments_##sfx(c, H, eps, &m, &s);                                                                 \
            mean_c[r] = m;                                                                                    \
            rstd_c[r] = s;                                                                                    \
            for (long j = 0; j < H; j++) t[j] = 2 * sigmoid_##sfx(2 * ((c[j] - m) * s * lcw[j] + lcb[j])) - 1; \
        } else {                                                                                              \
            for (long j = 0; j < H; j++) t[j] = 2 * sigmoid_##sfx(2 * c[j]) - 1;                              \
        }                                                                                                     \
        for (long j = 0; j < H; j++) y[j] = o[j] * t[j];                                                      \
        if (zh) {                                                                                             \
            const real *z = zh + r * zhs, *h = hp + r * hps;                                                  \
            for (long j = 0; j < H; j++) y[j] += z[j] * (h[j] - y[j]);                                        \
        }                                                                                                     \
        if (zc) {                                                                                             \
            const real *z = zc + r * zcs;                                                                     \
            real *co = cz + r * czs;                                                                          \
            for (long j = 0; j < H; j++) co[j] = c[j] + z[j] * (c0[j] - c[j]);                                \
        }                                                                                                     \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* LSTM backward step. dr = ∂L/∂r (r = o·tc), dcf = ∂L/∂C̃ arriving from step t+1 (with zoneout, zc, it is  \
   dcp × (1 − z_c), computed here). With zh (no projection: dr is ∂L/∂h̃ there): kept = dr·z_h, the part  \
   zoneout passes straight to h_{t-1}, and dr −= kept, in place, first.                                    \
   od = o(1 − tc²), M (b, 4H) the all-steps factors in, dG_t out: dC̃ = dcf + dr·od — with the cell norm,    \
   du = dr·od to du and dC̃ = dcf + LN'(du) — and dG = M·[dC̃, dC̃, dC̃, dr]. dcp (b, H): the carry to t−1,    \
   dC̃·f, plus its old value × zc with zoneout (zc not NULL). With A: dA = LN'(dG) (the recurrent norm).    \
   dcf may be dcp. gw_c, gb_c (H) and gw_h, gb_h (4H), in double, or NULL: each norm's gain and bias         \
   gradients of these rows are added to them. */                                                             \
VECTORISED void lstm_backward_step_##sfx(                                                                    \
    long b, long H, real *dr, long drs, const real *dcf, long dcfs, const real *od, long ods, real *M,       \
    long ms, const real *f, long fs, real *dcp, long dcps, const real *zc, long zcs, const real *ct,         \
    long cts, const real *lcw, const real *mean_c, const real *rstd_c, real *du, long dus, const real *A,    \
    long as, const real *lnw, const real *mean_h, const real *rstd_h, real *dA, long das, double *gw_c,      \
    double *gb_c, double *gw_h, double *gb_h, const real *zh, long zhs, real *kept, long ks) {               \
    for (long r = 0; r < b; r++) {                                                                            \
        real *d = dr + r * drs;                                                                               \
        const real *q = od + r * ods, *fr = f + r * fs, *c1 = dcf + r * dcfs;                                 \
        const real *zcr = zc ? zc + r * zcs : NULL;                                                           \
        real *m = M + r * ms, *cp = dcp + r * dcps;                                                           \
        if (zh) {                                                                                             \
            const real *z = zh + r * zhs;                                                                     \
            real *kr = kept + r * ks;                                                                         \
            for (long j = 0; j < H; j++) { kr[j] = d[j] * z[j]; d[j] -= kr[j]; }                              \
        }                                                                                                     \
        real *mi = m, *mf = m + H, *mg = m + 2 * H, *mo = m + 3 * H;                                          \
        if (lcw) {                                                                                            \
            real *u = du + r * dus;                                                                           \
            for (long j = 0; j < H; j++) u[j] = d[j] * q[j];                                                  \
            const real *x = ct + r * cts, *w = lcw;                                                           \
            real mc = mean_c[r], sc = rstd_c[r], ca, cc;                                                      \
            ln_coefficients_##sfx(u, x, w, mc, sc, H, &ca, &cc, gw_c, gb_c);                                  \
            for (long j = 0; j < H; j++) {                                                                    \
                real fut = zcr ? cp[j] * (1 - zcr[j]) : c1[j];                                                \
                real dc = sc * (u[j] * w[j] - ca - (x[j] - mc) * cc) + fut;                                   \
                mi[j] *= dc; mf[j] *= dc; mg[j] *= dc;                                                        \
                cp[j] = zcr ? cp[j] * zcr[j] + dc * fr[j] : dc * fr[j];                                       \
            }                                                                                                 \
        } else {                                                                                              \
            for (long j = 0; j < H; j++) {                                                                    \
                real fut = zcr ? cp[j] * (1 - zcr[j]) : c1[j];                                                \
                real dc = fut + d[j] * q[j];                                                                  \
                mi[j] *= dc; mf[j] *= dc; mg[j] *= dc;                                                        \
                cp[j] = zcr ? cp[j] * zcr[j] + dc * fr[j] : dc * fr[j];                                       \
            }                                                                                                 \
        }                                                                                                     \
        for (long j = 0; j < H; j++) mo[j] *= d[j];                                                           \
        if (A) ln_backward_##sfx(m, A + r * as, lnw, mean_h[r], rstd_h[r], 4 * H, dA + r * das, gw_h, gb_h);  \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* GRU forward step. G (b, 3H) [r z n]: the input parts in (r and z with the recurrent product added, when \
   A is NULL), the activated gates out (n as tanh). With A (b, 3H) the recurrent product: gh = LN(A)·lnw + \
   lnb (lnb carries b_hn on the n part), its moments to mean, rstd, and its n part to ghn; without, ghn   \
   holds that part (product + b_hn) already. n = tanh(G_n/2·2 + r·ghn) = 2σ(G_n + 2 r ghn) − 1;            \
   y = n + z (h_{t-1} − n). */                                                                                \
VECTORISED void gru_forward_step_##sfx(                                                                      \
    long b, long H, real *G, long gs, const real *A, long as, const real *lnw, const real *lnb, real *mean,  \
    real *rstd, real *ghn, long ghs, const real *hp, long hps, real *y, long ys, real eps) {                 \
    for (long r = 0; r < b; r++) {                                                                            \
        real *g = G + r * gs, *gn = ghn + r * ghs, *yr = y + r * ys;                                          \
        const real *h = hp + r * hps;                                                                         \
        if (A) {                                                                                              \
            const real *a = A + r * as;                                                                       \
            real m, s;                                                                                        \
            moments_##sfx(a, 3 * H, eps, &m, &s);                                                             \
            mean[r] = m;                                                                                      \
            rstd[r] = s;                                                                                      \
            for (long j = 0; j < 2 * H; j++) g[j] = sigmoid_##sfx(g[j] + (a[j] - m) * s * lnw[j] + lnb[j]);  \
            for (long j = 2 * H; j < 3 * H; j++) gn[j - 2 * H] = (a[j] - m) * s * lnw[j] + lnb[j];           \
        } else {                                                                                              \
            for (long j = 0; j < 2 * H; j++) g[j] = sigmoid_##sfx(g[j]);                                      \
        }                                                                                                     \
        real *rr = g, *z = g + H, *n = g + 2 * H;                                                             \
        for (long j = 0; j < H; j++) {                                                                        \
            real v = 2 * sigmoid_##sfx(n[j] + 2 * rr[j] * gn[j]) - 1;                                         \
            n[j] = v;                                                                                         \
            yr[j] = v + z[j] * (h[j] - v);                                                                    \
        }                                                                                                     \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* GRU backward step without layer norm. dh = carry + dy, the gradient at h_t; with zh, k = dh·z_h goes     \
   straight to h_{t-1} and dh·(1 − z_h) on. From the activated gates G (b, 3H) [r z n], the n gate's        \
   recurrent part ghn (product + b_hn) and h_{t-1} (hp), with p = dh (1 − z)(1 − n²): Q (b, 3H) = dGH, the   \
   gradients of the recurrent products, [p·ghn·r(1 − r), dh (h_{t-1} − n) z(1 − z), p·r]; E (b, H) = p/2,  \
   the gradient of n's input part (which arrives doubled); carry (rows H apart) = dh·z + k, to which the  \
   caller adds (m ∗) Q W_hh. */                                                                              \
VECTORISED void gru_backward_plain_step_##sfx(                                                               \
    long b, long H, real *carry, const real *dy, long dys, const real *G, long gs, const real *ghn, long ghs, \
    const real *hp, long hps, const real *zh, long zhs, real *Q, long qs, real *E, long es) {                \
    for (long r = 0; r < b; r++) {                                                                            \
        real *c = carry + r * H, *q = Q + r * qs, *e = E + r * es;                                            \
        const real *y = dy + r * dys, *g = G + r * gs, *gn = ghn + r * ghs, *h = hp + r * hps;                \
        const real *zk = zh ? zh + r * zhs : NULL;                                                            \
        for (long j = 0; j < H; j++) {                                                                        \
            real d = c[j] + y[j], kept = 0;                                                                   \
            if (zk) { kept = d * zk[j]; d -= kept; }                                                          \
            real rr = g[j], z = g[H + j], n = g[2 * H + j];                                                   \
            real p = d * (1 - z) * (1 - n * n);                                                               \
            q[j] = p * gn[j] * rr * (1 - rr);                                                                 \
            q[H + j] = d * (h[j] - n) * z * (1 - z);                                                          \
            q[2 * H + j] = p * rr;                                                                            \
            e[j] = p / 2;                                                                                     \
            c[j] = d * z + kept;                                                                              \
        }                                                                                                     \
    }                                                                                                         \
}                                                                                                             \
                                                                                                              \
/* GRU backward step with the recurrent norm: Q (b, 3H) the factors in, dGH = Q·dh̃ (each third) out, and    \
   dA = LN'(dGH) the gradient of the product before the norm; the norm's gain and bias gradients of these   \
   rows added to gw, gb (3H, double; NULL: not). */                                                          \
VECTORISED void gru_backward_step_##sfx(                                                                     \
    long b, long H, real *Q, long qs, const real *dht, long dhs, const real *A, long as, const real *lnw,    \
    const real *mean, const real *rstd, real *dA, long das, double *gw, double *gb) {                        \
    for (long r = 0; r < b; r++) {                                                                            \
        real *q = Q + r * qs;                                                                                 \
        const real *d = dht + r * dhs;                                                                        \
        for (long k = 0; k < 3; k++)                                                                          \
            for (long j = 0; j < H; j++) q[k * H + j] *= d[j];                                                \
        ln_backward_##sfx(q, A + r * as, lnw, mean[r], rstd[r], 3 * H, dA + r * das, gw, gb);                 \
    }                                                                                                         \
}

DEFINE_KERNELS(float, f32, expf, sqrtf, fabsf)
DEFINE_KERNELS(double, f64, exp, sqrt, fabs)
