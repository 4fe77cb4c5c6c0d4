/* kernels/conv_winograd_body.h: the vector code of conv_winograd.c, included there once per ISA
 * with VEC (the vector type), VL (its floats), OB (output channels per GEMM register block), NV
 * (OB / VL), the operations VLOAD, VSTORE, VADD, VSUB, VMUL, VFMADD, VFNMADD, VSET1, VZERO, TARGET
 * (the function attribute) and FN(name) (the name with the ISA's suffix) defined. Per lane both
 * copies do the same operations in the same order; only the vector width and the GEMM's register
 * block differ. No include guard: meant to be included more than once. */

/* ---- F(4x4, 3x3): 6x6 tiles, 36 points, 4x fewer multiplies than direct (Lavin and Gray):
 * B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 * G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 * A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. Each 2-D transform is the 1-D
 * one on the rows, then on the columns; a point's values are step floats apart. */
#define A4 6

/* v[0..2] (h = 0) or v[3..5] (h = 1) of v = B^T d: the input transform keeps half a tile in registers */
TARGET static inline void FN(in4_half)(const VEC *d, VEC *v, int h) {
  const VEC four = VSET1(4.0f), five = VSET1(5.0f), two = VSET1(2.0f);
  if (!h) {
    v[0] = VFMADD(four, d[0], VFNMADD(five, d[2], d[4]));
    v[1] = VFNMADD(four, VADD(d[1], d[2]), VADD(d[3], d[4]));
    v[2] = VFMADD(four, VSUB(d[1], d[2]), VSUB(d[4], d[3]));
  } else {
    v[0] = VFMADD(two, VSUB(d[3], d[1]), VSUB(d[4], d[2]));
    v[1] = VFMADD(two, VSUB(d[1], d[3]), VSUB(d[4], d[2]));
    v[2] = VFMADD(four, d[1], VFNMADD(five, d[3], d[5]));
  }
}

TARGET static inline void FN(in4)(const VEC *d, VEC *v) { /* v = B^T d */
  FN(in4_half)(d, v, 0);
  FN(in4_half)(d, v + 3, 1);
}

TARGET static inline void FN(out4)(const VEC *m, VEC *y) { /* y = A^T m */
  const VEC a = VADD(m[1], m[2]), b = VSUB(m[1], m[2]);
  const VEC c = VADD(m[3], m[4]), e = VSUB(m[3], m[4]);
  y[0] = VADD(VADD(m[0], a), c);
  y[1] = VFMADD(VSET1(2.0f), e, b);
  y[2] = VFMADD(VSET1(4.0f), c, a);
  y[3] = VADD(VFMADD(VSET1(8.0f), e, b), m[5]);
}

TARGET static inline void FN(filter4)(const VEC *g, VEC *u) { /* u = G g */
  const VEC s = VADD(g[0], g[2]), sixth = VSET1(-1.0f / 6.0f);
  const VEC p = VFMADD(VSET1(1.0f / 24.0f), g[0], VMUL(VSET1(1.0f / 6.0f), g[2]));
  const VEC q = VMUL(VSET1(1.0f / 12.0f), g[1]);
  u[0] = VMUL(VSET1(0.25f), g[0]);
  u[1] = VMUL(sixth, VADD(s, g[1]));
  u[2] = VMUL(sixth, VSUB(s, g[1]));
  u[3] = VADD(p, q);
  u[4] = VSUB(p, q);
  u[5] = g[2];
}

TARGET static inline void FN(dy4)(const VEC *a, VEC *z) { /* z = A a (A = (A^T)^T) */
  const VEC p = VADD(a[0], a[2]), q = VADD(a[1], a[3]);
  const VEC r = VFMADD(VSET1(4.0f), a[2], a[0]);
  const VEC s = VFMADD(VSET1(8.0f), a[3], VADD(a[1], a[1]));
  z[0] = a[0];
  z[1] = VADD(p, q);
  z[2] = VSUB(p, q);
  z[3] = VADD(r, s);
  z[4] = VSUB(r, s);
  z[5] = a[3];
}

TARGET static inline void FN(back4)(const VEC *u, VEC *w) { /* w = G^T u */
  const VEC a = VADD(u[1], u[2]), b = VSUB(u[2], u[1]);
  const VEC c = VADD(u[3], u[4]), e = VSUB(u[3], u[4]);
  const VEC sixth = VSET1(1.0f / 6.0f);
  w[0] = VFMADD(VSET1(1.0f / 24.0f), c, VFNMADD(sixth, a, VMUL(VSET1(0.25f), u[0])));
  w[1] = VFMADD(VSET1(1.0f / 12.0f), e, VMUL(sixth, b));
  w[2] = VADD(VMUL(sixth, VSUB(c, a)), u[5]);
}

/* One tile's V = B^T d B from its 6 x 6 patch at p (rows rs floats apart, pixels ps apart) into v
 * (points step floats apart). d B a half of its columns at a time (18 vectors in registers; all 36
 * spilled), then B^T of those columns: each point stored once (writing d B to V and transforming
 * it in place stored every point twice, and the stores were the bound). */
TARGET static inline __attribute__((always_inline)) void FN(input4_tile)(const float *p, int64_t rs, int64_t ps,
                                                                         float *v, int64_t step) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; h++) {
    VEC r[A4][3];
#pragma GCC unroll 6
    for (int i = 0; i < A4; i++) {
      VEC row[A4];
#pragma GCC unroll 6
      for (int j = 0; j < A4; j++) row[j] = VLOAD(p + i * rs + j * ps);
      FN(in4_half)(row, r[i], h);
    }
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++) {
      VEC col[A4], o[A4];
#pragma GCC unroll 6
      for (int i = 0; i < A4; i++) col[i] = r[i][j];
      FN(in4)(col, o);
#pragma GCC unroll 6
      for (int i = 0; i < A4; i++) VSTORE(v + (A4 * i + 3 * h + j) * step, o[i]);
    }
  }
}

TARGET static void FN(transform_input4)(const wconv *d, const float *xh, float *V) {
  const int64_t Cv = d->Cv, Wp = d->Wp, step = Cv, ts = vts(d);
  /* channel groups outside: a group's lines of the image (20 KB on 14x14) stay in L1 while the
   * overlapping patches read them */
  for (int64_t c = 0; c < Cv; c += VL)
    for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
      for (int64_t tx = 0; tx < d->TW; tx++, t++) {
        const float *p = xh + ((4 * ty) * Wp + 4 * tx) * Cv + c;
        FN(input4_tile)(p, Wp * Cv, Cv, V + t * ts + c, step);
      }
}

TARGET static void FN(transform_output4)(const wconv *d, const float *M, const float *bias, float *ob) {
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
      float *y0 = ob + ((4 * ty) * OW + 4 * tx) * OCp;
      for (int64_t o = 0; o < OCp; o += VL) {
        const float *m = M + t * ts + o;
        VEC s[4][A4], col[A4], y[4];
        for (int j = 0; j < A4; j++) { /* A^T M: column j */
          for (int i = 0; i < A4; i++) col[i] = VLOAD(m + (A4 * i + j) * step);
          FN(out4)(col, y);
          for (int p = 0; p < 4; p++) s[p][j] = y[p];
        }
        const VEC b = bias ? VLOAD(bias + o) : VZERO();
        for (int p = 0; p < rows; p++) {
          FN(out4)(s[p], y);
          for (int q = 0; q < cols; q++) VSTORE(y0 + (p * OW + q) * OCp + o, VADD(y[q], b));
        }
      }
    }
}

/* U[xi][c][o..o+VL-1] = (G g G^T)[xi] for VL output channels; g gathered as in transform_filters */
TARGET static void FN(transform_filters4)(const wconv *d, const float *tm, bool flip, float *U) {
  const int64_t C = d->C, OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  for (int64_t o = 0; o < OC; o += VL) {
    for (int64_t c = 0; c < C; c++) {
      VEC g[3][3], t[A4][3], col[3], u[A4];
      for (int k = 0; k < 9; k++) g[k / 3][k % 3] = VLOAD(tm + (c * 9 + (flip ? 8 - k : k)) * ld + o);
      for (int j = 0; j < 3; j++) { /* G g: column j */
        for (int i = 0; i < 3; i++) col[i] = g[i][j];
        FN(filter4)(col, u);
        for (int i = 0; i < A4; i++) t[i][j] = u[i];
      }
      float *dst = U + c * OCp + o;
      for (int i = 0; i < A4; i++) {
        FN(filter4)(t[i], u);
        for (int j = 0; j < A4; j++) VSTORE(dst + (A4 * i + j) * step, u[j]);
      }
    }
  }
}

/* One tile's Y = A dy A^T from its rows x cols corner of dy at g0 (rows rs floats apart, pixels cs
 * apart; the rest of the 4 x 4 block taken as zero) into y (points step floats apart) */
TARGET static inline __attribute__((always_inline)) void FN(dy4_tile)(const float *g0, int64_t rs, int64_t cs,
                                                                      int64_t rows, int64_t cols, float *y,
                                                                      int64_t step) {
  VEC a[4][4], z[A4][4], col[4], e[A4];
  for (int p = 0; p < 4; p++)
    for (int q = 0; q < 4; q++) a[p][q] = p < rows && q < cols ? VLOAD(g0 + p * rs + q * cs) : VZERO();
  for (int q = 0; q < 4; q++) { /* A dy: column q */
    for (int p = 0; p < 4; p++) col[p] = a[p][q];
    FN(dy4)(col, e);
    for (int i = 0; i < A4; i++) z[i][q] = e[i];
  }
  for (int i = 0; i < A4; i++) { /* (A dy) A^T: row i */
    FN(dy4)(z[i], e);
    for (int j = 0; j < A4; j++) VSTORE(y + (A4 * i + j) * step, e[j]);
  }
}

TARGET static void FN(transform_dy4)(const wconv *d, const float *gt, int64_t rs, float *Y) {
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
      const float *g0 = gt + (4 * ty) * rs + 4 * tx * OCp;
      for (int64_t o = 0; o < OCp; o += VL) FN(dy4_tile)(g0 + o, rs, OCp, rows, cols, Y + t * ts + o, step);
    }
}

TARGET static void FN(filters_back4)(const wconv *d, const float *dU, float *tm) {
  const int64_t OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  for (int64_t o = 0; o < OC; o += VL) {
    for (int64_t c = 0; c < d->C; c++) {
      const float *u = dU + c * OCp + o;
      VEC t[3][A4], col[A4], w[3];
      for (int j = 0; j < A4; j++) { /* G^T dU: column j */
        for (int i = 0; i < A4; i++) col[i] = VLOAD(u + (A4 * i + j) * step);
        FN(back4)(col, w);
        for (int i = 0; i < 3; i++) t[i][j] = w[i];
      }
      for (int i = 0; i < 3; i++) {
        FN(back4)(t[i], w);
        for (int j = 0; j < 3; j++) VSTORE(tm + (c * 9 + 3 * i + j) * ld + o, w[j]);
      }
    }
  }
}


/* The image's tiles' V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], on vectors of
 * VL channels: V[xi][t][c]. */
TARGET static void FN(transform_input)(const wconv *d, const float *xh, float *V) {
  if (d->m == 4) {
    FN(transform_input4)(d, xh, V);
    return;
  }
  const int64_t Cv = d->Cv, Wp = d->Wp;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++)
      for (int64_t c = 0; c < Cv; c += VL) {
        const float *p = xh + ((2 * ty) * Wp + 2 * tx) * Cv + c;
        VEC x[4][4], r[4][4];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) x[i][j] = VLOAD(p + (i * Wp + j) * Cv);
        for (int j = 0; j < 4; j++) {
          r[0][j] = VSUB(x[0][j], x[2][j]);
          r[1][j] = VADD(x[1][j], x[2][j]);
          r[2][j] = VSUB(x[2][j], x[1][j]);
          r[3][j] = VSUB(x[1][j], x[3][j]);
        }
        float *v = V + t * vts(d) + c;
        const int64_t step = Cv; /* from one point to the next */
        for (int i = 0; i < 4; i++) {
          VSTORE(v + (4 * i + 0) * step, VSUB(r[i][0], r[i][2]));
          VSTORE(v + (4 * i + 1) * step, VADD(r[i][1], r[i][2]));
          VSTORE(v + (4 * i + 2) * step, VSUB(r[i][2], r[i][1]));
          VSTORE(v + (4 * i + 3) * step, VSUB(r[i][1], r[i][3]));
        }
      }
}

/* The register tile of both GEMMs: out[i][0..OB-1] (rows i < n <= TR, ldo apart) = (add ? out : 0)
 * + sum over k < K of a[k*ak + 0..OB-1] * b[i*bi + k*bk]: TR x NV accumulators, per k NV vector
 * loads and n broadcasts for NV n FMAs. AVX-512: 6 x 64 channels in 24 of 32 registers (the
 * direct channel-vector kernel's tile); AVX2: 6 x 16 channels in 12 of 16, which leaves 2 for
 * the loads and 1 for the broadcast (6 x 32 would need 24 and spill). */
TARGET static inline __attribute__((always_inline)) void FN(tile)(const float *a, int64_t ak, const float *b,
                                                                  int64_t bi, int64_t bk, int64_t K, float *out,
                                                                  int64_t ldo, bool add, const int n) {
  VEC acc[TR][NV];
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < n)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[i][v] = VZERO();
  for (int64_t k = 0; k < K; k++, a += ak, b += bk) {
    VEC w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) w[v] = VLOAD(a + VL * v);
#pragma GCC unroll 6
    for (int i = 0; i < TR; i++)
      if (i < n) {
        const VEC x = VSET1(b[i * bi]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = VFMADD(w[v], x, acc[i][v]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < n)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) {
        float *o = out + i * ldo + VL * v;
        VSTORE(o, add ? VADD(VLOAD(o), acc[i][v]) : acc[i][v]);
      }
}

/* M[xi][t][o] = sum over c of V[xi][t][c] U[xi][c][o], for nt <= TR tiles from t0 and the OB
 * output channels from o0 */
TARGET static inline __attribute__((always_inline)) void FN(gemm_tile)(const wconv *d, const float *V, const float *U,
                                                                       float *M, int64_t t0, int64_t o0, const int nt) {
  FN(tile)(U + o0, d->OCp, V + t0 * vts(d), vts(d), 1, d->C, M + t0 * mts(d) + o0, mts(d), false, nt);
}

TARGET static void FN(gemms)(const wconv *d, const float *V, const float *U, float *M, int64_t T) {
  const int64_t tiles = (T + TR - 1) / TR, base = T / tiles, extra = T % tiles;
  for (int64_t xi = 0; xi < d->xi; xi++) {
    const float *v = V + xi * d->Cv, *u = U + xi * ustep(d);
    float *m = M + xi * d->OCp;
    for (int64_t o0 = 0; o0 < d->OCp; o0 += OB)
      for (int64_t k = 0, t0 = 0; k < tiles; k++) { /* blocks as even as they go */
        const int nt = (int)(base + (k < extra));
        switch (nt) {
          case 6: FN(gemm_tile)(d, v, u, m, t0, o0, 6); break;
          case 5: FN(gemm_tile)(d, v, u, m, t0, o0, 5); break;
          case 4: FN(gemm_tile)(d, v, u, m, t0, o0, 4); break;
          case 3: FN(gemm_tile)(d, v, u, m, t0, o0, 3); break;
          case 2: FN(gemm_tile)(d, v, u, m, t0, o0, 2); break;
          default: FN(gemm_tile)(d, v, u, m, t0, o0, 1); break;
        }
        t0 += nt;
      }
  }
}

/* Y = A^T M A + bias, A^T = [1 1 1 0; 0 1 -1 -1], into the (position, channel) buffer ob (rows
 * of OCp floats); the tiles' positions past the output's last row or column are dropped. */
TARGET static void FN(transform_output)(const wconv *d, const float *M, const float *bias, float *ob) {
  if (d->m == 4) {
    FN(transform_output4)(d, M, bias, ob);
    return;
  }
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const bool down = 2 * ty + 1 < d->OH, right = 2 * tx + 1 < OW;
      float *y0 = ob + ((2 * ty) * OW + 2 * tx) * OCp;
      for (int64_t o = 0; o < OCp; o += VL) {
        const float *m = M + t * ts + o;
        VEC s[2][4];
        for (int j = 0; j < 4; j++) {
          const VEC m0 = VLOAD(m + j * step), m1 = VLOAD(m + (4 + j) * step);
          const VEC m2 = VLOAD(m + (8 + j) * step), m3 = VLOAD(m + (12 + j) * step);
          s[0][j] = VADD(VADD(m0, m1), m2);
          s[1][j] = VSUB(VSUB(m1, m2), m3);
        }
        const VEC b = bias ? VLOAD(bias + o) : VZERO();
        for (int p = 0; p < 2; p++) {
          if (p && !down) break;
          float *y = y0 + p * OW * OCp + o;
          VSTORE(y, VADD(VADD(VADD(s[p][0], s[p][1]), s[p][2]), b));
          if (right)
            VSTORE(y + OCp, VADD(VSUB(VSUB(s[p][1], s[p][2]), s[p][3]), b));
        }
      }
    }
}

/* Image x (C, H, W) into its tiles' V (from V): channel-minor in xh inside a zero border (and zero
 * channels up to Cv), then B^T d B. The whole of xh is cleared first, not only its border:
 * clearing the border alone was 3% slower on a first-order MAML step, since memset's full-line
 * stores bring the interior's lines into cache without reading them, where ml__to_padded_hwc's own
 * stores would each fetch their line first. */
TARGET static void FN(image_tiles)(const wconv *d, float *xh, const float *x, float *V) {
  memset(xh, 0, image_floats(d) * sizeof(float));
  ml__to_padded_hwc(xh, d->Cv, d->Wp, d->ph, d->pw, x, d->C, d->H, d->W);
  FN(transform_input)(d, xh, V);
}


#if VL == 8
/* AVX2: the layout change fused into the input transform, 16 channels at a time. The padded image
 * of one group of 16 channels (xg: (Hp, Wp, 16), 20 KB on 14x14) is written by ml__to_padded_hwc
 * and read back by the transform while in L1, instead of the whole image (83 KB on 14x14) stored
 * to L2 and read back; xg's border is cleared once by the caller (x_tiles_begin) and stays zero,
 * as only the interior is rewritten: no memset per image. The planes of the next group are
 * prefetched while this one is transformed (their loads were L3-bound). Same arithmetic as
 * transform_input4: the same bits. */
#define XG 16
static size_t FN(xg_floats)(const wconv *d) { return (size_t)(d->Hp * d->Wp * XG); }

TARGET static void FN(x_tiles_begin)(const wconv *d, float *xg) {
  if (d->m == 4) memset(xg, 0, FN(xg_floats)(d) * sizeof(float));
}

/* transform_input4 for the VL channels at xg (rows of XG floats) into V (at the channels' offset);
 * meanwhile lines [0, pfl) of pf are prefetched, spread over the tiles */
TARGET static void FN(input4_group)(const wconv *d, const float *xg, float *V, const char *pf, int64_t pfl) {
  const int64_t Wp = d->Wp, step = d->Cv, ts = vts(d);
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      for (int64_t l = t * pfl / d->T, e = (t + 1) * pfl / d->T; l < e; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T0);
      const float *p = xg + ((4 * ty) * Wp + 4 * tx) * XG;
      FN(input4_tile)(p, Wp * XG, XG, V + t * ts, step);
    }
}

/* image x's tiles into V as image_tiles does, through xg (x_tiles_begin'd) */
TARGET static void FN(x_tiles)(const wconv *d, float *xg, const float *x, float *V) {
  if (d->m != 4) {
    FN(image_tiles)(d, xg, x, V);
    return;
  }
  const int64_t HW = d->H * d->W;
  for (int64_t c0 = 0; c0 < d->Cv; c0 += XG) {
    const int64_t nc = d->C - c0 < XG ? d->C - c0 : XG;
    /* next: the next group's planes, or the next image's first (harmless past the end: a prefetch) */
    const char *next = (const char *)(x + (c0 + nc) * HW);
    const int64_t lines = (XG * HW * (int64_t)sizeof(float) + 63) / 64;
    ml__to_padded_hwc(xg, XG, d->Wp, d->ph, d->pw, x + c0 * HW, nc, d->H, d->W);
    FN(input4_group)(d, xg, V + c0, next, lines / 2);
    FN(input4_group)(d, xg + VL, V + c0 + VL, next + 64 * (lines / 2), lines - lines / 2);
  }
}

/* Y = A^T M A + bias into the image's output planes out (d->OC, P) as transform_output4 and
 * ml__transpose16 do, 16 channels at a time: each group's (position, 16 channels) block (ob:
 * 12 KB on 14x14) is transposed while in L1, instead of the whole (P, OCp) buffer (50 KB) stored
 * and read back from L2; every line of M is still read once. The same arithmetic: the same bits. */
TARGET static void FN(out_tiles)(const wconv *d, const float *M, const float *bias, float *ob, float *out) {
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW, P = d->OH * OW;
  for (int64_t o0 = 0; o0 < d->OC; o0 += XG) {
    for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
      for (int64_t tx = 0; tx < d->TW; tx++, t++) {
        const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
        float *y0 = ob + ((4 * ty) * OW + 4 * tx) * XG;
        for (int64_t h = 0; h < XG; h += VL) {
          const float *m = M + t * ts + o0 + h;
          VEC s[4][A4], col[A4], y[4];
          for (int j = 0; j < A4; j++) { /* A^T M: column j */
            for (int i = 0; i < A4; i++) col[i] = VLOAD(m + (A4 * i + j) * step);
            FN(out4)(col, y);
            for (int p = 0; p < 4; p++) s[p][j] = y[p];
          }
          const VEC b = bias ? VLOAD(bias + o0 + h) : VZERO();
          for (int p = 0; p < rows; p++) {
            FN(out4)(s[p], y);
            for (int q = 0; q < cols; q++) VSTORE(y0 + (p * OW + q) * XG + h, VADD(y[q], b));
          }
        }
      }
    ml__transpose16(out + o0 * P, P, ob, XG, P, d->OC - o0 < XG ? d->OC - o0 : XG, P);
  }
}
#undef XG
#endif


/* A group of images (one work item): each image into V, one GEMM pass over all their tiles, then
 * each image's output */
TARGET static void FN(group_item)(int64_t k, int worker, void *vj) {
  const wjob *j = vj;
  const wconv *d = j->d;
  float *xh = j->work + (size_t)worker * worker_floats(d), *V = xh + image_floats(d), *M = V + v_floats(d);
  float *ob = M + m_floats(d);
  const int64_t nb = d->TS / d->T, b0 = k * nb, n = d->B - b0 < nb ? d->B - b0 : nb, P = d->OH * d->OW;
#if VL == 8
  FN(x_tiles_begin)(d, xh);
  for (int64_t i = 0; i < n; i++)
    FN(x_tiles)(d, xh, j->in + (b0 + i) * d->C * d->H * d->W, V + i * d->T * vts(d));
#else
  for (int64_t i = 0; i < n; i++)
    FN(image_tiles)(d, xh, j->in + (b0 + i) * d->C * d->H * d->W, V + i * d->T * vts(d));
#endif
  FN(gemms)(d, V, j->U, M, n * d->T);
  for (int64_t i = 0; i < n; i++) {
#if VL == 8
    if (d->m == 4) {
      FN(out_tiles)(d, M + i * d->T * mts(d), j->bias, ob, j->out + (b0 + i) * d->OC * P);
      continue;
    }
#endif
    FN(transform_output)(d, M + i * d->T * mts(d), j->bias, ob);
    ml__transpose16(j->out + (b0 + i) * d->OC * P, P, ob, d->OCp, P, d->OC, P);
  }
}

/* U[xi][c][o..o+VL-1] for VL output channels at once, from the filters made tap-major in tm
 * (forward: w (OC, C, 3, 3); backward data: the flipped filters of w (C_in = d->OC, C_out = d->C),
 * taps reversed), transformed in vectors; U's columns up to OC rounded to 16 come from tm's zero
 * filters, those from there up to OCp are cleared */
TARGET static void FN(transform_filters)(const wconv *d, const float *w, bool flip, float *tm, float *U) {
  if (tm_ld(d) < d->OCp)
    for (int64_t xi = 0; xi < d->xi; xi++)
      for (int64_t c = 0; c < d->C; c++)
        memset(U + xi * ustep(d) + c * d->OCp + tm_ld(d), 0, (size_t)(d->OCp - tm_ld(d)) * sizeof(float));
  taps_major(d, w, flip, tm);
  if (d->m == 4) {
    FN(transform_filters4)(d, tm, flip, U);
    return;
  }
  const int64_t C = d->C, OC = d->OC, OCp = d->OCp, ld = tm_ld(d);
  const VEC half = VSET1(0.5f);
  for (int64_t o = 0; o < OC; o += VL) {
    for (int64_t c = 0; c < C; c++) {
      VEC g[9], t[4][3];
      for (int k = 0; k < 9; k++) g[k] = VLOAD(tm + (c * 9 + (flip ? 8 - k : k)) * ld + o);
      for (int j = 0; j < 3; j++) {
        t[0][j] = g[j];
        t[1][j] = VMUL(half, VADD(VADD(g[j], g[3 + j]), g[6 + j]));
        t[2][j] = VMUL(half, VADD(VSUB(g[j], g[3 + j]), g[6 + j]));
        t[3][j] = g[6 + j];
      }
      float *u = U + c * OCp + o;
      const int64_t step = ustep(d);
      for (int i = 0; i < 4; i++) {
        VSTORE(u + (4 * i + 0) * step, t[i][0]);
        VSTORE(u + (4 * i + 1) * step,
                         VMUL(half, VADD(VADD(t[i][0], t[i][1]), t[i][2])));
        VSTORE(u + (4 * i + 2) * step,
                         VMUL(half, VADD(VSUB(t[i][0], t[i][1]), t[i][2])));
        VSTORE(u + (4 * i + 3) * step, t[i][2]);
      }
    }
  }
}


/* Y[xi][t][o] = (A dy_t A^T)[xi], A = [1 0; 1 1; 1 -1; 0 -1], from the image's output gradient
 * channel-minor in gt: position (y, x)'s OCp channels at y * rs + x * OCp */
TARGET static void FN(transform_dy)(const wconv *d, const float *gt, int64_t rs, float *Y) {
  if (d->m == 4) {
    FN(transform_dy4)(d, gt, rs, Y);
    return;
  }
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const bool down = 2 * ty + 1 < d->OH, right = 2 * tx + 1 < OW;
      const float *g0 = gt + (2 * ty) * rs + 2 * tx * OCp, *g1 = g0 + rs;
      for (int64_t o = 0; o < OCp; o += VL) {
        const VEC zero = VZERO();
        const VEC a = VLOAD(g0 + o), b = right ? VLOAD(g0 + OCp + o) : zero;
        const VEC c = down ? VLOAD(g1 + o) : zero;
        const VEC e = down && right ? VLOAD(g1 + OCp + o) : zero;
        VEC z[4][2] = {{a, b},
                          {VADD(a, c), VADD(b, e)},
                          {VSUB(a, c), VSUB(b, e)},
                          {VSUB(zero, c), VSUB(zero, e)}};
        float *y = Y + t * ts + o;
        for (int k = 0; k < 4; k++) {
          VSTORE(y + (4 * k + 0) * step, z[k][0]);
          VSTORE(y + (4 * k + 1) * step, VADD(z[k][0], z[k][1]));
          VSTORE(y + (4 * k + 2) * step, VSUB(z[k][0], z[k][1]));
          VSTORE(y + (4 * k + 3) * step, VSUB(zero, z[k][1]));
        }
      }
    }
}

/* dU[c][o] += sum over the tiles of V[t][c] Y[t][o] for nc <= TR channels from c0 and the OB
 * output channels from o0 (one point; tiles of one or several images) */
TARGET static inline __attribute__((always_inline)) void FN(weight_tile)(const wconv *d, const float *V, const float *Y,
                                                                         float *dU, int64_t c0, int64_t o0,
                                                                         int64_t tiles, const int nc) {
  FN(tile)(Y + o0, mts(d), V + c0, 1, vts(d), tiles, dU + c0 * d->OCp + o0, d->OCp, true, nc);
}

TARGET static void FN(weight_gemms)(const wconv *d, const float *V, const float *Y, float *dU, int64_t tiles) {
  for (int64_t xi = 0; xi < d->xi; xi++) {
    const float *v = V + xi * d->Cv, *y = Y + xi * d->OCp;
    float *u = dU + xi * ustep(d);
    for (int64_t o0 = 0; o0 < d->OCp; o0 += OB)
      for (int64_t c0 = 0; c0 < d->C; c0 += TR) {
        switch (d->C - c0 < TR ? d->C - c0 : TR) {
          case 6: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 6); break;
          case 5: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 5); break;
          case 4: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 4); break;
          case 3: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 3); break;
          case 2: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 2); break;
          default: FN(weight_tile)(d, v, y, u, c0, o0, tiles, 1); break;
        }
      }
  }
}

/* per output channel, the sum of the image's output gradient (gt as transform_dy reads it), in
 * position order, added to db */
TARGET static void FN(bias_sums)(const wconv *d, const float *gt, int64_t rs, float *db) {
  const int64_t OCp = d->OCp;
  for (int64_t o = 0; o < d->OC; o += VL) {
    VEC s = VZERO();
    for (int64_t y = 0; y < d->OH; y++)
      for (int64_t x = 0; x < d->OW; x++) s = VADD(s, VLOAD(gt + y * rs + x * OCp + o));
    float f[VL];
    VSTORE(f, s);
    for (int64_t k = 0; k < VL && o + k < d->OC; k++) db[o + k] += f[k];
  }
}

/* dw = G^T dU G, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1], for VL output channels at once,
 * scattered to dw[o][c0 + c][k] (dw's channel count C) */
TARGET static void FN(filters_back)(const wconv *d, int64_t C, int64_t c0, const float *dU, float *tm, float *dw) {
  if (d->m == 4) {
    FN(filters_back4)(d, dU, tm);
    taps_back(d, C, c0, tm, dw);
    return;
  }
  const int64_t OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  const VEC half = VSET1(0.5f);
  for (int64_t o = 0; o < OC; o += VL) {
    for (int64_t c = 0; c < d->C; c++) {
      const float *u = dU + c * OCp + o;
      VEC t[3][4];
      for (int j = 0; j < 4; j++) {
        const VEC u0 = VLOAD(u + j * step), u1 = VLOAD(u + (4 + j) * step);
        const VEC u2 = VLOAD(u + (8 + j) * step), u3 = VLOAD(u + (12 + j) * step);
        const VEC p = VMUL(half, VADD(u1, u2));
        t[0][j] = VADD(u0, p);
        t[1][j] = VMUL(half, VSUB(u1, u2));
        t[2][j] = VADD(p, u3);
      }
      float *g = tm + c * 9 * ld + o;
      for (int i = 0; i < 3; i++) {
        const VEC p = VMUL(half, VADD(t[i][1], t[i][2]));
        VSTORE(g + (3 * i + 0) * ld, VADD(t[i][0], p));
        VSTORE(g + (3 * i + 1) * ld, VMUL(half, VSUB(t[i][1], t[i][2])));
        VSTORE(g + (3 * i + 2) * ld, VADD(p, t[i][3]));
      }
    }
  }
  taps_back(d, C, c0, tm, dw);
}

/* ml__conv_winograd_weight_group */
static void FN(weight_group)(const ml_conv_shape *s, const float *in, const float *dout, int64_t first, int64_t last,
                             int64_t c0, int64_t c1, float *work, float *dw, float *db) {
  wconv full, d;
  weight_shape(s, &full);
  weight_batch(s, &full);
  d = full; /* the band: channels [c0, c1) */
  d.C = c1 - c0, d.Cv = (d.C + 15) & ~(int64_t)15;
  float *xh = work, *V = xh + image_floats(&full), *Y = V + v_floats(&full), *gt = Y + m_floats(&full);
  float *dU = gt + gt_floats(&full), *tm = dU + du_floats(&full);
  const int64_t HW = s->H * s->W, P = d.OH * d.OW, nb = d.TS / d.T;
  memset(dU, 0, du_floats(&d) * sizeof(float));
  if (db) memset(db, 0, (size_t)s->OC * sizeof(float));
#if VL == 8
  FN(x_tiles_begin)(&d, xh);
#endif
  for (int64_t b0 = first; b0 < last; b0 += nb) {
    const int64_t n = last - b0 < nb ? last - b0 : nb;
    for (int64_t i = 0; i < n; i++) { /* image b0 + i's tiles from tile i*T of V and Y */
#if VL == 8
      FN(x_tiles)(&d, xh, in + ((b0 + i) * s->C + c0) * HW, V + i * d.T * vts(&d));
#else
      FN(image_tiles)(&d, xh, in + ((b0 + i) * s->C + c0) * HW, V + i * d.T * vts(&d));
#endif
      ml__transpose16(gt, d.OCp, dout + (b0 + i) * s->OC * P, P, s->OC, P, d.OCp);
      if (db) FN(bias_sums)(&d, gt, d.OW * d.OCp, db);
      FN(transform_dy)(&d, gt, d.OW * d.OCp, Y + i * d.T * mts(&d));
    }
    FN(weight_gemms)(&d, V, Y, dU, n * d.T);
  }
  FN(filters_back)(&d, s->C, c0, dU, tm, dw);
}

#if VL == 8
/* AVX2, F(4x4): the output gradient of one image 16 channels at a time through yg ((Hp, Wp, 16)
 * of bd, border cleared once by the caller), as x_tiles: each group's backward-data V, bias sums
 * and weight-gradient Y from L1, instead of the whole channel-minor image stored and read back
 * from L2. Per channel vector the arithmetic and order of image_tiles, bias_sums and
 * transform_dy4: the same bits. */
TARGET static void FN(dy_tiles)(const wconv *bd, const wconv *d, float *yg, const float *dy, float *Vb, float *Y,
                                float *db) {
  const int64_t HW = bd->H * bd->W, rs = bd->Wp * 16, cs = 16, OW = d->OW, ts = mts(d), step = d->OCp;
  const float *g = yg + (bd->ph * bd->Wp + bd->pw) * 16; /* dy's (0, 0) */
  for (int64_t c0 = 0; c0 < bd->Cv; c0 += 16) {
    const int64_t nc = bd->C - c0 < 16 ? bd->C - c0 : 16;
    const char *next = (const char *)(dy + (c0 + nc) * HW);
    const int64_t lines = (16 * HW * (int64_t)sizeof(float) + 63) / 64;
    ml__to_padded_hwc(yg, 16, bd->Wp, bd->ph, bd->pw, dy + c0 * HW, nc, bd->H, bd->W);
    FN(input4_group)(bd, yg, Vb + c0, next, lines / 2);
    FN(input4_group)(bd, yg + VL, Vb + c0 + VL, next + 64 * (lines / 2), lines - lines / 2);
    for (int64_t h = 0; h < 16; h += VL) {
      const int64_t o = c0 + h;
      if (db && o < d->OC) { /* bias_sums */
        VEC sum = VZERO();
        for (int64_t y = 0; y < d->OH; y++)
          for (int64_t x = 0; x < OW; x++) sum = VADD(sum, VLOAD(g + y * rs + x * cs + h));
        float f[VL];
        VSTORE(f, sum);
        for (int64_t k = 0; k < VL && o + k < d->OC; k++) db[o + k] += f[k];
      }
      for (int64_t ty = 0, t = 0; ty < d->TH; ty++) /* transform_dy4 */
        for (int64_t tx = 0; tx < d->TW; tx++, t++) {
          const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
          FN(dy4_tile)(g + (4 * ty) * rs + 4 * tx * cs + h, rs, cs, rows, cols, Y + t * ts + o, step);
        }
    }
  }
}
#endif

/* ml__conv_winograd_backward_group */
TARGET static void FN(backward_group)(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                      int64_t last, float *work, float *din, float *dw, float *db) {
  wback k;
  wback_make(s, work, &k);
  const wconv *bd = &k.bd, *d = &k.d;
  const int64_t nb = d->TS / d->T, T = d->T, HW = s->H * s->W, P = d->OH * d->OW;
  const int64_t rs = bd->Wp * bd->Cv, inner = (bd->ph * bd->Wp + bd->pw) * bd->Cv; /* dy's (0, 0) */
  memset(k.dU, 0, du_floats(d) * sizeof(float));
  if (db) memset(db, 0, (size_t)s->OC * sizeof(float));
#if VL == 8
  FN(x_tiles_begin)(d, k.xh);
  /* dy_tiles' yg (F(4x4)) or the whole images' borders */
  memset(k.dyh, 0, (bd->m == 4 ? FN(xg_floats)(bd) : (size_t)nb * image_floats(bd)) * sizeof(float));
#endif
  for (int64_t b0 = first; b0 < last; b0 += nb) {
    const int64_t n = last - b0 < nb ? last - b0 : nb;
    for (int64_t i = 0; i < n; i++) {
      /* dy channel-minor, then, while it is in cache, the backward data's V and the weight
       * gradient's Y and bias sums; then x's V */
      float *yh = k.dyh + i * image_floats(bd);
#if VL == 8 /* the border cleared once, below: to_padded_hwc rewrites the whole interior */
      if (bd->m == 4) {
        FN(dy_tiles)(bd, d, k.dyh, dout + (b0 + i) * s->OC * P, k.Vb + i * T * vts(bd), k.Y + i * T * mts(d), db);
        FN(x_tiles)(d, k.xh, in + (b0 + i) * s->C * HW, k.V + i * T * vts(d));
        continue;
      }
      ml__to_padded_hwc(yh, bd->Cv, bd->Wp, bd->ph, bd->pw, dout + (b0 + i) * s->OC * P, bd->C, bd->H, bd->W);
      FN(transform_input)(bd, yh, k.Vb + i * T * vts(bd));
#else
      FN(image_tiles)(bd, yh, dout + (b0 + i) * s->OC * P, k.Vb + i * T * vts(bd));
#endif
      if (db) FN(bias_sums)(d, yh + inner, rs, db);
      FN(transform_dy)(d, yh + inner, rs, k.Y + i * T * mts(d));
#if VL == 8
      FN(x_tiles)(d, k.xh, in + (b0 + i) * s->C * HW, k.V + i * T * vts(d));
#else
      FN(image_tiles)(d, k.xh, in + (b0 + i) * s->C * HW, k.V + i * T * vts(d));
#endif
    }
    FN(gemms)(bd, k.Vb, k.U, k.Mb, n * T);
    for (int64_t i = 0; i < n; i++) {
#if VL == 8
      if (bd->m == 4) {
        FN(out_tiles)(bd, k.Mb + i * T * mts(bd), NULL, k.ob, din + (b0 + i) * s->C * HW);
        continue;
      }
#endif
      FN(transform_output)(bd, k.Mb + i * T * mts(bd), NULL, k.ob);
      ml__transpose16(din + (b0 + i) * s->C * HW, HW, k.ob, bd->OCp, HW, bd->OC, HW);
    }
    FN(weight_gemms)(d, k.V, k.Y, k.dU, n * T);
  }
  FN(filters_back)(d, s->C, 0, k.dU, k.tm, dw);
}

