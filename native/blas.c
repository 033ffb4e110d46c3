/*
 * sortednet_blas: single-precision GEMM from OpenBLAS for Float32Arrays owned by JavaScript
 * (including views into the wasm backend's heap), plus what the engine builds on it: bias +
 * activation over a GEMM's output, 2-D convolutions as im2col + GEMM (direct AVX2 kernels for narrow layers),
 * the sparse per-sample convolution of compact PAD layers, and training-mode batch norm. Every call is synchronous
 * and works on the caller's memory; nothing is kept after it returns. Used by src/engine/native/.
 *
 * Row-major throughout, as TensorFlow.js stores tensors:
 *   C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C,  op(X) = X or Xᵀ.
 * Every array's extent is checked against the leading dimensions before OpenBLAS touches it,
 * so a wrong size from JavaScript throws a RangeError instead of corrupting memory.
 */
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <node_api.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 17

#define CHECK(env, call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error((env), NULL, "sortednet_blas: N-API call failed: " #call); \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

typedef struct {
  float *data;
  size_t length; /* in elements */
} FloatView;

static bool arg_count(napi_env env, size_t got, size_t want, const char *fn) {
  if (got == want) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "%s: expected %zu arguments, got %zu", fn, want, got);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

/* A boolean, or a number read as C does (TensorFlow.js attributes are sometimes 0/1). */
static bool get_bool(napi_env env, napi_value v, const char *fn, const char *name, bool *out) {
  double d;
  if (napi_get_value_bool(env, v, out) == napi_ok) return true;
  if (napi_get_value_double(env, v, &d) == napi_ok) {
    *out = d != 0;
    return true;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s must be a boolean", fn, name);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

/* A non-negative integer that fits BLAS's int. */
static bool get_dim(napi_env env, napi_value v, const char *fn, const char *name, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 2147483647.0) || d != floor(d)) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s must be an integer in [0, 2^31)", fn, name);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_float(napi_env env, napi_value v, const char *fn, const char *name, float *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s must be a number", fn, name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *out = (float)d;
  return true;
}

/* A Float32Array; its byteOffset is honoured (napi returns the pointer to its first element). */
static bool get_f32(napi_env env, napi_value v, const char *fn, const char *name, FloatView *out) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float32_array) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s must be a Float32Array", fn, name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  out->data = (float *)data;
  out->length = length;
  return true;
}

/* Elements a rows×cols row-major matrix with leading dimension ld spans (0 when empty). */
static bool check_extent(napi_env env, const char *fn, const char *name, int64_t rows, int64_t cols, int64_t ld,
                         int64_t offset, size_t length) {
  char msg[240];
  if (ld < (cols > 1 ? cols : 1)) {
    snprintf(msg, sizeof msg, "%s: leading dimension of %s is %lld, must be >= %lld", fn, name, (long long)ld,
             (long long)(cols > 1 ? cols : 1));
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  int64_t need = rows == 0 || cols == 0 ? 0 : offset + (rows - 1) * ld + cols;
  if (need > (int64_t)length) {
    snprintf(msg, sizeof msg, "%s: %s needs %lld elements (%lld x %lld, ld %lld), the array has %zu", fn, name,
             (long long)need, (long long)rows, (long long)cols, (long long)ld, length);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  return true;
}

typedef struct {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  FloatView a, b, c;
} Gemm;

/* Reads (transA, transB, M, N, K, alpha, A, lda, [strideA,] B, ldb, [strideB,] beta, C, ldc, [strideC]). */
static bool read_gemm(napi_env env, napi_value *argv, const char *fn, bool strided, Gemm *g, int64_t strides[3]) {
  size_t i = 0;
  if (!get_bool(env, argv[i++], fn, "transA", &g->trans_a) || !get_bool(env, argv[i++], fn, "transB", &g->trans_b) ||
      !get_dim(env, argv[i++], fn, "M", &g->m) || !get_dim(env, argv[i++], fn, "N", &g->n) ||
      !get_dim(env, argv[i++], fn, "K", &g->k) || !get_float(env, argv[i++], fn, "alpha", &g->alpha) ||
      !get_f32(env, argv[i++], fn, "A", &g->a) || !get_dim(env, argv[i++], fn, "lda", &g->lda))
    return false;
  if (strided && !get_dim(env, argv[i++], fn, "strideA", &strides[0])) return false;
  if (!get_f32(env, argv[i++], fn, "B", &g->b) || !get_dim(env, argv[i++], fn, "ldb", &g->ldb)) return false;
  if (strided && !get_dim(env, argv[i++], fn, "strideB", &strides[1])) return false;
  if (!get_float(env, argv[i++], fn, "beta", &g->beta) || !get_f32(env, argv[i++], fn, "C", &g->c) ||
      !get_dim(env, argv[i++], fn, "ldc", &g->ldc))
    return false;
  if (strided && !get_dim(env, argv[i++], fn, "strideC", &strides[2])) return false;
  return true;
}

/* Checks batch `count` matrices starting `stride` elements apart fit each array. */
static bool check_gemm(napi_env env, const char *fn, const Gemm *g, const int64_t strides[3], int64_t count) {
  int64_t last = count > 0 ? count - 1 : 0;
  int64_t a_rows = g->trans_a ? g->k : g->m, a_cols = g->trans_a ? g->m : g->k;
  int64_t b_rows = g->trans_b ? g->n : g->k, b_cols = g->trans_b ? g->k : g->n;
  return check_extent(env, fn, "A", a_rows, a_cols, g->lda, last * strides[0], g->a.length) &&
         check_extent(env, fn, "B", b_rows, b_cols, g->ldb, last * strides[1], g->b.length) &&
         check_extent(env, fn, "C", g->m, g->n, g->ldc, last * strides[2], g->c.length);
}

/*
 * C = alpha·A·Bᵀ + beta·C for a few rows of A (M ≤ 8, or 12 with AVX-512): what decoding a language model runs,
 * one token (or a verification pass of a few) through weights stored [out, in]. OpenBLAS's sgemm packs B and wakes
 * its threads on every call, which at M = 1 costs several times the arithmetic (a 512×192 weight in cache: 28 µs
 * against 4 µs here; bench/small_gemm.ts). These kernels stream B once: each group of 4 rows of B stays in
 * registers while the rows of A go past it, so the work is bound by reading the weights.
 */

/* One element of C from its dot product s; beta = 0 does not read C (it may hold anything, NaN included). */
static inline void small_store(const Gemm *g, float *out, float s) {
  *out = g->beta == 0 ? g->alpha * s : g->alpha * s + g->beta * *out;
}

/* The sums of the 8 lanes of each of a, b, c, d, as one vector of 4: three adds for four sums. */
__attribute__((target("avx2,fma"))) static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d), abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/*
 * Rows [0, MB) of A against rows [0, nb) of B (nb ≤ 4): dot products along K, 8 lanes at a time; the 4 sums of a
 * row of C are reduced together (K is short here, a few hundred, so one reduction per sum would cost as much as
 * the products).
 */
#define SMALL_NT_BLOCK(MB)                                                                                     \
  __attribute__((target("avx2,fma"))) static void small_nt_##MB(const Gemm *g, const float *a, const float *b, \
                                                                float *c, int64_t nb) {                        \
    __m256 acc[MB][4];                                                                                         \
    for (int i = 0; i < MB; i++)                                                                               \
      for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();                                             \
    const int64_t K = g->k;                                                                                    \
    int64_t k = 0;                                                                                             \
    for (; k + 8 <= K; k += 8) {                                                                               \
      /* The rows of B 16 ahead: each is only a few cache lines long, too short for the hardware prefetcher. */  \
      for (int j = 16; j < 20; j++) _mm_prefetch((const char *)(b + j * g->ldb + k), _MM_HINT_T0);            \
      __m256 bv[4];                                                                                            \
      /* Past the last row of B, row 0 again: its sums are computed and dropped, the loop stays branch-free. */ \
      for (int j = 0; j < 4; j++) bv[j] = _mm256_loadu_ps(b + (j < nb ? j : 0) * g->ldb + k);                 \
      for (int i = 0; i < MB; i++) {                                                                           \
        const __m256 av = _mm256_loadu_ps(a + i * g->lda + k);                                                 \
        for (int j = 0; j < 4; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);                         \
      }                                                                                                        \
    }                                                                                                          \
    for (int i = 0; i < MB; i++) {                                                                             \
      float s[4];                                                                                              \
      _mm_storeu_ps(s, hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));                                     \
      for (int64_t j = 0; j < nb; j++) {                                                                       \
        for (int64_t kk = k; kk < K; kk++) s[j] += a[i * g->lda + kk] * b[j * g->ldb + kk];                    \
        small_store(g, c + i * g->ldc + j, s[j]);                                                              \
      }                                                                                                        \
    }                                                                                                          \
  }
SMALL_NT_BLOCK(1)
SMALL_NT_BLOCK(2)

/*
 * The same with AVX-512: 4 rows of A against 4 rows of B, 16 lanes at a time, the tail of K through a mask. The 32
 * registers hold all 16 sums, so each row of B loaded serves 4 rows of A: twice the products per load of the AVX2
 * kernel.
 */
/* One step of 16 lanes of K at k, each vector read by LOAD (the tail: a masked load): 4 rows of B against MB rows of A. */
#define SMALL_NT512_STEP(MB, LOAD)                                                                             \
  do {                                                                                                         \
    const __m512 v0 = LOAD(b0 + k), v1 = LOAD(b1 + k), v2 = LOAD(b2 + k), v3 = LOAD(b3 + k);                   \
    for (int i = 0; i < (MB); i++) {                                                                           \
      const __m512 av = LOAD(a + i * lda + k);                                                                 \
      acc[i][0] = _mm512_fmadd_ps(av, v0, acc[i][0]);                                                          \
      acc[i][1] = _mm512_fmadd_ps(av, v1, acc[i][1]);                                                          \
      acc[i][2] = _mm512_fmadd_ps(av, v2, acc[i][2]);                                                          \
      acc[i][3] = _mm512_fmadd_ps(av, v3, acc[i][3]);                                                          \
    }                                                                                                          \
  } while (0)
#define SMALL_LOAD(p) _mm512_loadu_ps(p)
#define SMALL_LOAD_TAIL(p) _mm512_maskz_loadu_ps(tail, p)

#define SMALL_NT512_BLOCK(MB)                                                                                  \
  __attribute__((target("avx512f"))) static void small_nt512_##MB(const Gemm *g, const float *a, const float *b, \
                                                                  float *c, int64_t nb) {                      \
    __m512 acc[MB][4];                                                                                         \
    for (int i = 0; i < MB; i++)                                                                               \
      for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();                                             \
    const int64_t K = g->k, lda = g->lda, ldb = g->ldb;                                                        \
    /* Past the last row of B, row 0 again: its sums are computed and dropped, the loop stays branch-free. */   \
    const float *b0 = b, *b1 = b + (nb > 1 ? ldb : 0), *b2 = b + (nb > 2 ? 2 * ldb : 0),                       \
                *b3 = b + (nb > 3 ? 3 * ldb : 0);                                                              \
    int64_t k = 0;                                                                                             \
    for (; k + 16 <= K; k += 16) {                                                                             \
      /* The rows of B 16 ahead: each is only a few cache lines long, too short for the hardware prefetcher. */  \
      for (int j = 16; j < 20; j++) _mm_prefetch((const char *)(b0 + j * ldb + k), _MM_HINT_T0);              \
      SMALL_NT512_STEP(MB, SMALL_LOAD);                                                                        \
    }                                                                                                          \
    if (k < K) {                                                                                               \
      const __mmask16 tail = (__mmask16)((1u << (K - k)) - 1);                                                 \
      SMALL_NT512_STEP(MB, SMALL_LOAD_TAIL);                                                                   \
    }                                                                                                          \
    for (int i = 0; i < MB; i++)                                                                               \
      for (int64_t j = 0; j < nb; j++) small_store(g, c + i * g->ldc + j, _mm512_reduce_add_ps(acc[i][j]));    \
  }
SMALL_NT512_BLOCK(1)
SMALL_NT512_BLOCK(2)
SMALL_NT512_BLOCK(3)
SMALL_NT512_BLOCK(4)

/* 0: off (SORTEDNET_SMALL_GEMM=0, or no AVX2/FMA); 1: the AVX2 kernel; 2: the AVX-512 one; -1: not yet decided. */
static int small_mode = -1;

static int small_best(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 2;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

static void small_nt(const Gemm *g, const float *a, const float *b, float *c) {
  for (int64_t n = 0; n < g->n; n += 4) {
    const int64_t nb = g->n - n < 4 ? g->n - n : 4;
    const float *bn = b + n * g->ldb;
    float *cn = c + n;
    int64_t m = 0;
    if (small_mode == 2) {
      for (; m + 4 <= g->m; m += 4) small_nt512_4(g, a + m * g->lda, bn, cn + m * g->ldc, nb);
      switch (g->m - m) {
        case 3: small_nt512_3(g, a + m * g->lda, bn, cn + m * g->ldc, nb); break;
        case 2: small_nt512_2(g, a + m * g->lda, bn, cn + m * g->ldc, nb); break;
        case 1: small_nt512_1(g, a + m * g->lda, bn, cn + m * g->ldc, nb); break;
        default: break;
      }
    } else {
      for (; m + 2 <= g->m; m += 2) small_nt_2(g, a + m * g->lda, bn, cn + m * g->ldc, nb);
      if (m < g->m) small_nt_1(g, a + m * g->lda, bn, cn + m * g->ldc, nb);
    }
  }
}

static bool gemm_goes_small(const Gemm *g) {
  if (small_mode == -1) {
    const char *e = getenv("SORTEDNET_SMALL_GEMM");
    small_mode = (e != NULL && e[0] == '0') ? 0 : small_best();
  }
  /* Beyond these, OpenBLAS's packed kernels win (bench/small_gemm.ts). */
  return small_mode > 0 && g->m <= (small_mode == 2 ? 12 : 8) && !g->trans_a && g->trans_b;
}

static void run_gemm(const Gemm *g, const float *a, const float *b, float *c) {
  if (g->m == 0 || g->n == 0) return;
  if (gemm_goes_small(g)) {
    small_nt(g, a, b, c);
    return;
  }
  cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
              (int)g->m, (int)g->n, (int)g->k, g->alpha, a, (int)g->lda, b, (int)g->ldb, g->beta, c, (int)g->ldc);
}

/*
 * Packed weights for a few rows of A (AVX-512). A weight W [rows, cols] stored [out, in] is copied once into panels
 * of 32 output rows, each transposed (cols × 32, zero past the last row) and 64-byte aligned, so that a product
 * loads 32 outputs' weights for one k as two vectors and multiplies them by a broadcast element of A: no horizontal
 * sums, and each output is one chain of fused multiply-adds in k order, whatever M or the output's position (so a
 * batch of rows gives each row the bits it would get alone). Any prefix W[:n, :k] reads the same panels: the first
 * ⌈n/32⌉ panels, the first k rows of each. The caller keeps the panels (src/engine/native/packed_weights.ts).
 */
#define PANEL 32

/* Floats a packed copy of a rows × cols weight needs: its panels, plus room to align them to 64 bytes. */
static int64_t packed_length(int64_t rows, int64_t cols) { return (rows + PANEL - 1) / PANEL * cols * PANEL + 16; }

/*
 * The panels start at the first 64-byte boundary in P; packWeight records that offset in P's last float, and
 * sgemmPacked refuses a P whose offset differs (a copy of the array, aligned differently).
 */
static int64_t packed_offset(const float *p) { return (int64_t)((64 - ((uintptr_t)p & 63)) & 63) / (int64_t)sizeof(float); }

typedef struct {
  int64_t m, n, k, lda, ldc, panel_stride;
  float alpha, beta;
} Packed;

/* Rows [0, MR) of A against NP panels (2·NP vectors of 16 outputs); the first n_out outputs are stored (masked). */
#define PACKED_BLOCK(MR, NP)                                                                                   \
  __attribute__((target("avx512f"))) static void packed_##MR##x##NP(const Packed *g, const float *a,           \
                                                                    const float *p, float *c, int64_t n_out) { \
    __m512 acc[MR][2 * NP];                                                                                    \
    for (int i = 0; i < MR; i++)                                                                               \
      for (int j = 0; j < 2 * NP; j++) acc[i][j] = _mm512_setzero_ps();                                        \
    for (int64_t k = 0; k < g->k; k++) {                                                                       \
      __m512 w[2 * NP];                                                                                        \
      for (int j = 0; j < NP; j++) {                                                                           \
        w[2 * j] = _mm512_load_ps(p + j * g->panel_stride + k * PANEL);                                       \
        w[2 * j + 1] = _mm512_load_ps(p + j * g->panel_stride + k * PANEL + 16);                              \
      }                                                                                                        \
      for (int i = 0; i < MR; i++) {                                                                           \
        const __m512 x = _mm512_set1_ps(a[i * g->lda + k]);                                                    \
        for (int j = 0; j < 2 * NP; j++) acc[i][j] = _mm512_fmadd_ps(x, w[j], acc[i][j]);                      \
      }                                                                                                        \
    }                                                                                                          \
    for (int j = 0; j < 2 * NP && 16 * j < n_out; j++) {                                                        \
      const __mmask16 keep = n_out - 16 * j >= 16 ? 0xFFFF : (__mmask16)((1u << (n_out - 16 * j)) - 1);          \
      for (int i = 0; i < MR; i++) {                                                                           \
        float *out = c + i * g->ldc + 16 * j;                                                                  \
        __m512 y = _mm512_mul_ps(_mm512_set1_ps(g->alpha), acc[i][j]);                                         \
        /* beta = 0 does not read C (it may hold anything, NaN included). */                                   \
        if (g->beta != 0)                                                                                      \
          y = _mm512_fmadd_ps(_mm512_set1_ps(g->beta), _mm512_maskz_loadu_ps(keep, out), y);                  \
        _mm512_mask_storeu_ps(out, keep, y);                                                                   \
      }                                                                                                        \
    }                                                                                                          \
  }
PACKED_BLOCK(1, 1)
PACKED_BLOCK(2, 1)
PACKED_BLOCK(3, 1)
PACKED_BLOCK(4, 1)
PACKED_BLOCK(5, 1)
PACKED_BLOCK(6, 1)
PACKED_BLOCK(7, 1)
PACKED_BLOCK(8, 1)
PACKED_BLOCK(9, 1)
PACKED_BLOCK(10, 1)
PACKED_BLOCK(11, 1)
PACKED_BLOCK(12, 1)
PACKED_BLOCK(1, 4)
PACKED_BLOCK(2, 4)
PACKED_BLOCK(3, 2)
PACKED_BLOCK(4, 2)

typedef void (*PackedFn)(const Packed *, const float *, const float *, float *, int64_t);
/* By rows: the one-panel kernel, and the widest that keeps at least 8 independent sums in 24 registers. */
static const PackedFn packed_one[13] = {NULL,       packed_1x1, packed_2x1, packed_3x1,  packed_4x1,
                                        packed_5x1, packed_6x1, packed_7x1, packed_8x1,  packed_9x1,
                                        packed_10x1, packed_11x1, packed_12x1};
static const PackedFn packed_wide[5] = {NULL, packed_1x4, packed_2x4, packed_3x2, packed_4x2};
static const int packed_wide_panels[5] = {0, 4, 4, 2, 2};

static void packed_gemm(const Packed *g, const float *a, const float *panels, float *c) {
  for (int64_t m = 0; m < g->m; m += 12) {
    const int64_t mr = g->m - m < 12 ? g->m - m : 12;
    const float *am = a + m * g->lda;
    float *cm = c + m * g->ldc;
    const int64_t count = (g->n + PANEL - 1) / PANEL;
    int64_t q = 0;
    if (mr <= 4) {
      const int np = packed_wide_panels[mr];
      for (; q + np <= count; q += np) {
        const int64_t left = g->n - q * PANEL;
        packed_wide[mr](g, am, panels + q * g->panel_stride, cm + q * PANEL, left < np * PANEL ? left : np * PANEL);
      }
    }
    for (; q < count; q++) {
      const int64_t left = g->n - q * PANEL;
      packed_one[mr](g, am, panels + q * g->panel_stride, cm + q * PANEL, left < PANEL ? left : PANEL);
    }
  }
}

static bool packed_available(void) {
  const Gemm probe = {.m = 1, .trans_b = true};
  gemm_goes_small(&probe); /* settles the default */
  return small_mode == 2;
}

static bool check_packed(napi_env env, const char *fn, const FloatView *p, int64_t rows, int64_t cols) {
  const int64_t need = packed_length(rows, cols);
  if ((int64_t)p->length < need) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s: P needs %lld floats for a %lld x %lld weight (packedLength), the array has %zu",
             fn, (long long)need, (long long)rows, (long long)cols, p->length);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  return true;
}

/* packWeight(W, rows, cols, ldw, P): P = W [rows, cols] (row stride ldw) as panels for sgemmPacked. */
static napi_value pack_weight(napi_env env, napi_callback_info info) {
  const char *fn = "packWeight";
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 5, fn)) return NULL;
  FloatView w, p;
  int64_t rows, cols, ldw;
  if (!get_f32(env, argv[0], fn, "W", &w) || !get_dim(env, argv[1], fn, "rows", &rows) ||
      !get_dim(env, argv[2], fn, "cols", &cols) || !get_dim(env, argv[3], fn, "ldw", &ldw) ||
      !get_f32(env, argv[4], fn, "P", &p) || !check_extent(env, fn, "W", rows, cols, ldw, 0, w.length) ||
      !check_packed(env, fn, &p, rows, cols))
    return NULL;
  float *panels = p.data + packed_offset(p.data);
  memset(panels, 0, (size_t)((rows + PANEL - 1) / PANEL * cols * PANEL) * sizeof(float));
  p.data[packed_length(rows, cols) - 1] = (float)packed_offset(p.data);
  for (int64_t r = 0; r < rows; r++) {
    float *dst = panels + r / PANEL * cols * PANEL + r % PANEL;
    const float *src = w.data + r * ldw;
    for (int64_t k = 0; k < cols; k++) dst[k * PANEL] = src[k];
  }
  return NULL;
}

/*
 * sgemmPacked(M, N, K, alpha, A, lda, P, rows, cols, beta, C, ldc): C[M, N] = alpha·A·W[:N, :K]ᵀ + beta·C, with
 * P the packed copy of W [rows, cols] (packWeight). Only where packedGemm() says so (AVX-512).
 */
static napi_value sgemm_packed(napi_env env, napi_callback_info info) {
  const char *fn = "sgemmPacked";
  size_t argc = 12;
  napi_value argv[12];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 12, fn)) return NULL;
  Packed g;
  FloatView a, p, c;
  int64_t rows, cols;
  if (!get_dim(env, argv[0], fn, "M", &g.m) || !get_dim(env, argv[1], fn, "N", &g.n) ||
      !get_dim(env, argv[2], fn, "K", &g.k) || !get_float(env, argv[3], fn, "alpha", &g.alpha) ||
      !get_f32(env, argv[4], fn, "A", &a) || !get_dim(env, argv[5], fn, "lda", &g.lda) ||
      !get_f32(env, argv[6], fn, "P", &p) || !get_dim(env, argv[7], fn, "rows", &rows) ||
      !get_dim(env, argv[8], fn, "cols", &cols) || !get_float(env, argv[9], fn, "beta", &g.beta) ||
      !get_f32(env, argv[10], fn, "C", &c) || !get_dim(env, argv[11], fn, "ldc", &g.ldc))
    return NULL;
  if (!packed_available()) {
    napi_throw_error(env, NULL, "sgemmPacked: needs AVX-512 and the small-GEMM kernels on (see packedGemm())");
    return NULL;
  }
  if (g.n > rows || g.k > cols) {
    char msg[160];
    snprintf(msg, sizeof msg, "sgemmPacked: W[:%lld, :%lld] does not fit a %lld x %lld weight", (long long)g.n,
             (long long)g.k, (long long)rows, (long long)cols);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  if (!check_extent(env, fn, "A", g.m, g.k, g.lda, 0, a.length) || !check_packed(env, fn, &p, rows, cols) ||
      !check_extent(env, fn, "C", g.m, g.n, g.ldc, 0, c.length))
    return NULL;
  if (p.data[packed_length(rows, cols) - 1] != (float)packed_offset(p.data)) {
    napi_throw_error(env, NULL, "sgemmPacked: P is not the array packWeight filled for this weight (a copy?): pack again");
    return NULL;
  }
  if (g.m == 0 || g.n == 0) return NULL;
  g.panel_stride = cols * PANEL;
  packed_gemm(&g, a.data, p.data + packed_offset(p.data), c.data);
  return NULL;
}

/* packedGemm(): whether sgemmPacked runs here (AVX-512, and smallGemm on with its best kernel). */
static napi_value packed_gemm_call(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(env, napi_get_boolean(env, packed_available(), &result));
  return result;
}

/* sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc): C is updated in place. */
static napi_value sgemm(napi_env env, napi_callback_info info) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 13, "sgemm")) return NULL;
  Gemm g;
  int64_t strides[3] = {0, 0, 0};
  if (!read_gemm(env, argv, "sgemm", false, &g, strides) || !check_gemm(env, "sgemm", &g, strides, 1)) return NULL;
  run_gemm(&g, g.a.data, g.b.data, g.c.data);
  return NULL;
}

/*
 * sgemmStridedBatched(transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
 * batch): matrix i of X starts at X + i * strideX; a stride of 0 broadcasts one matrix over the batch.
 */
static napi_value sgemm_strided_batched(napi_env env, napi_callback_info info) {
  const char *fn = "sgemmStridedBatched";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 17, fn)) return NULL;
  Gemm g;
  int64_t strides[3], batch;
  if (!read_gemm(env, argv, fn, true, &g, strides) || !get_dim(env, argv[16], fn, "batch", &batch) ||
      !check_gemm(env, fn, &g, strides, batch))
    return NULL;
  for (int64_t i = 0; i < batch; i++)
    run_gemm(&g, g.a.data + i * strides[0], g.b.data + i * strides[1], g.c.data + i * strides[2]);
  return NULL;
}

/* Activation codes shared with src/engine/native/blas.ts (the order of TensorFlow.js's FusableActivation). */
enum { ACT_LINEAR, ACT_RELU, ACT_RELU6, ACT_PRELU, ACT_LEAKYRELU, ACT_SIGMOID, ACT_ELU, ACT_COUNT };

/* Optional Float32Array argument: null/undefined leaves *out empty. */
static bool get_optional_f32(napi_env env, napi_value v, const char *fn, const char *name, FloatView *out) {
  napi_valuetype t;
  out->data = NULL;
  out->length = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  return t == napi_null || t == napi_undefined || get_f32(env, v, fn, name, out);
}

/*
 * biasActivation(C, rows, cols, bias | null, activation, leakyAlpha, preluWeights | null): in place over a
 * dense rows×cols block, C[r, c] = act(C[r, c] + bias[c]); bias and preluWeights have length cols or 1.
 */
static napi_value bias_activation(napi_env env, napi_callback_info info) {
  const char *fn = "biasActivation";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 7, fn)) return NULL;
  FloatView c, bias, prelu;
  int64_t rows, cols, act;
  float leaky;
  if (!get_f32(env, argv[0], fn, "C", &c) || !get_dim(env, argv[1], fn, "rows", &rows) ||
      !get_dim(env, argv[2], fn, "cols", &cols) || !get_optional_f32(env, argv[3], fn, "bias", &bias) ||
      !get_dim(env, argv[4], fn, "activation", &act) || !get_float(env, argv[5], fn, "leakyAlpha", &leaky) ||
      !get_optional_f32(env, argv[6], fn, "preluWeights", &prelu))
    return NULL;
  if (!check_extent(env, fn, "C", rows, cols, cols, 0, c.length)) return NULL;
  if ((bias.data != NULL && bias.length != (size_t)cols && bias.length != 1) ||
      (prelu.data != NULL && prelu.length != (size_t)cols && prelu.length != 1)) {
    napi_throw_range_error(env, NULL, "biasActivation: bias and preluWeights must have length cols or 1");
    return NULL;
  }
  if (act >= ACT_COUNT || (act == ACT_PRELU && prelu.data == NULL)) {
    napi_throw_range_error(env, NULL, "biasActivation: unknown activation, or prelu without weights");
    return NULL;
  }
  size_t prelu_step = prelu.length == 1 ? 0 : 1;
  float *v = c.data;
  const int64_t n = rows * cols;
  /* The bias row by row, then the elementwise activations over the whole buffer in one loop each: with few
     columns (a narrow convolution's output channels) per-row loops do not vectorise and cost more than the
     convolution's own stores. */
  if (bias.data != NULL && bias.length == 1) {
    const float b0 = bias.data[0];
    for (int64_t i = 0; i < n; i++) v[i] += b0;
  } else if (bias.data != NULL) {
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < cols; j++) v[r * cols + j] += bias.data[j];
  }
  switch (act) {
    case ACT_RELU:
      for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? v[i] : 0;
      break;
    case ACT_RELU6:
      for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? (v[i] < 6 ? v[i] : 6) : 0;
      break;
    case ACT_PRELU:
      for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
          float *e = v + r * cols + j;
          *e = *e >= 0 ? *e : prelu.data[j * prelu_step] * *e;
        }
      break;
    case ACT_LEAKYRELU:
      for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : leaky * v[i];
      break;
    case ACT_SIGMOID:
      for (int64_t i = 0; i < n; i++) v[i] = 1 / (1 + expf(-v[i]));
      break;
    case ACT_ELU:
      for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : expm1f(v[i]);
      break;
    default:
      break;
  }
  return NULL;
}

/*
 * 2-D convolution, NHWC input and output, HWIO filter, as GEMM on im2col columns. Output pixel p (over
 * batch, row, column) has the column vector cols[p, (kh·fw + kw)·inC + ci] = x[b, iy, ix, ci] (zero outside
 * the image), which lines up with the filter flattened to [fh·fw·inC, outC]. Columns are built for a chunk
 * of pixels at a time so the scratch buffer stays at most CHUNK_FLOATS.
 */
#define CHUNK_FLOATS (1 << 20)

typedef struct {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
} Conv;

/* geometry: Int32Array [batch, inH, inW, inC, outH, outW, outC, fH, fW, strideH, strideW, dilH, dilW, padTop, padLeft]. */
static bool get_conv(napi_env env, napi_value v, const char *fn, Conv *c) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_int32_array ||
      length != 15) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: geometry must be an Int32Array of 15 values", fn);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  const int32_t *g = data;
  *c = (Conv){g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14]};
  for (int i = 0; i < 13; i++)
    if (g[i] <= 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s: geometry value %d is %d, must be positive", fn, i, g[i]);
      napi_throw_range_error(env, NULL, msg);
      return false;
    }
  return true;
}

static bool check_length(napi_env env, const char *fn, const char *name, const FloatView *v, int64_t need) {
  if ((int64_t)v->length >= need) return true;
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s needs %lld elements, the array has %zu", fn, name, (long long)need, v->length);
  napi_throw_range_error(env, NULL, msg);
  return false;
}

/* 1×1 filter, stride 1, no padding: the input already is the column matrix. */
static bool conv_is_pointwise(const Conv *c) {
  return c->f_h == 1 && c->f_w == 1 && c->stride_h == 1 && c->stride_w == 1 && c->pad_top == 0 &&
         c->pad_left == 0 && c->out_h == c->in_h && c->out_w == c->in_w;
}

/*
 * Runs BODY for every pixel p in [p0, p1) and tap (kh, kw), with col (where the tap's inC values go in the
 * column matrix) and in (the input offset, or -1 in the padding). Coordinates are stepped, not divided out.
 */
#define FOR_EACH_TAP(c, p0, p1, BODY)                                                                        \
  do {                                                                                                       \
    const int64_t hw_ = (c)->out_h * (c)->out_w;                                                             \
    int64_t b = (p0) / hw_, oy = ((p0) % hw_) / (c)->out_w, ox = (p0) % (c)->out_w;                          \
    for (int64_t p = (p0); p < (p1); p++) {                                                                  \
      for (int64_t kh = 0; kh < (c)->f_h; kh++) {                                                            \
        int64_t iy = oy * (c)->stride_h - (c)->pad_top + kh * (c)->dil_h;                                    \
        for (int64_t kw = 0; kw < (c)->f_w; kw++) {                                                          \
          int64_t ix = ox * (c)->stride_w - (c)->pad_left + kw * (c)->dil_w;                                 \
          int64_t col = (p - (p0)) * K + (kh * (c)->f_w + kw) * (c)->in_c;                                   \
          int64_t in = iy >= 0 && iy < (c)->in_h && ix >= 0 && ix < (c)->in_w                                \
                           ? ((b * (c)->in_h + iy) * (c)->in_w + ix) * (c)->in_c                             \
                           : -1;                                                                             \
          BODY                                                                                               \
        }                                                                                                    \
      }                                                                                                      \
      if (++ox == (c)->out_w) {                                                                              \
        ox = 0;                                                                                              \
        if (++oy == (c)->out_h) {                                                                            \
          oy = 0;                                                                                            \
          b++;                                                                                               \
        }                                                                                                    \
      }                                                                                                      \
    }                                                                                                        \
  } while (0)

static void im2col(const Conv *c, const float *x, int64_t p0, int64_t p1, float *cols) {
  const int64_t K = c->f_h * c->f_w * c->in_c, C = c->in_c;
  /* Few channels: an inline copy beats a memcpy call per tap (in_c 4: 16 bytes a call). */
  if (C <= 16) {
    FOR_EACH_TAP(c, p0, p1, {
      float *restrict dst = cols + col;
      if (in >= 0) {
        const float *restrict src = x + in;
        for (int64_t ci = 0; ci < C; ci++) dst[ci] = src[ci];
      } else {
        for (int64_t ci = 0; ci < C; ci++) dst[ci] = 0;
      }
    });
    return;
  }
  FOR_EACH_TAP(c, p0, p1, {
    if (in >= 0)
      memcpy(cols + col, x + in, (size_t)C * sizeof(float));
    else
      memset(cols + col, 0, (size_t)C * sizeof(float));
  });
}

static void col2im_add(const Conv *c, const float *cols, int64_t p0, int64_t p1, float *dx) {
  const int64_t K = c->f_h * c->f_w * c->in_c;
  FOR_EACH_TAP(c, p0, p1, {
    if (in >= 0)
      for (int64_t ci = 0; ci < c->in_c; ci++) dx[in + ci] += cols[col + ci];
  });
}

enum { CONV_FORWARD, CONV_BACKPROP_INPUT, CONV_BACKPROP_FILTER };

/*
 * Forward convolution straight from NHWC for narrow layers (outC a multiple of 4 up to 48), AVX2 + FMA. With few
 * channels, im2col + GEMM is memory-bound (the columns are fH·fW times the input) and the GEMM is skinny
 * (N = outC). Here a block of output pixels of one row keeps all its output channels in registers while the
 * taps stream past: per tap and input channel, one broadcast per pixel and outC/8 weight vectors. Rows are
 * split over two threads. Used only where the CPU has AVX2 and FMA; measured against im2col in one process
 * by bench/conv_direct.ts.
 */
#include <pthread.h>

#define DIRECT_THREADS 2
#define DIRECT_MAX_OUT 48 /* wider layers keep im2col + GEMM */
/* A second thread costs ~0.1 ms to start and join: worth it from about this many multiply-adds (batch-1
   inference stays on one; bench/run.ts latency rows). */
#define DIRECT_THREAD_MACS (4 << 20)

typedef struct {
  const Conv *c;
  const float *x, *w, *zeros;
  float *y;
  int64_t row0, row1; /* output rows over batch × outH */
} DirectRows;

/* Whether every tap of output pixels [ox0, ox0 + px) reads inside the image's columns (no zero padding). */
static inline bool direct_inside(const Conv *c, int64_t ox0, int px) {
  const int64_t first = ox0 * c->stride_w - c->pad_left;
  return first >= 0 && first + (px - 1) * c->stride_w + (c->f_w - 1) * c->dil_w < c->in_w;
}

/*
 * The input pixel each of px output pixels reads at tap (iy, kw): evenly spaced inside the image, else checked one
 * by one, `zeros` (inC zeros) past an edge. Inlined into the blocks: the check is what costs with few channels.
 */
static inline __attribute__((always_inline)) void direct_sources(const Conv *c, const float *x, const float *zeros,
                                                                 int64_t b, int64_t iy, int64_t ox0, int64_t kw,
                                                                 int px, bool inside, const float **src) {
  const int64_t IC = c->in_c, row = (b * c->in_h + iy) * c->in_w;
  if (inside) {
    const float *s0 = x + (row + ox0 * c->stride_w - c->pad_left + kw * c->dil_w) * IC;
    const int64_t step = c->stride_w * IC;
    for (int i = 0; i < px; i++) src[i] = s0 + i * step;
    return;
  }
  for (int i = 0; i < px; i++) {
    const int64_t ix = (ox0 + i) * c->stride_w - c->pad_left + kw * c->dil_w;
    src[i] = ix >= 0 && ix < c->in_w ? x + (row + ix) * IC : zeros;
  }
}

/* PX consecutive output pixels of one row × NV vectors of 8 output channels. */
#define DIRECT_BLOCK(PX, NV)                                                                                   \
  __attribute__((target("avx2,fma"))) static void direct_block_##PX##_##NV(                                   \
      const Conv *c, const float *x, const float *w, const float *zeros, float *y, int64_t b, int64_t oy,     \
      int64_t ox0) {                                                                                           \
    const int64_t IC = c->in_c, OC = c->out_c;                                                                 \
    __m256 acc[PX][NV];                                                                                        \
    _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
        acc[i][v] = _mm256_setzero_ps();                                                                       \
    const bool inside = direct_inside(c, ox0, PX);                                                             \
    for (int64_t kh = 0; kh < c->f_h; kh++) {                                                                  \
      const int64_t iy = oy * c->stride_h - c->pad_top + kh * c->dil_h;                                        \
      if (iy < 0 || iy >= c->in_h) continue;                                                                   \
      for (int64_t kw = 0; kw < c->f_w; kw++) {                                                                \
        const float *src[PX];                                                                                  \
        direct_sources(c, x, zeros, b, iy, ox0, kw, PX, inside, src);                                         \
        const float *wt = w + (kh * c->f_w + kw) * IC * OC;                                                    \
        for (int64_t ci = 0; ci < IC; ci++) {                                                                  \
          __m256 wv[NV];                                                                                       \
          _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[v] = _mm256_loadu_ps(wt + ci * OC + 8 * v);  \
          _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) {                                               \
            const __m256 xv = _mm256_broadcast_ss(src[i] + ci);                                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(xv, wv[v], acc[i][v]); \
          }                                                                                                    \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
    float *out = y + ((b * c->out_h + oy) * c->out_w + ox0) * OC;                                              \
    _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
        _mm256_storeu_ps(out + i * OC + 8 * v, acc[i][v]);                                                     \
  }

/* Register budget (16 ymm): PX·NV accumulators + NV weights + 1 broadcast. */
DIRECT_BLOCK(8, 1)
DIRECT_BLOCK(4, 1)
DIRECT_BLOCK(1, 1)
DIRECT_BLOCK(4, 2)
DIRECT_BLOCK(2, 2)
DIRECT_BLOCK(1, 2)
DIRECT_BLOCK(3, 3)
DIRECT_BLOCK(1, 3)
DIRECT_BLOCK(2, 4)
DIRECT_BLOCK(1, 4)


/* outC 4: the same with one 128-bit vector per pixel, eight pixels a block. */
#define DIRECT_BLOCK4(PX)                                                                                      \
  __attribute__((target("avx2,fma"))) static void direct_block4_##PX(                                         \
      const Conv *c, const float *x, const float *w, const float *zeros, float *y, int64_t b, int64_t oy,     \
      int64_t ox0) {                                                                                           \
    const int64_t IC = c->in_c, OC = c->out_c;                                                                 \
    __m128 acc[PX];                                                                                            \
    _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) acc[i] = _mm_setzero_ps();                            \
    const bool inside = direct_inside(c, ox0, PX);                                                             \
    for (int64_t kh = 0; kh < c->f_h; kh++) {                                                                  \
      const int64_t iy = oy * c->stride_h - c->pad_top + kh * c->dil_h;                                        \
      if (iy < 0 || iy >= c->in_h) continue;                                                                   \
      for (int64_t kw = 0; kw < c->f_w; kw++) {                                                                \
        const float *src[PX];                                                                                  \
        direct_sources(c, x, zeros, b, iy, ox0, kw, PX, inside, src);                                         \
        const float *wt = w + (kh * c->f_w + kw) * IC * OC;                                                    \
        for (int64_t ci = 0; ci < IC; ci++) {                                                                  \
          const __m128 wv = _mm_loadu_ps(wt + ci * OC);                                                        \
          _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) acc[i] =                                        \
              _mm_fmadd_ps(_mm_broadcast_ss(src[i] + ci), wv, acc[i]);                                         \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
    float *out = y + ((b * c->out_h + oy) * c->out_w + ox0) * OC;                                              \
    _Pragma("GCC unroll 8") for (int i = 0; i < PX; i++) _mm_storeu_ps(out + i * OC, acc[i]);                  \
  }
DIRECT_BLOCK4(8)
DIRECT_BLOCK4(4)
DIRECT_BLOCK4(1)

typedef void (*DirectBlockFn)(const Conv *, const float *, const float *, const float *, float *, int64_t, int64_t,
                              int64_t);

/*
 * Output channels go in groups of up to 32 (then 8·k, then a last 4), each a pass over the input with its slice
 * of the filter: w and y are offset by the group's first channel, strides stay outC.
 */
static int64_t channel_group(int64_t remaining) {
  return remaining >= 32 ? 32 : remaining >= 8 ? remaining / 8 * 8 : remaining;
}

static void *direct_rows(void *arg) {
  const DirectRows *t = arg;
  const Conv *c = t->c;
  static const DirectBlockFn wide[] = {direct_block4_8, direct_block_8_1, direct_block_4_2, direct_block_3_3,
                                       direct_block_2_4};
  static const DirectBlockFn one[] = {direct_block4_1, direct_block_1_1, direct_block_1_2, direct_block_1_3,
                                      direct_block_1_4};
  /* Half-width blocks for a row's end (none where the block is already narrow). */
  static const DirectBlockFn half[] = {direct_block4_4, direct_block_4_1, direct_block_2_2, NULL, NULL};
  static const int64_t px[] = {8, 8, 4, 3, 2};
  for (int64_t co = 0; co < c->out_c;) {
    const int64_t g = channel_group(c->out_c - co);
    const int k = g == 4 ? 0 : (int)(g / 8);
    const float *w = t->w + co;
    float *y = t->y + co;
    for (int64_t r = t->row0; r < t->row1; r++) {
      const int64_t b = r / c->out_h, oy = r % c->out_h, W = c->out_w;
      int64_t ox = 0;
      for (; ox + px[k] <= W; ox += px[k]) wide[k](c, t->x, w, t->zeros, y, b, oy, ox);
      if (half[k] != NULL && ox + px[k] / 2 <= W) {
        half[k](c, t->x, w, t->zeros, y, b, oy, ox);
        ox += px[k] / 2;
      }
      /* The rest of the row as one block ending at its last pixel, overlapping pixels already written (they
         are written again with the same values): one pixel at a time, each output is a chain of dependent
         multiply-adds, several times slower per pixel than a block's independent chains. */
      if (ox < W && ox > 0 && W >= px[k] / 2 && half[k] != NULL) {
        half[k](c, t->x, w, t->zeros, y, b, oy, W - px[k] / 2);
        ox = W;
      }
      for (; ox < W; ox++) one[k](c, t->x, w, t->zeros, y, b, oy, ox);
    }
    co += g;
  }
  return NULL;
}

/* -1: not yet decided; 0: off (SORTEDNET_CONV_DIRECT=0, or no AVX2/FMA); 1: on. convDirect() may switch it. */
static int direct_mode = -1;

static bool direct_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static bool conv_goes_direct(const Conv *c) {
  if (direct_mode == -1) {
    const char *e = getenv("SORTEDNET_CONV_DIRECT");
    direct_mode = (e != NULL && e[0] == '0') ? 0 : direct_available();
  }
  return direct_mode == 1 && c->out_c % 4 == 0 && c->out_c <= DIRECT_MAX_OUT && c->in_c <= 64;
}

/*
 * Runs fn on tasks[0..n) (each `size` bytes apart): task 0 on the calling thread, the others on threads of
 * their own, or here too when no thread can be had.
 */
static void run_tasks(void *(*fn)(void *), void *tasks, size_t size, int n) {
  pthread_t threads[DIRECT_THREADS];
  bool started[DIRECT_THREADS] = {false};
  for (int i = 1; i < n; i++) started[i] = pthread_create(&threads[i], NULL, fn, (char *)tasks + i * size) == 0;
  fn(tasks);
  for (int i = 1; i < n; i++) {
    if (started[i])
      pthread_join(threads[i], NULL);
    else
      fn((char *)tasks + i * size);
  }
}

/* False when out of memory. */
static bool conv_forward_direct(const Conv *c, const float *x, const float *w, float *y) {
  float *zeros = calloc((size_t)c->in_c, sizeof(float));
  if (zeros == NULL) return false;
  const int64_t rows = c->batch * c->out_h;
  const int64_t macs = c->batch * c->out_h * c->out_w * c->f_h * c->f_w * c->in_c * c->out_c;
  const int n = rows >= 2 * DIRECT_THREADS && macs >= DIRECT_THREAD_MACS ? DIRECT_THREADS : 1;
  DirectRows tasks[DIRECT_THREADS];
  for (int i = 0; i < n; i++) tasks[i] = (DirectRows){c, x, w, zeros, y, rows * i / n, rows * (i + 1) / n};
  run_tasks(direct_rows, tasks, sizeof tasks[0], n);
  free(zeros);
  return true;
}

/*
 * The im2col buffer, kept between calls (one per thread: worker threads may call in parallel), so a call does
 * not mmap and fault in megabytes of fresh pages. (Side by side in one process it measured within noise of a
 * buffer per call; it is kept because it cannot be slower.)
 */
static _Thread_local float *scratch = NULL;
static _Thread_local size_t scratch_size = 0;

static float *scratch_floats(size_t n) {
  if (n > scratch_size) {
    float *grown = realloc(scratch, n * sizeof(float));
    if (grown == NULL) return NULL;
    scratch = grown;
    scratch_size = n;
  }
  return scratch;
}


/*
 * The input gradient of a stride-1 convolution is itself a forward convolution: of dy, with the filter turned
 * 180° and its channel axes swapped, padded by (f − 1)·dilation − pad. So narrow layers (inC 8–32) reuse the
 * direct forward path.
 */
static bool conv_backprop_input_goes_direct(const Conv *c) {
  const Conv t = {.in_c = c->out_c, .out_c = c->in_c};
  return c->stride_h == 1 && c->stride_w == 1 && conv_goes_direct(&t);
}

/* False when out of memory. */
static bool conv_backprop_input_direct(const Conv *c, const float *dy, const float *w, float *dx) {
  const int64_t IC = c->in_c, OC = c->out_c, taps = c->f_h * c->f_w;
  float *wt = malloc((size_t)(taps * IC * OC) * sizeof(float));
  if (wt == NULL) return false;
  for (int64_t kh = 0; kh < c->f_h; kh++)
    for (int64_t kw = 0; kw < c->f_w; kw++) {
      const float *src = w + (kh * c->f_w + kw) * IC * OC;
      float *dst = wt + ((c->f_h - 1 - kh) * c->f_w + (c->f_w - 1 - kw)) * OC * IC;
      for (int64_t ci = 0; ci < IC; ci++)
        for (int64_t co = 0; co < OC; co++) dst[co * IC + ci] = src[ci * OC + co];
    }
  const Conv t = {.batch = c->batch, .in_h = c->out_h, .in_w = c->out_w, .in_c = OC, .out_h = c->in_h,
                  .out_w = c->in_w, .out_c = IC, .f_h = c->f_h, .f_w = c->f_w, .stride_h = 1, .stride_w = 1,
                  .dil_h = c->dil_h, .dil_w = c->dil_w, .pad_top = (c->f_h - 1) * c->dil_h - c->pad_top,
                  .pad_left = (c->f_w - 1) * c->dil_w - c->pad_left};
  const bool ok = conv_forward_direct(&t, dy, wt, dx);
  free(wt);
  return ok;
}


/*
 * The filter gradient of a narrow layer, directly: dw[tap, ci, :] = Σ_p x[p + tap, ci] · dy[p, :]. Pixels go in
 * chunks of DW_CHUNK; per chunk and tap, the input offsets are computed once, then each block of CB input
 * channels keeps its CB × outC sums in registers across the chunk. Threads take disjoint pixel ranges into
 * their own dw, summed at the end.
 */
#define DW_CHUNK 256

#define DW_BLOCK(CB, NV)                                                                                       \
  __attribute__((target("avx2,fma"))) static void dw_block_##CB##_##NV(                                       \
      const float *x, const float *dy, const int64_t *off, int64_t n, int64_t ci0, float *dw_tap, int64_t OC,  \
      int64_t p0) {                                                                                            \
    __m256 acc[CB][NV];                                                                                        \
    _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
        acc[j][v] = _mm256_loadu_ps(dw_tap + (ci0 + j) * OC + 8 * v);                                          \
    for (int64_t i = 0; i < n; i++) {                                                                          \
      if (off[i] < 0) continue;                                                                                \
      const float *g = dy + (p0 + i) * OC;                                                                     \
      __m256 gv[NV];                                                                                           \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) gv[v] = _mm256_loadu_ps(g + 8 * v);                 \
      const float *xi = x + off[i] + ci0;                                                                      \
      _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) {                                                   \
        const __m256 xv = _mm256_broadcast_ss(xi + j);                                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[j][v] = _mm256_fmadd_ps(xv, gv[v], acc[j][v]); \
      }                                                                                                        \
    }                                                                                                          \
    _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
        _mm256_storeu_ps(dw_tap + (ci0 + j) * OC + 8 * v, acc[j][v]);                                          \
  }

DW_BLOCK(8, 1)
DW_BLOCK(1, 1)
DW_BLOCK(4, 2)
DW_BLOCK(1, 2)
DW_BLOCK(4, 3)
DW_BLOCK(1, 3)
DW_BLOCK(2, 4)
DW_BLOCK(1, 4)


#define DW_BLOCK4(CB)                                                                                          \
  __attribute__((target("avx2,fma"))) static void dw_block4_##CB(const float *x, const float *dy,             \
                                                                  const int64_t *off, int64_t n, int64_t ci0,  \
                                                                  float *dw_tap, int64_t OC, int64_t p0) {     \
    __m128 acc[CB];                                                                                            \
    _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) acc[j] = _mm_loadu_ps(dw_tap + (ci0 + j) * OC);       \
    for (int64_t i = 0; i < n; i++) {                                                                          \
      if (off[i] < 0) continue;                                                                                \
      const __m128 gv = _mm_loadu_ps(dy + (p0 + i) * OC);                                                      \
      const float *xi = x + off[i] + ci0;                                                                      \
      _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) acc[j] =                                            \
          _mm_fmadd_ps(_mm_broadcast_ss(xi + j), gv, acc[j]);                                                  \
    }                                                                                                          \
    _Pragma("GCC unroll 8") for (int j = 0; j < CB; j++) _mm_storeu_ps(dw_tap + (ci0 + j) * OC, acc[j]);       \
  }
DW_BLOCK4(8)
DW_BLOCK4(1)

typedef void (*DwBlockFn)(const float *, const float *, const int64_t *, int64_t, int64_t, float *, int64_t,
                          int64_t);

typedef struct {
  const Conv *c;
  const float *x, *dy;
  float *dw; /* zeroed, this task's own */
  int64_t p0, p1;
} DwTask;

static void *dw_run(void *arg) {
  const DwTask *t = arg;
  const Conv *c = t->c;
  static const DwBlockFn wide[] = {dw_block4_8, dw_block_8_1, dw_block_4_2, dw_block_4_3, dw_block_2_4};
  static const DwBlockFn one[] = {dw_block4_1, dw_block_1_1, dw_block_1_2, dw_block_1_3, dw_block_1_4};
  static const int64_t cb[] = {8, 8, 4, 4, 2};
  const int64_t IC = c->in_c, OC = c->out_c, HW = c->out_h * c->out_w;
  int64_t off[DW_CHUNK];
  for (int64_t p0 = t->p0; p0 < t->p1; p0 += DW_CHUNK) {
    const int64_t n = t->p1 - p0 < DW_CHUNK ? t->p1 - p0 : DW_CHUNK;
    for (int64_t kh = 0; kh < c->f_h; kh++)
      for (int64_t kw = 0; kw < c->f_w; kw++) {
        /* Pixel coordinates stepped along, not divided out per pixel: 64-bit divisions cost more than the FMAs. */
        int64_t b = p0 / HW, oy = (p0 % HW) / c->out_w, ox = p0 % c->out_w;
        for (int64_t i = 0; i < n; i++) {
          const int64_t iy = oy * c->stride_h - c->pad_top + kh * c->dil_h;
          const int64_t ix = ox * c->stride_w - c->pad_left + kw * c->dil_w;
          off[i] = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w ? ((b * c->in_h + iy) * c->in_w + ix) * IC : -1;
          if (++ox == c->out_w) {
            ox = 0;
            if (++oy == c->out_h) {
              oy = 0;
              b++;
            }
          }
        }
        float *dw_tap = t->dw + (kh * c->f_w + kw) * IC * OC;
        for (int64_t co = 0; co < OC;) { /* channel groups as in direct_rows */
          const int64_t g = channel_group(OC - co);
          const int k = g == 4 ? 0 : (int)(g / 8);
          int64_t ci = 0;
          for (; ci + cb[k] <= IC; ci += cb[k]) wide[k](t->x, t->dy + co, off, n, ci, dw_tap + co, OC, p0);
          for (; ci < IC; ci++) one[k](t->x, t->dy + co, off, n, ci, dw_tap + co, OC, p0);
          co += g;
        }
      }
  }
  return NULL;
}

/* False when out of memory. */
static bool conv_backprop_filter_direct(const Conv *c, const float *x, const float *dy, float *dw) {
  const int64_t P = c->batch * c->out_h * c->out_w, w_size = c->f_h * c->f_w * c->in_c * c->out_c;
  const int64_t macs = P * w_size;
  const int n = P >= 2 * DW_CHUNK && macs >= DIRECT_THREAD_MACS ? DIRECT_THREADS : 1;
  float *partial = n > 1 ? calloc((size_t)((n - 1) * w_size), sizeof(float)) : NULL;
  if (n > 1 && partial == NULL) return false;
  memset(dw, 0, (size_t)w_size * sizeof(float));
  DwTask tasks[DIRECT_THREADS];
  for (int i = 0; i < n; i++)
    tasks[i] = (DwTask){c, x, dy, i == 0 ? dw : partial + (i - 1) * w_size, P * i / n, P * (i + 1) / n};
  run_tasks(dw_run, tasks, sizeof tasks[0], n);
  for (int i = 1; i < n; i++)
    for (int64_t j = 0; j < w_size; j++) dw[j] += partial[(i - 1) * w_size + j];
  free(partial);
  return true;
}

/*
 * conv2d(x, filter, out, geometry):            out[P, outC] = cols(x)[P, K] · filter[K, outC]
 * conv2dBackpropInput(dy, filter, dx, geometry): dx = col2im(dy[P, outC] · filterᵀ[outC, K])
 * conv2dBackpropFilter(x, dy, dw, geometry):     dw[K, outC] = cols(x)ᵀ[K, P] · dy[P, outC]
 * with P = batch·outH·outW pixels and K = fH·fW·inC.
 */
static napi_value conv_op(napi_env env, napi_callback_info info, int op) {
  static const char *names[] = {"conv2d", "conv2dBackpropInput", "conv2dBackpropFilter"};
  static const char *args[][3] = {{"x", "filter", "out"}, {"dy", "filter", "dx"}, {"x", "dy", "dw"}};
  const char *fn = names[op];
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 4, fn)) return NULL;
  FloatView v[3];
  Conv c;
  for (int i = 0; i < 3; i++)
    if (!get_f32(env, argv[i], fn, args[op][i], &v[i])) return NULL;
  if (!get_conv(env, argv[3], fn, &c)) return NULL;
  const int64_t P = c.batch * c.out_h * c.out_w, K = c.f_h * c.f_w * c.in_c;
  const int64_t x_size = c.batch * c.in_h * c.in_w * c.in_c, y_size = P * c.out_c, w_size = K * c.out_c;
  const int64_t sizes[][3] = {{x_size, w_size, y_size}, {y_size, w_size, x_size}, {x_size, y_size, w_size}};
  for (int i = 0; i < 3; i++)
    if (!check_length(env, fn, args[op][i], &v[i], sizes[op][i])) return NULL;

  if (op == CONV_FORWARD && conv_goes_direct(&c)) {
    if (!conv_forward_direct(&c, v[0].data, v[1].data, v[2].data))
      napi_throw_error(env, NULL, "sortednet_blas: out of memory");
    return NULL;
  }
  if (op == CONV_BACKPROP_FILTER && c.in_c >= 4 && conv_goes_direct(&c)) { /* 1–3 inputs: GEMM is ahead */
    if (!conv_backprop_filter_direct(&c, v[0].data, v[1].data, v[2].data))
      napi_throw_error(env, NULL, "sortednet_blas: out of memory");
    return NULL;
  }
  if (op == CONV_BACKPROP_INPUT && conv_backprop_input_goes_direct(&c)) {
    if (!conv_backprop_input_direct(&c, v[0].data, v[1].data, v[2].data))
      napi_throw_error(env, NULL, "sortednet_blas: out of memory");
    return NULL;
  }
  const bool pointwise = conv_is_pointwise(&c);
  const int64_t chunk = pointwise ? P : (CHUNK_FLOATS / K > 0 ? (CHUNK_FLOATS / K < P ? CHUNK_FLOATS / K : P) : 1);
  float *cols = pointwise ? NULL : scratch_floats((size_t)(chunk * K));
  if (!pointwise && cols == NULL) {
    napi_throw_error(env, NULL, "sortednet_blas: out of memory for im2col columns");
    return NULL;
  }
  if (op == CONV_BACKPROP_INPUT) memset(v[2].data, 0, (size_t)x_size * sizeof(float));
  for (int64_t p0 = 0; p0 < P; p0 += chunk) {
    const int64_t rows = P - p0 < chunk ? P - p0 : chunk;
    switch (op) {
      case CONV_FORWARD: {
        const float *a = pointwise ? v[0].data + p0 * K : (im2col(&c, v[0].data, p0, p0 + rows, cols), cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)c.out_c, (int)K, 1, a, (int)K,
                    v[1].data, (int)c.out_c, 0, v[2].data + p0 * c.out_c, (int)c.out_c);
        break;
      }
      case CONV_BACKPROP_INPUT: {
        float *d = pointwise ? v[2].data + p0 * K : cols;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)K, (int)c.out_c, 1,
                    v[0].data + p0 * c.out_c, (int)c.out_c, v[1].data, (int)c.out_c, 0, d, (int)K);
        if (!pointwise) col2im_add(&c, cols, p0, p0 + rows, v[2].data);
        break;
      }
      default: {
        const float *a = pointwise ? v[0].data + p0 * K : (im2col(&c, v[0].data, p0, p0 + rows, cols), cols);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)c.out_c, (int)rows, 1, a, (int)K,
                    v[1].data + p0 * c.out_c, (int)c.out_c, p0 == 0 ? 0 : 1, v[2].data, (int)c.out_c);
        break;
      }
    }
  }
  return NULL;
}

static napi_value conv2d(napi_env env, napi_callback_info info) { return conv_op(env, info, CONV_FORWARD); }
static napi_value conv2d_backprop_input(napi_env env, napi_callback_info info) {
  return conv_op(env, info, CONV_BACKPROP_INPUT);
}
static napi_value conv2d_backprop_filter(napi_env env, napi_callback_info info) {
  return conv_op(env, info, CONV_BACKPROP_FILTER);
}

/*
 * Sparse per-sample convolution (compact PAD layers): out[b] += Σ_i values[b, i] · x[b] shifted by element i's
 * tap (kh, kw) and input channel, into element i's output channel, where index[i] is the element's flat position
 * in an HWIO [fH, fW, inC, outC] kernel. Only the nnz listed elements are touched: no dense kernel is built.
 *
 * Each sample's input is copied into zero-padded channel planes, split by stride phase: plane (c, ph, pw) holds
 * padded pixels (r·sH + ph, q·sW + pw). Then a tap whose padded offset is (kh·dH, kw·dW) reads phase
 * ((kh·dH) mod sH, (kw·dW) mod sW) shifted by ((kh·dH) div sH, (kw·dW) div sW), so at every stride each element
 * is ONE contiguous axpy over the output plane (row pitch Wq = outW + ((fW−1)·dW) div sW; the columns past outW
 * are scratch, dropped when the plane is added into NHWC out). Elements are grouped by output channel, and the
 * output plane is swept in runs of up to 64 values held in AVX2 registers while the channel's elements stream
 * past (one load and one fused multiply-add per 8 values); samples are split over two threads.
 */
typedef struct {
  const Conv *c;
  const float *x, *values;
  float *out;
  const int64_t *src;   /* per element, in output-channel order: its offset in the sample's phase planes */
  const int32_t *value; /* per element, in output-channel order: its column in values */
  const int64_t *first; /* elements of output channel co: [first[co], first[co + 1]) */
  int64_t nnz, hq, wq, b0, b1;
  bool avx; /* the AVX2 runs, or the portable loop (no AVX2/FMA, or the direct kernels switched off) */
  bool failed;
} SparseTask;

/*
 * One run of NV·8 output values of an output channel, kept in registers while that channel's elements stream
 * past: per element one broadcast, then NV loads and fused multiply-adds. acc gets the run.
 */
#define SPARSE_RUN(NV)                                                                                          \
  __attribute__((target("avx2,fma"))) static void sparse_run_##NV(const float *planes, const int64_t *src,      \
                                                                   const float *v, int64_t e0, int64_t e1,     \
                                                                   int64_t j0, float *acc) {                   \
    __m256 a[NV];                                                                                               \
    _Pragma("GCC unroll 8") for (int k = 0; k < NV; k++) a[k] = _mm256_setzero_ps();                            \
    for (int64_t e = e0; e < e1; e++) {                                                                         \
      const __m256 w = _mm256_set1_ps(v[e]);                                                                    \
      const float *s = planes + src[e] + j0;                                                                    \
      _Pragma("GCC unroll 8") for (int k = 0; k < NV; k++) a[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(s + 8 * k), a[k]); \
    }                                                                                                           \
    _Pragma("GCC unroll 8") for (int k = 0; k < NV; k++) _mm256_storeu_ps(acc + j0 + 8 * k, a[k]);              \
  }
SPARSE_RUN(8)
SPARSE_RUN(7)
SPARSE_RUN(6)
SPARSE_RUN(5)
SPARSE_RUN(4)
SPARSE_RUN(3)
SPARSE_RUN(2)
SPARSE_RUN(1)
typedef void (*SparseRunFn)(const float *, const int64_t *, const float *, int64_t, int64_t, int64_t, float *);
/* The last run of a plane: its 1–7 remaining vectors in one pass over the elements. */
static const SparseRunFn sparse_tail[] = {NULL,           sparse_run_1, sparse_run_2, sparse_run_3,
                                          sparse_run_4, sparse_run_5, sparse_run_6, sparse_run_7};

/* The same without AVX2: one element at a time over the whole run. */
static void sparse_runs_portable(const float *planes, const int64_t *src, const float *v, int64_t e0, int64_t e1,
                                 int64_t span, float *restrict acc) {
  for (int64_t j = 0; j < span; j++) acc[j] = 0;
  for (int64_t e = e0; e < e1; e++) {
    const float w = v[e];
    const float *restrict s = planes + src[e];
    for (int64_t j = 0; j < span; j++) acc[j] += w * s[j];
  }
}

static void sparse_samples(SparseTask *t) {
  const Conv *c = t->c;
  const int64_t SH = c->stride_h, SW = c->stride_w, HQ = t->hq, WQ = t->wq, OH = c->out_h, OW = c->out_w;
  const int64_t OC = c->out_c, IC = c->in_c, plane = HQ * WQ, span = (OH - 1) * WQ + OW;
  /* Runs are whole vectors: up to 7 values past the span are computed and dropped, read from the zeroed slack. */
  const int64_t span8 = (span + 7) / 8 * 8, planes_size = IC * SH * SW * plane;
  float *planes = malloc((size_t)(planes_size + 8 + span8 + t->nnz) * sizeof(float));
  if (planes == NULL) {
    t->failed = true;
    return;
  }
  float *acc = planes + planes_size + 8, *v = acc + span8;
  memset(planes + planes_size, 0, 8 * sizeof(float));
  for (int64_t b = t->b0; b < t->b1; b++) {
    const float *xb = t->x + b * c->in_h * c->in_w * IC;
    for (int64_t ph = 0; ph < SH; ph++)
      for (int64_t r = 0; r < HQ; r++) {
        const int64_t iy = r * SH + ph - c->pad_top;
        for (int64_t pw = 0; pw < SW; pw++) {
          for (int64_t q = 0; q < WQ; q++) {
            const int64_t ix = q * SW + pw - c->pad_left;
            const bool inside = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w;
            const float *px = xb + (iy * c->in_w + ix) * IC;
            float *dst = planes + (ph * SW + pw) * plane + r * WQ + q;
            for (int64_t ci = 0; ci < IC; ci++) dst[ci * SH * SW * plane] = inside ? px[ci] : 0.0f;
          }
        }
      }
    /* This sample's values in output-channel order. */
    const float *vb = t->values + b * t->nnz;
    for (int64_t e = 0; e < t->nnz; e++) v[e] = vb[t->value[e]];
    float *ob = t->out + b * OH * OW * OC;
    for (int64_t co = 0; co < OC; co++) {
      const int64_t e0 = t->first[co], e1 = t->first[co + 1];
      if (e0 == e1) continue;
      if (t->avx) {
        int64_t j = 0;
        for (; j + 64 <= span8; j += 64) sparse_run_8(planes, t->src, v, e0, e1, j, acc);
        if (j < span8) sparse_tail[(span8 - j) / 8](planes, t->src, v, e0, e1, j, acc);
      } else
        sparse_runs_portable(planes, t->src, v, e0, e1, span, acc);
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) ob[(oy * OW + ox) * OC + co] += acc[oy * WQ + ox];
    }
  }
  free(planes);
}

static void *sparse_run(void *arg) {
  sparse_samples(arg);
  return NULL;
}

/* sparsePerSampleConv2d(x, values, index, out, geometry): adds into out (NHWC, batch × outH × outW × outC). */
static napi_value sparse_per_sample_conv2d(napi_env env, napi_callback_info info) {
  const char *fn = "sparsePerSampleConv2d";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 5, fn)) return NULL;
  FloatView x, values, out;
  Conv c;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t nnz;
  void *index_data;
  if (!get_f32(env, argv[0], fn, "x", &x) || !get_f32(env, argv[1], fn, "values", &values)) return NULL;
  if (napi_is_typedarray(env, argv[2], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[2], &type, &nnz, &index_data, NULL, NULL) != napi_ok ||
      type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "sparsePerSampleConv2d: index must be an Int32Array");
    return NULL;
  }
  if (!get_f32(env, argv[3], fn, "out", &out) || !get_conv(env, argv[4], fn, &c)) return NULL;
  const int32_t *index = index_data;
  const int64_t kernel_size = c.f_h * c.f_w * c.in_c * c.out_c;
  if (!check_length(env, fn, "x", &x, c.batch * c.in_h * c.in_w * c.in_c) ||
      !check_length(env, fn, "values", &values, c.batch * (int64_t)nnz) ||
      !check_length(env, fn, "out", &out, c.batch * c.out_h * c.out_w * c.out_c))
    return NULL;
  const int64_t hq = c.out_h + (c.f_h - 1) * c.dil_h / c.stride_h, wq = c.out_w + (c.f_w - 1) * c.dil_w / c.stride_w;
  int64_t *src = malloc((nnz + 1) * sizeof(int64_t)), *first = calloc((size_t)c.out_c + 1, sizeof(int64_t));
  int32_t *value = malloc((nnz + 1) * sizeof(int32_t));
  if (src == NULL || first == NULL || value == NULL) {
    free(src), free(first), free(value);
    napi_throw_error(env, NULL, "sparsePerSampleConv2d: out of memory");
    return NULL;
  }
  /* Counting sort of the elements by output channel. */
  for (size_t i = 0; i < nnz; i++) {
    if (index[i] < 0 || index[i] >= kernel_size) {
      char msg[200];
      snprintf(msg, sizeof msg, "%s: index[%zu] = %d is outside a kernel of %lld elements", fn, i, index[i],
               (long long)kernel_size);
      free(src), free(first), free(value);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
    first[index[i] % c.out_c + 1]++;
  }
  for (int64_t co = 0; co < c.out_c; co++) first[co + 1] += first[co];
  int64_t *next = calloc((size_t)c.out_c, sizeof(int64_t));
  if (next == NULL) {
    free(src), free(first), free(value);
    napi_throw_error(env, NULL, "sparsePerSampleConv2d: out of memory");
    return NULL;
  }
  const int64_t plane = hq * wq;
  for (size_t i = 0; i < nnz; i++) {
    int64_t p = index[i];
    const int64_t co = p % c.out_c, ci = (p /= c.out_c) % c.in_c, kw = (p /= c.in_c) % c.f_w, kh = p / c.f_w;
    const int64_t dy = kh * c.dil_h, dx = kw * c.dil_w;
    const int64_t e = first[co] + next[co]++;
    src[e] = ((ci * c.stride_h + dy % c.stride_h) * c.stride_w + dx % c.stride_w) * plane +
             dy / c.stride_h * wq + dx / c.stride_w;
    value[e] = (int32_t)i;
  }
  free(next);
  const int64_t macs = c.batch * (int64_t)nnz * c.out_h * wq;
  const int n = c.batch >= 2 && macs >= DIRECT_THREAD_MACS ? DIRECT_THREADS : 1;
  const Conv probe = {.in_c = 8, .out_c = 8};
  const bool avx = conv_goes_direct(&probe); /* settles direct_mode: AVX2 and FMA, not switched off */
  SparseTask tasks[DIRECT_THREADS];
  for (int i = 0; i < n; i++)
    tasks[i] = (SparseTask){&c, x.data, values.data, out.data, src, value, first, (int64_t)nnz, hq, wq,
                            c.batch * i / n, c.batch * (i + 1) / n, avx, false};
  run_tasks(sparse_run, tasks, sizeof tasks[0], n);
  free(src), free(first), free(value);
  for (int i = 0; i < n; i++)
    if (tasks[i].failed) {
      napi_throw_error(env, NULL, "sparsePerSampleConv2d: out of memory for the input planes");
      return NULL;
    }
  return NULL;
}


/*
 * Training-mode batch normalisation over the last (channel) axis, every other axis a batch axis, and its
 * gradient: the formulas of src/engine/ops/batch_norm_train.ts in two passes over memory each way, with
 * per-channel sums in double, a ReLU or ReLU6 after it fused on request. Why native: in JavaScript the per-channel
 * accumulators make each pass a chain of dependent loads and stores (6.9 ms for a [64, 28, 28, 16] forward
 * pass, against well under 1 ms here). Rows are split over OpenBLAS's threads, each with its own sums.
 */
#define BN_HOT __attribute__((target_clones("arch=haswell", "default")))

/*
 * Below this many elements one thread does it: a pass over 1 M floats takes well under a millisecond, and each
 * of the passes' barriers can cost a scheduler time slice when another process competes for the cores.
 */
#define BN_PARALLEL_MIN (1 << 21)

static int bn_threads(int64_t elements) {
  extern int openblas_get_num_threads(void);
  int t = openblas_get_num_threads();
  return elements < BN_PARALLEL_MIN || t < 1 ? 1 : t;
}

/* The rows [*r0, *r1) of thread t out of T. */
static void bn_rows(int64_t rows, int t, int T, int64_t *r0, int64_t *r1) {
  *r0 = rows * t / T;
  *r1 = rows * (t + 1) / T;
}

/* Sums of the threads' partial per-channel sums (T blocks of `width` doubles) into the first block. */
static void bn_combine(double *part, int T, int64_t width) {
  for (int t = 1; t < T; t++)
    for (int64_t c = 0; c < width; c++) part[c] += part[t * width + c];
}

/* y = x·scale + shift, then the activation; the backward pass recomputes its mask the same way. */
static inline float bn_affine(float x, float scale, float shift) { return x * scale + shift; }

/*
 * dy where the activation passed the forward output (0 < y < upper), else 0: a bit mask, not a branch (the signs
 * are as good as random) nor fmaxf, so that the loops around it vectorise.
 */
static inline float bn_pass(float dy, float x, float scale, float shift, bool masked, float upper) {
  if (!masked) return dy;
  const float v = bn_affine(x, scale, shift);
  uint32_t bits;
  memcpy(&bits, &dy, sizeof bits);
  bits &= -(uint32_t)((v > 0.f) & (v < upper));
  float out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

/* Activation kinds (as the oneDNN addon numbers them): 0 none, 1 ReLU, 2 ReLU6. The upper clip of each. */
static float bn_upper(int activation) { return activation == 2 ? 6.f : INFINITY; }

/* The affine map of the forward pass from its saved mean and rstd (for the ReLU mask). */
static void bn_scale_shift(const float *mean, const float *rstd, const float *gamma, const float *beta, int64_t C,
                           float *scale, float *shift) {
  for (int64_t c = 0; c < C; c++) {
    scale[c] = (float)((double)rstd[c] * gamma[c]);
    shift[c] = (float)(beta[c] - (double)mean[c] * rstd[c] * gamma[c]);
  }
}

BN_HOT static void bn_forward(const float *restrict x, const float *restrict gamma, const float *restrict beta,
                              float *restrict y, float *restrict mean_out, float *restrict rstd_out, int64_t rows,
                              int64_t C, float eps, int activation, double *restrict part, float *restrict scale,
                              float *restrict shift) {
  const int T = bn_threads(rows * C);
  const float upper = bn_upper(activation);
  double *mean = part; /* after the first combine */
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    int64_t r0, r1;
    bn_rows(rows, t, T, &r0, &r1);
    double *restrict sum = part + t * C;
    for (int64_t c = 0; c < C; c++) sum[c] = 0;
    for (int64_t r = r0; r < r1; r++)
      for (int64_t c = 0; c < C; c++) sum[c] += x[r * C + c];
#pragma omp barrier
#pragma omp single
    {
      bn_combine(part, T, C);
      for (int64_t c = 0; c < C; c++) mean[c] /= (double)rows;
    }
    double *restrict sq = part + (T + t) * C;
    for (int64_t c = 0; c < C; c++) sq[c] = 0;
    for (int64_t r = r0; r < r1; r++)
      for (int64_t c = 0; c < C; c++) {
        const double d = x[r * C + c] - mean[c];
        sq[c] += d * d;
      }
#pragma omp barrier
#pragma omp single
    {
      bn_combine(part + T * C, T, C);
      for (int64_t c = 0; c < C; c++) {
        mean_out[c] = (float)mean[c];
        rstd_out[c] = (float)(1 / sqrt(part[T * C + c] / (double)rows + eps));
      }
      /* From the rounded mean and rstd, as the backward pass does, so that both see the same ReLU mask. */
      bn_scale_shift(mean_out, rstd_out, gamma, beta, C, scale, shift);
    }
    for (int64_t r = r0; r < r1; r++)
      for (int64_t c = 0; c < C; c++) {
        float v = bn_affine(x[r * C + c], scale[c], shift[c]);
        if (activation) { /* selects, not fmaxf/fminf, so that GCC vectorises the loop */
          v = v > 0.f ? v : 0.f;
          v = v < upper ? v : upper;
        }
        y[r * C + c] = v;
      }
  }
}

BN_HOT static void bn_backward(const float *restrict dy, const float *restrict x, const float *restrict mean,
                               const float *restrict rstd, const float *restrict gamma, const float *restrict beta,
                               int activation, float *restrict dx, float *restrict dgamma, float *restrict dbeta,
                               int64_t rows, int64_t C, double *restrict part, float *restrict scale,
                               float *restrict shift) {
  const int T = bn_threads(rows * C);
  const float upper = bn_upper(activation);
  const bool masked = activation != 0;
  float *restrict k = scale + 2 * C, *restrict a = k + C, *restrict b = a + C;
  /* With a fused activation, dy only flows where the forward output was inside (0, upper). */
  if (masked) bn_scale_shift(mean, rstd, gamma, beta, C, scale, shift);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    int64_t r0, r1;
    bn_rows(rows, t, T, &r0, &r1);
    double *restrict sum_dy = part + 2 * t * C, *restrict sum_dyx = sum_dy + C;
    for (int64_t c = 0; c < 2 * C; c++) sum_dy[c] = 0;
    /* Σ dy x̂ = rstd · (Σ dy x − mean Σ dy): one pass over the raw input. */
    for (int64_t r = r0; r < r1; r++)
      for (int64_t c = 0; c < C; c++) {
        const float xv = x[r * C + c];
        const float g = bn_pass(dy[r * C + c], xv, scale[c], shift[c], masked, upper);
        sum_dy[c] += g;
        sum_dyx[c] += (double)g * xv;
      }
#pragma omp barrier
#pragma omp single
    {
      bn_combine(part, T, 2 * C);
      /* dx = γσ⁻¹(dy − Σdy/N − x̂ Σ(dy x̂)/N) = k·dy + a·x + b per channel. */
      for (int64_t c = 0; c < C; c++) {
        const double sdy = part[c], sdyx = part[C + c];
        const double dyxhat = rstd[c] * (sdyx - mean[c] * sdy);
        const double kc = (double)gamma[c] * rstd[c], n = (double)rows;
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)dyxhat;
        k[c] = (float)kc;
        a[c] = (float)(-kc * rstd[c] * dyxhat / n);
        b[c] = (float)(-kc * sdy / n + kc * rstd[c] * mean[c] * dyxhat / n);
      }
    }
    for (int64_t r = r0; r < r1; r++)
      for (int64_t c = 0; c < C; c++) {
        const float xv = x[r * C + c];
        const float g = bn_pass(dy[r * C + c], xv, scale[c], shift[c], masked, upper);
        dx[r * C + c] = k[c] * g + a[c] * xv + b[c];
      }
  }
}

static bool channel_count(napi_env env, napi_value v, const char *fn, int64_t *C) {
  if (!get_dim(env, v, fn, "channels", C)) return false;
  if (*C > 0) return true;
  napi_throw_range_error(env, NULL, "batch norm: channels must be at least 1");
  return false;
}

/* The activation argument: undefined (none) or 0, 1 (ReLU), 2 (ReLU6). */
static bool activation_kind(napi_env env, napi_value v, const char *fn, int32_t *kind) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && (t == napi_undefined || t == napi_null)) return true;
  if (napi_get_value_int32(env, v, kind) == napi_ok && *kind >= 0 && *kind <= 2) return true;
  char msg[120];
  snprintf(msg, sizeof msg, "%s: activation must be 0 (none), 1 (ReLU) or 2 (ReLU6)", fn);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

/* Scratch for the batch-norm passes: per-thread double sums and five float vectors per channel. */
static void *bn_scratch(napi_env env, const char *fn, int64_t C, double **part, float **floats) {
  const int T = bn_threads(INT64_MAX);
  void *mem = malloc((size_t)(2 * T * C) * sizeof(double) + (size_t)(5 * C) * sizeof(float));
  if (mem == NULL) {
    char msg[80];
    snprintf(msg, sizeof msg, "%s: out of memory", fn);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  *part = mem;
  *floats = (float *)(*part + 2 * T * C);
  return mem;
}

/*
 * batchNormTrain(x, gamma, beta, y, mean, rstd, channels, epsilon, activation?): y, mean and rstd are
 * overwritten; activation 0 (default) none, 1 ReLU, 2 ReLU6.
 */
static napi_value batch_norm_train(napi_env env, napi_callback_info info) {
  const char *fn = "batchNormTrain";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc == 8) argv[argc++] = NULL;
  if (!arg_count(env, argc, 9, fn)) return NULL;
  static const char *names[] = {"x", "gamma", "beta", "y", "mean", "rstd"};
  FloatView v[6];
  for (int i = 0; i < 6; i++)
    if (!get_f32(env, argv[i], fn, names[i], &v[i])) return NULL;
  int64_t C;
  double eps;
  int32_t activation = 0;
  if (!channel_count(env, argv[6], fn, &C)) return NULL;
  CHECK(env, napi_get_value_double(env, argv[7], &eps));
  if (argv[8] && !activation_kind(env, argv[8], fn, &activation)) return NULL;
  const int64_t rows = (int64_t)v[0].length / C;
  if (!check_length(env, fn, "y", &v[3], rows * C)) return NULL;
  for (int i = 1; i < 6; i++)
    if (i != 3 && !check_length(env, fn, names[i], &v[i], C)) return NULL;
  double *part;
  float *floats;
  void *mem = bn_scratch(env, fn, C, &part, &floats);
  if (!mem) return NULL;
  bn_forward(v[0].data, v[1].data, v[2].data, v[3].data, v[4].data, v[5].data, rows, C, (float)eps, activation, part,
             floats, floats + C);
  free(mem);
  return NULL;
}

/*
 * batchNormTrainGrad(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, channels, beta?, activation?): the three
 * gradients are overwritten. With an activation (which needs beta), the forward pass had it fused: dy counts
 * only where its output was inside (0, upper).
 */
static napi_value batch_norm_train_grad(napi_env env, napi_callback_info info) {
  const char *fn = "batchNormTrainGrad";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  while (argc < 11) argv[argc++] = NULL;
  if (!arg_count(env, argc, 11, fn)) return NULL;
  static const char *names[] = {"dy", "x", "mean", "rstd", "gamma", "dx", "dgamma", "dbeta", "channels", "beta"};
  FloatView v[10];
  for (int i = 0; i < 8; i++)
    if (!get_f32(env, argv[i], fn, names[i], &v[i])) return NULL;
  int32_t activation = 0;
  if (argv[10] && !activation_kind(env, argv[10], fn, &activation)) return NULL;
  const bool relu = activation != 0;
  if (relu && !get_f32(env, argv[9], fn, names[9], &v[9])) return NULL;
  int64_t C;
  if (!channel_count(env, argv[8], fn, &C)) return NULL;
  const int64_t rows = (int64_t)v[1].length / C;
  const int full[] = {0, 5};
  for (int i = 0; i < 2; i++)
    if (!check_length(env, fn, names[full[i]], &v[full[i]], rows * C)) return NULL;
  const int per_channel[] = {2, 3, 4, 6, 7, 9};
  for (int i = 0; i < (relu ? 6 : 5); i++)
    if (!check_length(env, fn, names[per_channel[i]], &v[per_channel[i]], C)) return NULL;
  double *part;
  float *floats;
  void *mem = bn_scratch(env, fn, C, &part, &floats);
  if (!mem) return NULL;
  bn_backward(v[0].data, v[1].data, v[2].data, v[3].data, v[4].data, relu ? v[9].data : NULL, activation, v[5].data,
              v[6].data, v[7].data, rows, C, part, floats, floats + C);
  free(mem);
  return NULL;
}

/* The first `count` arguments as Float32Arrays named `names` (a TypeError naming the first that is not one). */
static bool get_f32_args(napi_env env, napi_value *argv, const char *fn, const char *const *names, FloatView *v,
                         int count) {
  for (int i = 0; i < count; i++)
    if (!get_f32(env, argv[i], fn, names[i], &v[i])) return false;
  return true;
}

/*
 * One decoding step of attention over a key/value cache, appending in place (the contract and the JavaScript twin:
 * src/engine/kernels/cached_attention.ts). q [B, h, n, d]; kn, vn [B, kvh, n, d] are copied to positions
 * past..past+n-1 of kc, vc [B, kvh, C, d]; query i of head j attends to keys 0..past+i of key/value head j/(h/kvh),
 * with mask [B, past+n] (additive, or NULL) on the scores; out [B, n, h, d].
 *
 * Per (query, head): s_t = q.k_t * scale + mask_t, e_t = exp(s_t - max), o = (sum_t e_t v_t) / sum_t e_t. Every
 * sum over keys runs in key order, one key at a time, so a row's result does not depend on where its keys sit in
 * the buffer: a left-padded batch row (padding keys weigh exactly 0) equals the same sequence decoded alone.
 */
typedef struct {
  const float *q, *kn, *vn, *mask;
  float *kc, *vc, *out;
  int64_t B, h, kvh, n, d, C, past;
  float scale;
} Attend;

/* The output o of query qi over keys 0..seen-1 of K and V, in portable C (s: scratch of seen floats). */
__attribute__((target_clones("arch=haswell", "default"))) static void attend_one(const Attend *a, const float *qi,
                                                                                   const float *K, const float *V,
                                                                                   const float *mrow, int64_t seen,
                                                                                   float *s, float *o) {
  const int64_t d = a->d;
  float max = -INFINITY;
  for (int64_t t = 0; t < seen; t++) {
    const float *kt = K + t * d;
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < d; c++) dot += qi[c] * kt[c];
    s[t] = dot * a->scale + (mrow ? mrow[t] : 0.0f);
    if (s[t] > max) max = s[t];
  }
  float sum = 0;
  for (int64_t t = 0; t < seen; t++) {
    s[t] = expf(s[t] - max);
    sum += s[t];
  }
  for (int64_t c = 0; c < d; c++) o[c] = 0;
  for (int64_t t = 0; t < seen; t++) {
    const float *vt = V + t * d;
#pragma omp simd
    for (int64_t c = 0; c < d; c++) o[c] += s[t] * vt[c];
  }
  const float inv = 1.0f / sum;
  for (int64_t c = 0; c < d; c++) o[c] *= inv;
}

/* exp of 16 lanes (Cephes' expf polynomial, about 1 ulp); below -104 the result is exactly 0. */
__attribute__((target("avx512f"))) static inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

/* attend_one with 16-lane vectors: four keys' dot products at a time, exp vectorised, masked tails. */
__attribute__((target("avx512f"))) static void attend_one512(const Attend *a, const float *qi, const float *K,
                                                             const float *V, const float *mrow, int64_t seen,
                                                             float *s, float *o) {
  const int64_t d = a->d;
  const __mmask16 dtail = (__mmask16)((1u << (d % 16)) - 1);
  const int64_t dfull = d - d % 16;
#define DOT_STEP(acc, kt)                                                     \
  for (int64_t c = 0; c < dfull; c += 16)                                     \
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(qi + c), _mm512_loadu_ps((kt) + c), acc); \
  if (dtail)                                                                  \
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(dtail, qi + dfull), _mm512_maskz_loadu_ps(dtail, (kt) + dfull), acc);
  int64_t t = 0;
  for (; t + 4 <= seen; t += 4) {
    /* The values of these keys, read after the scores: fetched while the dot products run. */
    for (int64_t off = 0; off < 4 * d; off += 16) _mm_prefetch((const char *)(V + t * d + off), _MM_HINT_T0);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    DOT_STEP(a0, K + t * d)
    DOT_STEP(a1, K + (t + 1) * d)
    DOT_STEP(a2, K + (t + 2) * d)
    DOT_STEP(a3, K + (t + 3) * d)
    s[t] = _mm512_reduce_add_ps(a0);
    s[t + 1] = _mm512_reduce_add_ps(a1);
    s[t + 2] = _mm512_reduce_add_ps(a2);
    s[t + 3] = _mm512_reduce_add_ps(a3);
  }
  for (; t < seen; t++) {
    __m512 a0 = _mm512_setzero_ps();
    DOT_STEP(a0, K + t * d)
    s[t] = _mm512_reduce_add_ps(a0);
  }
#undef DOT_STEP
  /* Scale and mask (a product, then a sum: no fused rounding), and the maximum. */
  const __m512 scale = _mm512_set1_ps(a->scale);
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t u = 0; u < seen; u += 16) {
    const __mmask16 m = seen - u >= 16 ? 0xFFFF : (__mmask16)((1u << (seen - u)) - 1);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + u), scale);
    if (mrow) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, mrow + u));
    _mm512_mask_storeu_ps(s + u, m, v);
    mx = _mm512_mask_max_ps(mx, m, mx, v);
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  for (int64_t u = 0; u < seen; u += 16) {
    const __mmask16 m = seen - u >= 16 ? 0xFFFF : (__mmask16)((1u << (seen - u)) - 1);
    _mm512_mask_storeu_ps(s + u, m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + u), max)));
  }
  float sum = 0;
  for (int64_t u = 0; u < seen; u++) sum += s[u];
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
  for (int64_t c = 0; c < d; c += 16) {
    const __mmask16 m = d - c >= 16 ? 0xFFFF : dtail;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t u = 0; u < seen; u++)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(s[u]), _mm512_maskz_loadu_ps(m, V + u * d + c), acc);
    _mm512_mask_storeu_ps(o + c, m, _mm512_mul_ps(acc, inv));
  }
}

/*
 * One thread: the work per step is tens of microseconds, and a second thread (woken per call, or spinning between
 * calls) cost more than it saved on the 2-core machine this was measured on.
 */
static void attend_cached(const Attend *a, float *s) {
  const int64_t B = a->B, h = a->h, kvh = a->kvh, n = a->n, d = a->d, C = a->C, past = a->past;
  for (int64_t bj = 0; bj < B * kvh; bj++) {
    memcpy(a->kc + (bj * C + past) * d, a->kn + bj * n * d, (size_t)(n * d) * sizeof(float));
    memcpy(a->vc + (bj * C + past) * d, a->vn + bj * n * d, (size_t)(n * d) * sizeof(float));
  }
  const int64_t g = h / kvh, L = past + n;
  const bool wide = small_best() == 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < h; j++) {
      const float *K = a->kc + (b * kvh + j / g) * C * d;
      const float *V = a->vc + (b * kvh + j / g) * C * d;
      for (int64_t i = 0; i < n; i++) {
        const float *qi = a->q + ((b * h + j) * n + i) * d;
        float *o = a->out + ((b * n + i) * h + j) * d;
        const float *mrow = a->mask ? a->mask + b * L : NULL;
        if (wide)
          attend_one512(a, qi, K, V, mrow, past + i + 1, s, o);
        else
          attend_one(a, qi, K, V, mrow, past + i + 1, s, o);
      }
    }
}

/* attendCached(q, k, v, kCache, vCache, mask | null, out, dims): dims = Int32Array [B, h, kvh, n, d, C, past]. */
static napi_value attend_cached_call(napi_env env, napi_callback_info info) {
  const char *fn = "attendCached";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 8, fn)) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t count;
  void *data;
  if (napi_is_typedarray(env, argv[7], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[7], &type, &count, &data, NULL, NULL) != napi_ok ||
      type != napi_int32_array || count != 7) {
    napi_throw_type_error(env, NULL, "attendCached: dims must be an Int32Array [B, h, kvh, n, d, C, past]");
    return NULL;
  }
  const int32_t *dm = data;
  const int64_t B = dm[0], h = dm[1], kvh = dm[2], n = dm[3], d = dm[4], C = dm[5], past = dm[6];
  if (B < 1 || h < 1 || kvh < 1 || n < 1 || d < 1 || past < 0 || h % kvh != 0 || past + n > C) {
    napi_throw_range_error(env, NULL, "attendCached: dims need positive sizes, kvh dividing h and past + n <= C");
    return NULL;
  }
  static const char *names[] = {"q", "k", "v", "kCache", "vCache", "mask", "out"};
  const int64_t need[] = {B * h * n * d, B * kvh * n * d, B * kvh * n * d, B * kvh * C * d,
                          B * kvh * C * d, B * (past + n), B * n * h * d};
  FloatView v[7] = {{0}};
  napi_valuetype mask_type;
  CHECK(env, napi_typeof(env, argv[5], &mask_type));
  for (int i = 0; i < 7; i++) {
    if (i == 5 && (mask_type == napi_null || mask_type == napi_undefined)) continue;
    if (!get_f32(env, argv[i], fn, names[i], &v[i]) || !check_length(env, fn, names[i], &v[i], need[i])) return NULL;
  }
  const Attend a = {v[0].data, v[1].data, v[2].data, v[5].data, v[3].data, v[4].data, v[6].data,
                   B, h, kvh, n, d, C, past, 1.0f / sqrtf((float)d)};
  float *scratch = malloc((size_t)(past + n + 16) * sizeof(float));
  if (scratch == NULL) {
    napi_throw_error(env, NULL, "attendCached: out of memory");
    return NULL;
  }
  attend_cached(&a, scratch);
  free(scratch);
  return NULL;
}

/*
 * rmsNorm(x, gamma, y, rstd, features, epsilon): per row of `features`, rstd = 1/sqrt(mean(x^2) + epsilon) and
 * y = x * rstd * gamma, in double as the JavaScript kernel (src/engine/kernels/rms_norm.ts) computes them, so the
 * two agree bit for bit.
 */
static napi_value rms_norm(napi_env env, napi_callback_info info) {
  const char *fn = "rmsNorm";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 6, fn)) return NULL;
  static const char *const names[] = {"x", "gamma", "y", "rstd"};
  FloatView v[4];
  if (!get_f32_args(env, argv, fn, names, v, 4)) return NULL;
  int64_t e;
  double eps;
  if (!get_dim(env, argv[4], fn, "features", &e)) return NULL;
  CHECK(env, napi_get_value_double(env, argv[5], &eps));
  if (e < 1 || v[0].length % (size_t)e != 0) {
    napi_throw_range_error(env, NULL, "rmsNorm: x must hold whole rows of `features` values");
    return NULL;
  }
  const int64_t rows = (int64_t)v[0].length / e;
  if (!check_length(env, fn, "gamma", &v[1], e) || !check_length(env, fn, "y", &v[2], rows * e) ||
      !check_length(env, fn, "rstd", &v[3], rows))
    return NULL;
  const float *x = v[0].data, *g = v[1].data;
  float *y = v[2].data;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * e;
    double sq = 0;
    for (int64_t j = 0; j < e; j++) sq += (double)xr[j] * xr[j];
    const double rstd = 1 / sqrt(sq / (double)e + eps);
    v[3].data[r] = (float)rstd;
    for (int64_t j = 0; j < e; j++) y[r * e + j] = (float)((double)xr[j] * rstd * g[j]);
  }
  return NULL;
}

/*
 * rotary(x, cos, sin, y, positions, inverse): rotate-half rotary embedding of the rows of x (d = cos's row length),
 * row r at position r % positions: y = x*cos + rotate_half(x)*sin (sin negated when inverse). Each product is
 * rounded to float before the sum, as the stock kernels (and src/engine/kernels/rotary.ts) round them: compiled
 * without FMA contraction, the results are the same bits.
 */
static napi_value rotary(napi_env env, napi_callback_info info) {
  const char *fn = "rotary";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_count(env, argc, 6, fn)) return NULL;
  static const char *const names[] = {"x", "cos", "sin", "y"};
  FloatView v[4];
  if (!get_f32_args(env, argv, fn, names, v, 4)) return NULL;
  int64_t T;
  bool inverse;
  if (!get_dim(env, argv[4], fn, "positions", &T) || !get_bool(env, argv[5], fn, "inverse", &inverse)) return NULL;
  const int64_t d = T > 0 ? (int64_t)v[1].length / T : 0;
  if (T < 1 || d < 2 || d % 2 != 0 || v[0].length % (size_t)d != 0 || v[2].length != v[1].length) {
    napi_throw_range_error(env, NULL, "rotary: cos and sin must be [positions, d] with d even, x whole rows of d");
    return NULL;
  }
  const int64_t rows = (int64_t)v[0].length / d;
  if (!check_length(env, fn, "y", &v[3], rows * d)) return NULL;
  const float sign = inverse ? -1.0f : 1.0f, *x = v[0].data, *c = v[1].data, *sn = v[2].data;
  float *y = v[3].data;
  const int64_t half = d / 2;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d, *cr = c + (r % T) * d, *sr = sn + (r % T) * d;
    float *yr = y + r * d;
    for (int64_t i = 0; i < half; i++) {
      const float a = xr[i], b = xr[i + half];
      const float p0 = a * cr[i], p1 = -b * sign * sr[i], p2 = b * cr[i + half], p3 = a * sign * sr[i + half];
      yr[i] = p0 + p1;
      yr[i + half] = p2 + p3;
    }
  }
  return NULL;
}

/*
 * scaleShift(x, scale, shift, y, channels, activation?): y = act(x * scale[c] + shift[c]) over the last axis
 * (`channels` wide): batch norm in evaluation, folded (src/engine/kernels/scale_shift.ts, which it equals bit for
 * bit: a product, then a sum, each rounded to float). activation 0 none, 1 ReLU, 2 ReLU6.
 */
static napi_value scale_shift(napi_env env, napi_callback_info info) {
  const char *fn = "scaleShift";
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc == 5) argv[argc++] = NULL;
  if (!arg_count(env, argc, 6, fn)) return NULL;
  static const char *const names[] = {"x", "scale", "shift", "y"};
  FloatView v[4];
  if (!get_f32_args(env, argv, fn, names, v, 4)) return NULL;
  int64_t C;
  int32_t activation = 0;
  if (!channel_count(env, argv[4], fn, &C)) return NULL;
  if (argv[5] && !activation_kind(env, argv[5], fn, &activation)) return NULL;
  if (v[0].length % (size_t)C != 0) {
    napi_throw_range_error(env, NULL, "scaleShift: x must hold whole rows of `channels` values");
    return NULL;
  }
  const int64_t rows = (int64_t)v[0].length / C;
  if (!check_length(env, fn, "scale", &v[1], C) || !check_length(env, fn, "shift", &v[2], C) ||
      !check_length(env, fn, "y", &v[3], rows * C))
    return NULL;
  const float *x = v[0].data, *a = v[1].data, *b = v[2].data;
  float *y = v[3].data;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * C;
    float *yr = y + r * C;
    for (int64_t c = 0; c < C; c++) {
      const float p = xr[c] * a[c];
      float t = p + b[c];
      if (activation >= 1) t = t > 0 ? t : 0;
      if (activation == 2) t = t < 6 ? t : 6;
      yr[c] = t;
    }
  }
  return NULL;
}

/* convDirect(on?): whether narrow convolutions take the direct kernels; a boolean switches them (benchmarks). */
static napi_value conv_direct(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const Conv probe = {.in_c = 8, .out_c = 8};
  conv_goes_direct(&probe); /* settles the default */
  if (argc == 1) {
    bool on;
    if (napi_get_value_bool(env, argv[0], &on) != napi_ok) {
      napi_throw_type_error(env, NULL, "convDirect: expected a boolean or nothing");
      return NULL;
    }
    direct_mode = on && direct_available();
  }
  napi_value result;
  CHECK(env, napi_get_boolean(env, direct_mode == 1, &result));
  return result;
}

/*
 * smallGemm(on?): whether sgemm of a few rows against a transposed B takes the kernels above; a boolean switches them
 * (benchmarks), "avx2" picks the AVX2 kernel on a CPU with AVX-512 too (tests).
 */
static napi_value small_gemm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const Gemm probe = {.m = 1, .trans_b = true};
  gemm_goes_small(&probe); /* settles the default */
  if (argc == 1) {
    bool on;
    char text[8] = "";
    size_t length = 0;
    if (napi_get_value_bool(env, argv[0], &on) == napi_ok)
      small_mode = on ? small_best() : 0;
    else if (napi_get_value_string_utf8(env, argv[0], text, sizeof text, &length) == napi_ok &&
             strcmp(text, "avx2") == 0)
      small_mode = small_best() > 0 ? 1 : 0;
    else {
      napi_throw_type_error(env, NULL, "smallGemm: expected a boolean, \"avx2\" or nothing");
      return NULL;
    }
  }
  napi_value result;
  CHECK(env, napi_get_boolean(env, small_mode > 0, &result));
  return result;
}

/* OpenBLAS's own description (version, target core, threads), for status messages. */
extern char *openblas_get_config(void);
extern int openblas_get_num_threads(void);

static napi_value config(napi_env env, napi_callback_info info) {
  (void)info;
  char text[256];
  snprintf(text, sizeof text, "%s; %d threads", openblas_get_config(), openblas_get_num_threads());
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sgemm", NULL, sgemm, NULL, NULL, NULL, napi_default_method, NULL},
      {"sgemmStridedBatched", NULL, sgemm_strided_batched, NULL, NULL, NULL, napi_default_method, NULL},
      {"biasActivation", NULL, bias_activation, NULL, NULL, NULL, napi_default_method, NULL},
      {"conv2d", NULL, conv2d, NULL, NULL, NULL, napi_default_method, NULL},
      {"conv2dBackpropInput", NULL, conv2d_backprop_input, NULL, NULL, NULL, napi_default_method, NULL},
      {"conv2dBackpropFilter", NULL, conv2d_backprop_filter, NULL, NULL, NULL, napi_default_method, NULL},
      {"batchNormTrain", NULL, batch_norm_train, NULL, NULL, NULL, napi_default_method, NULL},
      {"batchNormTrainGrad", NULL, batch_norm_train_grad, NULL, NULL, NULL, napi_default_method, NULL},
      {"sparsePerSampleConv2d", NULL, sparse_per_sample_conv2d, NULL, NULL, NULL, napi_default_method, NULL},
      {"convDirect", NULL, conv_direct, NULL, NULL, NULL, napi_default_method, NULL},
      {"smallGemm", NULL, small_gemm, NULL, NULL, NULL, napi_default_method, NULL},
      {"packWeight", NULL, pack_weight, NULL, NULL, NULL, napi_default_method, NULL},
      {"sgemmPacked", NULL, sgemm_packed, NULL, NULL, NULL, napi_default_method, NULL},
      {"packedGemm", NULL, packed_gemm_call, NULL, NULL, NULL, napi_default_method, NULL},
      {"attendCached", NULL, attend_cached_call, NULL, NULL, NULL, napi_default_method, NULL},
      {"rmsNorm", NULL, rms_norm, NULL, NULL, NULL, napi_default_method, NULL},
      {"rotary", NULL, rotary, NULL, NULL, NULL, napi_default_method, NULL},
      {"scaleShift", NULL, scale_shift, NULL, NULL, NULL, napi_default_method, NULL},
      {"config", NULL, config, NULL, NULL, NULL, napi_default_method, NULL},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
