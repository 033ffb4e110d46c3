/*
 * sortednet_dnnl: 2-D convolutions (forward with bias and ReLU/ReLU6 fused, input gradient, filter gradient
 * with the bias gradient; grouped and depthwise too) and the gradient through a fused ReLU/ReLU6 on oneDNN for Float32Arrays owned by JavaScript, including views into the wasm
 * backend's heap. Built beside sortednet_blas (native/blas.c) when libdnnl-dev is installed; used by
 * src/engine/native/dnnl.ts.
 *
 * Activations are NHWC and weights are addressed through explicit element strides, so a sub-network's
 * weight prefix W[:, :, :in, :out] of a larger HWIO tensor is read where it lies, and a filter gradient is
 * written into the corner of a full-shape gradient. oneDNN's JIT convolutions are fast in its own blocked
 * layouts (on NHWC plain it falls back to a GEMM no faster than im2col), so each call reorders its inputs
 * into the layout the primitive chose and its output back; the reorders read and write the strided views
 * directly, which is where the prefix costs no copy of its own.
 *
 * Primitive creation JIT-compiles code (milliseconds), so primitives, their reorders and the blocked buffers
 * are cached by the full problem (pass, shapes, strides, fused ops). Calls are synchronous.
 */
#include <dnnl.h>
#include <node_api.h>
#include <omp.h>
#include <pthread.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(env, call)                                                          \
  do {                                                                            \
    if ((call) != napi_ok) {                                                      \
      napi_throw_error((env), NULL, "sortednet_dnnl: N-API call failed: " #call); \
      return NULL;                                                                \
    }                                                                             \
  } while (0)

/* The geometry vector src/engine/native/dnnl.ts builds, in this order. */
enum {
  G_BATCH,
  G_IN_H,
  G_IN_W,
  G_IN_C,
  G_OUT_H,
  G_OUT_W,
  G_OUT_C,
  G_F_H,
  G_F_W,
  G_STRIDE_H,
  G_STRIDE_W,
  G_DIL_H,
  G_DIL_W,
  G_PAD_T,
  G_PAD_L,
  G_PAD_B,
  G_PAD_R,
  G_GROUPS,
  /* element strides of the weight's (group, out, in, fH, fW) axes in the caller's array */
  G_WS_G,
  G_WS_O,
  G_WS_I,
  G_WS_H,
  G_WS_W,
  G_ACTIVATION, /* 0 none, 1 relu, 2 relu6 (forward only) */
  G_BIAS,       /* 1: forward adds a per-channel bias; the filter pass also writes its gradient */
  G_COUNT
};

enum { PASS_FORWARD, PASS_INPUT, PASS_FILTER, PASS_COUNT };

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int threads = 1;
/* How primitives lay out their operands. LAYOUT_NHWC (the default): activations stay in the caller's NHWC,
 * only the weights are reordered into the layout the primitive chose; with AVX-512 oneDNN has JIT kernels for
 * NHWC data (brgconv forward, jit backward), so no activation crosses a reorder. LAYOUT_BLOCKED: activations
 * reordered into oneDNN's blocked layouts too (where a CPU has JIT kernels only for those, e.g. AVX2).
 * LAYOUT_PLAIN: NHWC/HWIO plain throughout, oneDNN's GEMM fallback (for benchmarks). */
enum { LAYOUT_PLAIN, LAYOUT_BLOCKED, LAYOUT_NHWC };
static int layout_mode = LAYOUT_NHWC;

/* One operand at the boundary: the caller's memory (data handle set per call) and, where the primitive wants
 * another layout, its own buffer and the reorder between the two. */
typedef struct {
  dnnl_memory_t user;
  dnnl_memory_t inner; /* == user when no reorder is needed */
  dnnl_primitive_t reorder;
} Operand;

typedef struct Entry {
  int pass;
  int32_t geometry[G_COUNT];
  dnnl_primitive_t primitive;
  Operand ops[3]; /* forward: src, weights, dst; input: diff_dst, weights, diff_src; filter: src, diff_dst,
                     diff_weights */
  dnnl_memory_t bias;
  const char *impl;
  struct Entry *next;
} Entry;

static Entry *cache = NULL;
/* Worker threads may call in parallel: the cache and the cached buffers are shared, so calls take turns. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int cache_size = 0;
/* Distinct convolutions in one process are few (a network's layers × widths × passes); past this, start over. */
#define CACHE_LIMIT 512

static void operand_free(Operand *o) {
  if (o->reorder) dnnl_primitive_destroy(o->reorder);
  if (o->inner && o->inner != o->user) dnnl_memory_destroy(o->inner);
  if (o->user) dnnl_memory_destroy(o->user);
  memset(o, 0, sizeof *o);
}

static void entry_free(Entry *e) {
  for (int i = 0; i < 3; i++) operand_free(&e->ops[i]);
  if (e->bias) dnnl_memory_destroy(e->bias);
  if (e->primitive) dnnl_primitive_destroy(e->primitive);
  free(e);
}

static void cache_clear(void) {
  while (cache) {
    Entry *next = cache->next;
    entry_free(cache);
    cache = next;
  }
  cache_size = 0;
}

static const char *status_text(dnnl_status_t s) {
  switch (s) {
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "no implementation for this problem";
    case dnnl_runtime_error: return "runtime error";
    default: return "error";
  }
}

#define DNNL(env, call, fail)                                                                              \
  do {                                                                                                     \
    dnnl_status_t s_ = (call);                                                                             \
    if (s_ != dnnl_success) {                                                                              \
      char msg_[400];                                                                                      \
      snprintf(msg_, sizeof msg_, "sortednet_dnnl: %s failed (%s)", #call, status_text(s_));               \
      napi_throw_error((env), NULL, msg_);                                                                 \
      fail;                                                                                                \
    }                                                                                                      \
  } while (0)

/* The caller's NHWC activation [n, c, h, w] (oneDNN's logical order). */
static void nhwc_desc(dnnl_memory_desc_t *md, int64_t n, int64_t c, int64_t h, int64_t w) {
  dnnl_dims_t dims = {n, c, h, w};
  dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc);
}

/* The caller's weights through its strides: (O, I, KH, KW), or (G, O/G, I/G, KH, KW) when grouped. */
static dnnl_status_t weight_desc(dnnl_memory_desc_t *md, const int32_t *g) {
  int G = g[G_GROUPS];
  if (G == 1) {
    dnnl_dims_t dims = {g[G_OUT_C], g[G_IN_C], g[G_F_H], g[G_F_W]};
    dnnl_dims_t strides = {g[G_WS_O], g[G_WS_I], g[G_WS_H], g[G_WS_W]};
    return dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides);
  }
  dnnl_dims_t dims = {G, g[G_OUT_C] / G, g[G_IN_C] / G, g[G_F_H], g[G_F_W]};
  dnnl_dims_t strides = {g[G_WS_G], g[G_WS_O], g[G_WS_I], g[G_WS_H], g[G_WS_W]};
  return dnnl_memory_desc_init_by_strides(md, 5, dims, dnnl_f32, strides);
}

/* The same logical weights with a layout tag (dense plain, or `any` for the primitive to choose). */
static void weight_desc_tag(dnnl_memory_desc_t *md, const int32_t *g, dnnl_format_tag_t tag) {
  int G = g[G_GROUPS];
  if (G == 1) {
    dnnl_dims_t dims = {g[G_OUT_C], g[G_IN_C], g[G_F_H], g[G_F_W]};
    dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag == dnnl_format_tag_any ? tag : dnnl_hwio);
  } else {
    dnnl_dims_t dims = {G, g[G_OUT_C] / G, g[G_IN_C] / G, g[G_F_H], g[G_F_W]};
    dnnl_memory_desc_init_by_tag(md, 5, dims, dnnl_f32, tag == dnnl_format_tag_any ? tag : dnnl_hwigo);
  }
}

/* Elements the caller's array must hold for a strided descriptor: 1 + Σ (dim − 1) · stride. */
static int64_t weight_extent(const int32_t *g) {
  int G = g[G_GROUPS];
  return 1 + (int64_t)(G - 1) * g[G_WS_G] + (int64_t)(g[G_OUT_C] / G - 1) * g[G_WS_O] +
         (int64_t)(g[G_IN_C] / G - 1) * g[G_WS_I] + (int64_t)(g[G_F_H] - 1) * g[G_WS_H] +
         (int64_t)(g[G_F_W] - 1) * g[G_WS_W];
}

/*
 * Binds operand `o` to the caller's layout `user_md` and the primitive's layout `inner_md`; `to_inner` says
 * which way the reorder runs (inputs: user → inner; outputs: inner → user).
 */
static dnnl_status_t operand_init(Operand *o, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *inner_md,
                                  bool to_inner) {
  dnnl_status_t s = dnnl_memory_create(&o->user, user_md, engine, DNNL_MEMORY_NONE);
  if (s != dnnl_success) return s;
  if (dnnl_memory_desc_equal(user_md, inner_md)) {
    o->inner = o->user;
    return dnnl_success;
  }
  s = dnnl_memory_create(&o->inner, inner_md, engine, DNNL_MEMORY_ALLOCATE);
  if (s != dnnl_success) return s;
  dnnl_primitive_desc_t pd;
  s = to_inner ? dnnl_reorder_primitive_desc_create(&pd, user_md, engine, inner_md, engine, NULL)
               : dnnl_reorder_primitive_desc_create(&pd, inner_md, engine, user_md, engine, NULL);
  if (s != dnnl_success) return s;
  s = dnnl_primitive_create(&o->reorder, pd);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

static dnnl_status_t conv_descs(const int32_t *g, int mode, dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei,
                                dnnl_memory_desc_t *dst, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl,
                                dnnl_dims_t pr) {
  if (mode == LAYOUT_BLOCKED) {
    dnnl_dims_t sd = {g[G_BATCH], g[G_IN_C], g[G_IN_H], g[G_IN_W]};
    dnnl_dims_t dd = {g[G_BATCH], g[G_OUT_C], g[G_OUT_H], g[G_OUT_W]};
    dnnl_memory_desc_init_by_tag(src, 4, sd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(dst, 4, dd, dnnl_f32, dnnl_format_tag_any);
    weight_desc_tag(wei, g, dnnl_format_tag_any);
  } else if (mode == LAYOUT_NHWC) {
    nhwc_desc(src, g[G_BATCH], g[G_IN_C], g[G_IN_H], g[G_IN_W]);
    nhwc_desc(dst, g[G_BATCH], g[G_OUT_C], g[G_OUT_H], g[G_OUT_W]);
    weight_desc_tag(wei, g, dnnl_format_tag_any);
  } else {
    nhwc_desc(src, g[G_BATCH], g[G_IN_C], g[G_IN_H], g[G_IN_W]);
    nhwc_desc(dst, g[G_BATCH], g[G_OUT_C], g[G_OUT_H], g[G_OUT_W]);
    weight_desc_tag(wei, g, dnnl_hwio);
  }
  strides[0] = g[G_STRIDE_H];
  strides[1] = g[G_STRIDE_W];
  dil[0] = g[G_DIL_H] - 1; /* TensorFlow counts dilation from 1, oneDNN from 0 */
  dil[1] = g[G_DIL_W] - 1;
  pl[0] = g[G_PAD_T];
  pl[1] = g[G_PAD_L];
  pr[0] = g[G_PAD_B];
  pr[1] = g[G_PAD_R];
  return dnnl_success;
}

/* Creates the primitive for one pass and its operands; NULL with a JavaScript error thrown on failure. */
static Entry *entry_create(napi_env env, int pass, const int32_t *g) {
  Entry *e = calloc(1, sizeof *e);
  if (!e) {
    napi_throw_error(env, NULL, "sortednet_dnnl: out of memory");
    return NULL;
  }
  e->pass = pass;
  memcpy(e->geometry, g, sizeof e->geometry);
  dnnl_memory_desc_t src, wei, dst, bias_md, user_src, user_wei, user_dst;
  dnnl_dims_t strides, dil, pl, pr;
  nhwc_desc(&user_src, g[G_BATCH], g[G_IN_C], g[G_IN_H], g[G_IN_W]);
  nhwc_desc(&user_dst, g[G_BATCH], g[G_OUT_C], g[G_OUT_H], g[G_OUT_W]);
  DNNL(env, weight_desc(&user_wei, g), goto fail);
  bool bias = (pass == PASS_FORWARD || pass == PASS_FILTER) && g[G_BIAS];
  if (bias) {
    dnnl_dims_t bd = {g[G_OUT_C]};
    dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a);
  }

  dnnl_convolution_desc_t fwd_desc, desc;
  dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  if (pass == PASS_FORWARD && g[G_ACTIVATION]) {
    dnnl_post_ops_t post;
    dnnl_post_ops_create(&post);
    if (g[G_ACTIVATION] == 1)
      dnnl_post_ops_append_eltwise(post, 1.f, dnnl_eltwise_relu, 0.f, 0.f);
    else
      dnnl_post_ops_append_eltwise(post, 1.f, dnnl_eltwise_clip, 0.f, 6.f);
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_post_ops(attr, post);
    dnnl_post_ops_destroy(post);
  }
  /* NHWC data is only worth it where oneDNN has a JIT kernel for it; where it would fall back to its GEMM
   * (CPUs without AVX-512, some grouped shapes), the same problem runs in the blocked layouts instead. */
  for (int mode = layout_mode;; mode = LAYOUT_BLOCKED) {
    conv_descs(g, mode, &src, &wei, &dst, strides, dil, pl, pr);
    DNNL(env,
         dnnl_dilated_convolution_forward_desc_init(&fwd_desc, dnnl_forward_training, dnnl_convolution_direct, &src,
                                                    &wei, bias ? &bias_md : NULL, &dst, strides, dil, pl, pr),
         goto fail_pd);
    DNNL(env, dnnl_primitive_desc_create(&fwd_pd, &fwd_desc, attr, engine, NULL), goto fail_pd);
    if (pass == PASS_FORWARD) {
      pd = fwd_pd;
      fwd_pd = NULL;
    } else if (pass == PASS_INPUT) {
      DNNL(env,
           dnnl_dilated_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &src, &wei, &dst,
                                                            strides, dil, pl, pr),
           goto fail_pd);
      DNNL(env, dnnl_primitive_desc_create(&pd, &desc, NULL, engine, fwd_pd), goto fail_pd);
    } else {
      DNNL(env,
           dnnl_dilated_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &src, &wei,
                                                               bias ? &bias_md : NULL, &dst, strides, dil, pl, pr),
           goto fail_pd);
      DNNL(env, dnnl_primitive_desc_create(&pd, &desc, NULL, engine, fwd_pd), goto fail_pd);
    }
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (mode != LAYOUT_NHWC || !impl || !strstr(impl, "gemm")) break;
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
    fwd_pd = NULL;
  }
  DNNL(env, dnnl_primitive_create(&e->primitive, pd), goto fail_pd);
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &e->impl);

  const dnnl_memory_desc_t *q;
  dnnl_status_t s = dnnl_success;
  if (pass == PASS_FORWARD) {
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    s = operand_init(&e->ops[0], &user_src, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[1], &user_wei, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[2], &user_dst, q, false);
    if (s == dnnl_success && bias) s = dnnl_memory_create(&e->bias, &bias_md, engine, DNNL_MEMORY_NONE);
  } else if (pass == PASS_INPUT) {
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    s = operand_init(&e->ops[0], &user_dst, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[1], &user_wei, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[2], &user_src, q, false);
  } else {
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    s = operand_init(&e->ops[0], &user_src, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[1], &user_dst, q, true);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    if (s == dnnl_success) s = operand_init(&e->ops[2], &user_wei, q, false);
    if (s == dnnl_success && bias) s = dnnl_memory_create(&e->bias, &bias_md, engine, DNNL_MEMORY_NONE);
  }
  DNNL(env, s, goto fail_pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
  dnnl_primitive_desc_destroy(pd);
  return e;

fail_pd:
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
  if (pd) dnnl_primitive_desc_destroy(pd);
fail:
  entry_free(e);
  return NULL;
}

static Entry *entry_get(napi_env env, int pass, const int32_t *g) {
  for (Entry *e = cache; e; e = e->next)
    if (e->pass == pass && memcmp(e->geometry, g, sizeof e->geometry) == 0) return e;
  if (cache_size >= CACHE_LIMIT) cache_clear();
  Entry *e = entry_create(env, pass, g);
  if (!e) return NULL;
  e->next = cache;
  cache = e;
  cache_size++;
  return e;
}

static bool get_f32(napi_env env, napi_value v, const char *name, float **data, size_t *length) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined)) {
    *data = NULL;
    *length = 0;
    return true;
  }
  bool is_array = false;
  napi_typedarray_type type;
  void *p;
  if (napi_is_typedarray(env, v, &is_array) != napi_ok || !is_array ||
      napi_get_typedarray_info(env, v, &type, length, &p, NULL, NULL) != napi_ok || type != napi_float32_array) {
    char msg[120];
    snprintf(msg, sizeof msg, "conv: %s must be a Float32Array", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *data = p;
  return true;
}

static bool too_short(napi_env env, const char *name, size_t have, int64_t need) {
  if ((int64_t)have >= need) return false;
  char msg[160];
  snprintf(msg, sizeof msg, "conv: %s holds %zu floats, the geometry needs %lld", name, have, (long long)need);
  napi_throw_range_error(env, NULL, msg);
  return true;
}

static bool geometry_valid(napi_env env, const int32_t *g) {
  for (int i = 0; i < G_COUNT; i++)
    if (g[i] < 0) goto bad;
  if (g[G_BATCH] < 1 || g[G_IN_C] < 1 || g[G_OUT_C] < 1 || g[G_F_H] < 1 || g[G_F_W] < 1 || g[G_STRIDE_H] < 1 ||
      g[G_STRIDE_W] < 1 || g[G_DIL_H] < 1 || g[G_DIL_W] < 1 || g[G_GROUPS] < 1 || g[G_IN_C] % g[G_GROUPS] != 0 ||
      g[G_OUT_C] % g[G_GROUPS] != 0 || g[G_ACTIVATION] > 2)
    goto bad;
  return true;
bad:
  napi_throw_range_error(env, NULL, "conv: invalid geometry (negative or zero size, or channels not a multiple of groups)");
  return false;
}

static void run(napi_env env, int pass, const int32_t *g, float *const *p);

/*
 * conv(pass, geometry: Int32Array, a, b, c, bias?): pass 0 forward (a = x, b = weights, c = y), 1 input
 * gradient (a = dy, b = weights, c = dx), 2 filter gradient (a = x, b = dy, c = dW through the weight strides;
 * elements outside the strided view are not touched; with the geometry's bias flag, `bias` receives the bias
 * gradient's first outC values). Returns nothing; throws on a size mismatch.
 */
static napi_value conv(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "conv: expected (pass, geometry, a, b, c, bias?)");
    return NULL;
  }
  int32_t pass;
  if (napi_get_value_int32(env, argv[0], &pass) != napi_ok || pass < 0 || pass >= PASS_COUNT) {
    napi_throw_type_error(env, NULL, "conv: pass must be 0 (forward), 1 (input gradient) or 2 (filter gradient)");
    return NULL;
  }
  bool is_array = false;
  napi_typedarray_type type;
  size_t glen;
  void *gp;
  if (napi_is_typedarray(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_typedarray_info(env, argv[1], &type, &glen, &gp, NULL, NULL) != napi_ok || type != napi_int32_array ||
      glen != G_COUNT) {
    char msg[100];
    snprintf(msg, sizeof msg, "conv: geometry must be an Int32Array of %d values", G_COUNT);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  int32_t g[G_COUNT];
  memcpy(g, gp, sizeof g);
  if (pass != PASS_FORWARD) g[G_ACTIVATION] = 0;
  if (pass == PASS_INPUT) g[G_BIAS] = 0;
  if (!geometry_valid(env, g)) return NULL;
  float *p[4];
  size_t n[4];
  const char *names[3][3] = {{"x", "weights", "y"}, {"dy", "weights", "dx"}, {"x", "dy", "dW"}};
  for (int i = 0; i < 3; i++)
    if (!get_f32(env, argv[2 + i], names[pass][i], &p[i], &n[i])) return NULL;
  if (!get_f32(env, argv[5], "bias", &p[3], &n[3])) return NULL;
  int64_t xs = (int64_t)g[G_BATCH] * g[G_IN_H] * g[G_IN_W] * g[G_IN_C];
  int64_t ys = (int64_t)g[G_BATCH] * g[G_OUT_H] * g[G_OUT_W] * g[G_OUT_C];
  int64_t ws = weight_extent(g);
  int64_t need[3][3] = {{xs, ws, ys}, {ys, ws, xs}, {xs, ys, ws}};
  for (int i = 0; i < 3; i++)
    if (!p[i] || too_short(env, names[pass][i], n[i], need[pass][i])) {
      if (!p[i]) napi_throw_type_error(env, NULL, "conv: an operand is missing");
      return NULL;
    }
  const char *bias_name = pass == PASS_FORWARD ? "bias" : "the bias gradient";
  if (g[G_BIAS] && (!p[3] || too_short(env, bias_name, n[3], g[G_OUT_C]))) {
    if (!p[3]) napi_throw_type_error(env, NULL, "conv: the geometry asks for a bias and none was given");
    return NULL;
  }

  pthread_mutex_lock(&lock);
  run(env, pass, g, p);
  pthread_mutex_unlock(&lock);
  return NULL;
}

/* One call under the lock; a failure has thrown a JavaScript error. */
static void run(napi_env env, int pass, const int32_t *g, float *const *p) {
  Entry *e = entry_get(env, pass, g);
  if (!e) return;
  omp_set_num_threads(threads);
  for (int i = 0; i < 3; i++) DNNL(env, dnnl_memory_set_data_handle(e->ops[i].user, p[i]), return);
  for (int i = 0; i < 2; i++)
    if (e->ops[i].reorder) {
      dnnl_exec_arg_t ra[] = {{DNNL_ARG_FROM, e->ops[i].user}, {DNNL_ARG_TO, e->ops[i].inner}};
      DNNL(env, dnnl_primitive_execute(e->ops[i].reorder, stream, 2, ra), return);
    }
  static const int args[3][3] = {{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                                 {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
                                 {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}};
  dnnl_exec_arg_t ea[4];
  int na = 0;
  for (int i = 0; i < 3; i++) ea[na++] = (dnnl_exec_arg_t){args[pass][i], e->ops[i].inner};
  if (e->bias) {
    DNNL(env, dnnl_memory_set_data_handle(e->bias, p[3]), return);
    ea[na++] = (dnnl_exec_arg_t){pass == PASS_FORWARD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, e->bias};
  }
  DNNL(env, dnnl_primitive_execute(e->primitive, stream, na, ea), return);
  if (e->ops[2].reorder) {
    dnnl_exec_arg_t ra[] = {{DNNL_ARG_FROM, e->ops[2].inner}, {DNNL_ARG_TO, e->ops[2].user}};
    DNNL(env, dnnl_primitive_execute(e->ops[2].reorder, stream, 2, ra), return);
  }
  DNNL(env, dnnl_stream_wait(stream), return);
}

/* The three Float32Arrays of an elementwise function, of one length; false with a JavaScript error thrown. */
static bool same_length_f32(napi_env env, const char *fn, const napi_value *argv, const char *const names[3],
                            float *p[3], long *count) {
  size_t n[3];
  for (int i = 0; i < 3; i++) {
    if (!get_f32(env, argv[i], names[i], &p[i], &n[i])) return false;
    if (!p[i] || n[i] != n[0]) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s: %s, %s and %s must be Float32Arrays of one length", fn, names[0], names[1],
               names[2]);
      napi_throw_range_error(env, NULL, msg);
      return false;
    }
  }
  *count = (long)n[0];
  return true;
}

/*
 * activationGrad(kind, dy, y, dx): the gradient through a ReLU (kind 1) or ReLU6 (kind 2) fused into a
 * forward convolution, from its output y: dx = dy where 0 < y (< 6), else 0. One pass where tfjs's own
 * gradient takes three kernels (step, cast, multiply) over the whole activation.
 */
/* Elementwise passes below this many floats stay on one thread (a wake-up costs more than it saves). */
#define PARALLEL_MIN (1 << 21)

static napi_value activation_grad(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t kind;
  if (argc != 4 || napi_get_value_int32(env, argv[0], &kind) != napi_ok || kind < 1 || kind > 2) {
    napi_throw_type_error(env, NULL, "activationGrad: expected (kind 1 relu | 2 relu6, dy, y, dx)");
    return NULL;
  }
  static const char *const names[3] = {"dy", "y", "dx"};
  float *p[3];
  long count;
  if (!same_length_f32(env, "activationGrad", argv + 1, names, p, &count)) return NULL;
  const uint32_t *restrict dy = (const uint32_t *)p[0];
  const float *restrict y = p[1];
  uint32_t *restrict dx = (uint32_t *)p[2];
  const float upper = kind == 2 ? 6.f : INFINITY;
  /* A bit mask, not a branch (the signs of y are as good as random) or a select: GCC vectorises this at -O2. */
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (long i = 0; i < count; i++) dx[i] = dy[i] & -(uint32_t)((y[i] > 0.f) & (y[i] < upper));
  return NULL;
}

/*
 * addRelu(a, b, y): y = max(a + b, 0), the end of a residual block, whose gradient is activationGrad's (from y);
 * tfjs would run an add, a ReLU and, backwards, three kernels for the ReLU's gradient.
 */
static napi_value add_relu(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) {
    napi_throw_type_error(env, NULL, "addRelu: expected (a, b, y)");
    return NULL;
  }
  static const char *const names[3] = {"a", "b", "y"};
  float *p[3];
  long count;
  if (!same_length_f32(env, "addRelu", argv, names, p, &count)) return NULL;
  const float *restrict a = p[0], *restrict b = p[1];
  float *restrict y = p[2];
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (long i = 0; i < count; i++) {
    const float v = a[i] + b[i];
    y[i] = v > 0.f ? v : 0.f;
  }
  return NULL;
}

/* The implementation oneDNN picked for a pass and geometry (creating it if need be), e.g. "jit:avx2". */
static napi_value implementation(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t pass;
  napi_typedarray_type type;
  size_t glen;
  void *gp;
  bool is_array = false;
  if (argc != 2 || napi_get_value_int32(env, argv[0], &pass) != napi_ok || pass < 0 || pass >= PASS_COUNT ||
      napi_is_typedarray(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_typedarray_info(env, argv[1], &type, &glen, &gp, NULL, NULL) != napi_ok || type != napi_int32_array ||
      glen != G_COUNT) {
    napi_throw_type_error(env, NULL, "implementation: expected (pass, geometry)");
    return NULL;
  }
  int32_t g[G_COUNT];
  memcpy(g, gp, sizeof g);
  if (pass != PASS_FORWARD) g[G_ACTIVATION] = 0;
  if (pass == PASS_INPUT) g[G_BIAS] = 0;
  if (!geometry_valid(env, g)) return NULL;
  Entry *e = entry_get(env, pass, g);
  if (!e) return NULL;
  char text[160];
  snprintf(text, sizeof text, "%s%s", e->impl ? e->impl : "?", e->ops[0].reorder || e->ops[2].reorder ? " (reordered)" : "");
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* setThreads(n): the threads each call uses (the engine passes OpenBLAS's count). Returns the count. */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t n;
  if (argc == 1) {
    if (napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) {
      napi_throw_range_error(env, NULL, "setThreads: expected a positive integer");
      return NULL;
    }
    threads = n;
  }
  napi_value out;
  CHECK(env, napi_create_int32(env, threads, &out));
  return out;
}

/* layout(mode?): "nhwc" (default), "blocked" or "plain" (see LAYOUT_*); switching empties the primitive cache.
 * Returns the current mode. For benchmarks and for CPUs where one mode is faster. */
static const char *layout_names[] = {"plain", "blocked", "nhwc"};

static napi_value layout(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc == 1) {
    char name[16];
    size_t len;
    int mode = -1;
    if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) == napi_ok)
      for (int i = 0; i < 3; i++)
        if (strcmp(name, layout_names[i]) == 0) mode = i;
    if (mode < 0) {
      napi_throw_type_error(env, NULL, "layout: expected \"nhwc\", \"blocked\", \"plain\" or nothing");
      return NULL;
    }
    if (mode != layout_mode) cache_clear();
    layout_mode = mode;
  }
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, layout_names[layout_mode], NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value config(napi_env env, napi_callback_info info) {
  (void)info;
  const dnnl_version_t *v = dnnl_version();
  char text[160];
  snprintf(text, sizeof text, "oneDNN %d.%d.%d; %d threads; %d primitives cached", v->major, v->minor, v->patch,
           threads, cache_size);
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* OpenBLAS's rule for its thread count, so both libraries use the same number without the BLAS addon. */
static int default_threads(void) {
  const char *vars[] = {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"};
  for (int i = 0; i < 3; i++) {
    const char *v = getenv(vars[i]);
    if (v && atoi(v) > 0) return atoi(v);
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static void cleanup(void *arg) {
  (void)arg;
  cache_clear();
}

static napi_value init(napi_env env, napi_value exports) {
  if (!engine) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
      napi_throw_error(env, NULL, "sortednet_dnnl: could not create a oneDNN CPU engine");
      return NULL;
    }
    threads = default_threads();
    const char *mode = getenv("SORTEDNET_DNNL_LAYOUT");
    for (int i = 0; mode && i < 3; i++)
      if (strcmp(mode, layout_names[i]) == 0) layout_mode = i;
  }
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  napi_property_descriptor props[] = {
      {"conv", NULL, conv, NULL, NULL, NULL, napi_default_method, NULL},
      {"activationGrad", NULL, activation_grad, NULL, NULL, NULL, napi_default_method, NULL},
      {"addRelu", NULL, add_relu, NULL, NULL, NULL, napi_default_method, NULL},
      {"implementation", NULL, implementation, NULL, NULL, NULL, napi_default_method, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default_method, NULL},
      {"layout", NULL, layout, NULL, NULL, NULL, napi_default_method, NULL},
      {"config", NULL, config, NULL, NULL, NULL, napi_default_method, NULL},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
