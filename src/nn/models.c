/* MLP and Conv4 (4 x [conv3x3, batch-norm, ReLU, max-pool 2x2] + linear head, as in the MAML
 * and Prototypical Networks papers), written as functions of explicit weight nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/nn.h"

ml_conv4_config ml_conv4_defaults(void) {
  return (ml_conv4_config){.in_channels = 1, .image_size = 28, .filters = 64, .blocks = 4, .n_out = 5,
                           .batch_norm = true, .max_pool = true, .bn_eps = 1e-5f};
}

static ml_model *model_alloc(ml_model_kind kind) {
  ml_model *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->kind = kind;
  m->params = ml_params_new();
  if (!m->params) {
    free(m);
    return NULL;
  }
  return m;
}

ml_status ml_custom_model_new(ml_params *params, int64_t head_first, ml_model_forward_fn forward_fn, void *user,
                              ml_model **out) {
  *out = NULL;
  if (!params || !params->finalized || !forward_fn || head_first < 0 || head_first > params->count)
    return ml_error(ML_ERR_ARG, "custom model: needs finalized parameters, a forward function and 0 <= head_first <= count");
  ml_model *m = calloc(1, sizeof *m);
  if (!m) return ml_error(ML_ERR_NOMEM, "custom model: out of memory");
  m->kind = ML_MODEL_CUSTOM, m->params = params, m->head_first = head_first;
  m->custom_forward = forward_fn, m->custom_ctx = user;
  *out = m;
  return ML_OK;
}

void ml_model_free(ml_model *m) {
  if (!m) return;
  ml_params_free(m->params);
  free(m);
}

static ml_status add(ml_model *m, const char *name, int ndim, const int64_t *shape) {
  return ml_params_add(m->params, name, ndim, shape);
}

static ml_status act_check(ml_activation a) {
  return a >= ML_ACT_RELU && a <= ML_ACT_NONE ? ML_OK : ml_error(ML_ERR_ARG, "mlp: unknown activation %d", (int)a);
}

ml_status ml_mlp_new(const ml_mlp_config *cfg, uint64_t seed, ml_model **out) {
  *out = NULL;
  if (cfg->n_layers < 1 || cfg->n_layers > ML_MLP_MAX_LAYERS)
    return ml_error(ML_ERR_ARG, "mlp: %lld layers (1 to %d)", (long long)cfg->n_layers, ML_MLP_MAX_LAYERS);
  for (int64_t i = 0; i <= cfg->n_layers; i++)
    if (cfg->sizes[i] < 1) return ml_error(ML_ERR_ARG, "mlp: layer size %lld is %lld", (long long)i, (long long)cfg->sizes[i]);
  ml_status st = act_check(cfg->act);
  if (st) return st;
  ml_model *m = model_alloc(ML_MODEL_MLP);
  if (!m) return ml_error(ML_ERR_NOMEM, "mlp: out of memory");
  m->mlp = *cfg;
  char name[64];
  for (int64_t i = 0; i < cfg->n_layers && !st; i++) {
    bool head = i == cfg->n_layers - 1;
    if (head) m->head_first = m->params->count;
    snprintf(name, sizeof name, head ? "head.weight" : "fc%lld.weight", (long long)i + 1);
    st = add(m, name, 2, (int64_t[]){cfg->sizes[i + 1], cfg->sizes[i]});
    snprintf(name, sizeof name, head ? "head.bias" : "fc%lld.bias", (long long)i + 1);
    if (!st) st = add(m, name, 1, (int64_t[]){cfg->sizes[i + 1]});
  }
  m->feature_dim = cfg->sizes[cfg->n_layers - 1];
  if (!st) st = ml_params_finalize(m->params);
  if (st) {
    ml_model_free(m);
    return st;
  }
  ml_rng r;
  ml_rng_init(&r, seed, 0x6d6c70);
  /* PyTorch's nn.Linear default (kaiming_uniform with a = sqrt(5)): U(+-1/sqrt(fan_in)) for
   * weights and biases, so parity runs against PyTorch start from the same law. */
  for (int64_t i = 0; i < cfg->n_layers; i++) {
    ml_param *w = &m->params->items[2 * i], *b = &m->params->items[2 * i + 1];
    ml_init_fan_in_uniform(&w->value, cfg->sizes[i], &r);
    ml_init_fan_in_uniform(&b->value, cfg->sizes[i], &r);
  }
  *out = m;
  return ML_OK;
}

static int64_t conv4_out_size(const ml_conv4_config *c) {
  int64_t s = c->image_size;
  for (int64_t i = 0; i < c->blocks; i++) s = c->max_pool ? s / 2 : (s + 2 - 3) / 2 + 1;
  return s;
}

ml_status ml_conv4_new(const ml_conv4_config *cfg, uint64_t seed, ml_model **out) {
  *out = NULL;
  if (cfg->in_channels < 1 || cfg->filters < 1 || cfg->blocks < 1 || cfg->blocks > 8 || cfg->n_out < 0)
    return ml_error(ML_ERR_ARG, "conv4: invalid configuration (channels %lld, filters %lld, blocks %lld, out %lld)",
                    (long long)cfg->in_channels, (long long)cfg->filters, (long long)cfg->blocks, (long long)cfg->n_out);
  if (conv4_out_size(cfg) < 1)
    return ml_error(ML_ERR_ARG, "conv4: images of %lld pixels are too small for %lld blocks",
                    (long long)cfg->image_size, (long long)cfg->blocks);
  ml_model *m = model_alloc(ML_MODEL_CONV4);
  if (!m) return ml_error(ML_ERR_NOMEM, "conv4: out of memory");
  m->conv = *cfg;
  ml_status st = ML_OK;
  char name[64];
  int64_t F = cfg->filters;
  for (int64_t i = 0; i < cfg->blocks && !st; i++) {
    int64_t cin = i == 0 ? cfg->in_channels : F;
    snprintf(name, sizeof name, "conv%lld.weight", (long long)i + 1);
    st = add(m, name, 4, (int64_t[]){F, cin, 3, 3});
    snprintf(name, sizeof name, "conv%lld.bias", (long long)i + 1);
    if (!st) st = add(m, name, 1, (int64_t[]){F});
    if (cfg->batch_norm) {
      snprintf(name, sizeof name, "bn%lld.weight", (long long)i + 1);
      if (!st) st = add(m, name, 1, (int64_t[]){F});
      snprintf(name, sizeof name, "bn%lld.bias", (long long)i + 1);
      if (!st) st = add(m, name, 1, (int64_t[]){F});
    }
  }
  int64_t s = conv4_out_size(cfg);
  m->feature_dim = F * s * s;
  m->head_first = m->params->count;
  if (cfg->n_out > 0 && !st) {
    st = add(m, "head.weight", 2, (int64_t[]){cfg->n_out, m->feature_dim});
    if (!st) st = add(m, "head.bias", 1, (int64_t[]){cfg->n_out});
  }
  if (!st) st = ml_params_finalize(m->params);
  if (st) {
    ml_model_free(m);
    return st;
  }
  ml_rng r;
  ml_rng_init(&r, seed, 0x636f6e76);
  /* Conv weights Xavier-uniform with zero bias, as the MAML Omniglot code (and learn2learn's
   * port) initializes them; batch-norm starts as the identity. */
  int64_t k = 0;
  for (int64_t i = 0; i < cfg->blocks; i++) {
    int64_t fan_in = (i == 0 ? cfg->in_channels : F) * 9;
    ml_init_xavier_uniform(&m->params->items[k++].value, fan_in, F * 9, &r);
    ml_tensor_fill(&m->params->items[k++].value, 0.0f);
    if (cfg->batch_norm) {
      ml_tensor_fill(&m->params->items[k++].value, 1.0f);
      ml_tensor_fill(&m->params->items[k++].value, 0.0f);
    }
  }
  if (cfg->n_out > 0) {
    /* PyTorch's nn.Linear default: weights and bias U(+-1/sqrt(fan_in)). */
    ml_init_fan_in_uniform(&m->params->items[k++].value, m->feature_dim, &r);
    ml_init_fan_in_uniform(&m->params->items[k++].value, m->feature_dim, &r);
  }
  *out = m;
  return ML_OK;
}

ml_status ml_model_leaves(const ml_model *m, ml_graph *g, bool requires_grad, ml_node **w) {
  for (int64_t i = 0; i < m->params->count; i++) {
    w[i] = ml_leaf(g, m->params->items[i].value, requires_grad);
    if (!w[i]) return ml_graph_status(g);
  }
  return ML_OK;
}

static ml_node *activate(ml_graph *g, ml_node *x, ml_activation a) {
  switch (a) {
    case ML_ACT_RELU:
      return ml_relu(g, x);
    case ML_ACT_TANH:
      return ml_tanh(g, x);
    case ML_ACT_SIGMOID:
      return ml_sigmoid(g, x);
    default:
      return x;
  }
}

ml_status ml_model_custom_new(ml_model_forward_fn forward, void *ctx, ml_model **out) {
  *out = NULL;
  if (!forward) return ml_error(ML_ERR_ARG, "custom model: no forward function");
  ml_model *m = model_alloc(ML_MODEL_CUSTOM);
  if (!m) return ml_error(ML_ERR_NOMEM, "custom model: out of memory");
  m->custom_forward = forward;
  m->custom_ctx = ctx;
  *out = m;
  return ML_OK;
}

/* Nothing of a block will be differentiated: the graph records nothing, or neither its input
 * nor its weights require a gradient. */
static bool lean_block(ml_graph *g, const ml_node *h, ml_node *const *w, int64_t nw) {
  if (!ml_graph_is_recording(g)) return true;
  if (h->requires_grad) return false;
  for (int64_t i = 0; i < nw; i++)
    if (w[i] && w[i]->requires_grad) return false;
  return true;
}

/* A block whose convolution is cheap enough (a first layer: few input channels) to be computed
 * again instead of stored: conv + batch-norm + pool in one op (ml_conv_bn_pool), which keeps
 * only the pooled output, a quarter of the convolution's (the largest activation of the net).
 * Only for a large output: while it stays in cache, storing it is cheaper than computing it
 * again (Conv4's first layer, forward + backward: 10 images 0.59 ms unfused, 0.89 ms fused; 75
 * images in a MAML step, fused is faster; 600 images 127 vs 64 ms). */
#define FUSED_MAX_TAPS 27                /* C * 3 * 3: RGB */
#define FUSED_MIN_OUTPUT (2 << 20)       /* floats of convolution output: 8 MB, 40 Omniglot images */
static bool fused_block(const ml_conv4_config *c, const ml_node *h) {
  if (!c->batch_norm || !c->max_pool || !h || h->value.shape[1] * 9 > FUSED_MAX_TAPS || h->value.shape[2] < 2 ||
      h->value.shape[3] < 2)
    return false;
  return h->value.shape[0] * c->filters * h->value.shape[2] * h->value.shape[3] >= FUSED_MIN_OUTPUT;
}

/* A Conv4 block for inference: the block's output goes to a tensor allocated before the block
 * and everything else the block made (the full-size convolution output, the scratch) is given
 * back at once, so a forward pass holds one block's temporaries instead of all of them. The
 * same ops as the recorded path, so the same values bit for bit. */
static ml_node *block_no_grad(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *h) {
  const ml_conv4_config *c = &m->conv;
  int64_t B = h->value.shape[0], H = h->value.shape[2], W = h->value.shape[3], OH, OW;
  if (c->max_pool) OH = H / 2, OW = W / 2;
  else OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
  ml_node *dst = ml_new(g, 4, (int64_t[]){B, c->filters, OH > 0 ? OH : 1, OW > 0 ? OW : 1});
  if (!dst) return NULL;
  const ml_graph_mark mark = ml_graph_get_mark(g);
  ml_node *y;
  bool relu_done = true;
  if (fused_block(c, h)) {
    y = ml_conv_bn_pool(g, h, w[0], w[1], w[2], w[3], 1, c->bn_eps, true);
  } else {
    y = ml_conv2d(g, h, w[0], w[1], c->max_pool ? 1 : 2, 1);
    if (c->batch_norm && c->max_pool && y && y->value.shape[2] >= 2) {
      y = ml_batch_norm_pool(g, y, w[2], w[3], c->bn_eps, true);
    } else {
      if (c->batch_norm) y = ml_batch_norm(g, y, w[2], w[3], c->bn_eps);
      if (c->max_pool) y = ml_maxpool2(g, y);
      relu_done = false;
    }
  }
  bool ok = y && y->value.numel == dst->value.numel;
  if (ok && relu_done)
    memcpy(dst->value.data, y->value.data, (size_t)y->value.numel * sizeof(float));
  else if (ok)
    ml_unary(ML_UN_RELU, dst->value.data, y->value.data, y->value.numel);
  ml_graph_rewind(g, mark);
  return ok ? dst : NULL;
}

ml_node *ml_model_features(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x) {
  if (!x) return NULL;
  if (m->kind == ML_MODEL_CUSTOM) return x;
  if (m->kind == ML_MODEL_MLP) {
    ml_node *h = x;
    if (h->value.ndim != 2) h = ml_reshape(g, h, 2, (int64_t[]){h->value.shape[0], h->value.numel / h->value.shape[0]});
    for (int64_t i = 0; i + 1 < m->mlp.n_layers; i++) h = activate(g, ml_linear(g, h, w[2 * i], w[2 * i + 1]), m->mlp.act);
    return h;
  }
  const ml_conv4_config *c = &m->conv;
  ml_node *h = x;
  if (h->value.ndim != 4) {
    int64_t B = h->value.shape[0];
    h = ml_reshape(g, h, 4, (int64_t[]){B, c->in_channels, c->image_size, c->image_size});
  }
  int64_t k = 0;
  for (int64_t i = 0; i < c->blocks; i++) {
    int64_t nw = c->batch_norm ? 4 : 2;
    if (h && lean_block(g, h, w + k, nw)) {
      h = block_no_grad(m, g, w + k, h);
      k += nw;
      continue;
    }
    if (fused_block(c, h)) {
      h = ml_conv_bn_pool(g, h, w[k], w[k + 1], w[k + 2], w[k + 3], 1, c->bn_eps, true);
      k += 4;
      continue;
    }
    h = ml_conv2d(g, h, w[k], w[k + 1], c->max_pool ? 1 : 2, 1);
    k += 2;
    /* max-pool then ReLU: the same values and gradients as ReLU then max-pool (max commutes with
     * a monotone function; where the window's max is <= 0 both give 0 and a zero gradient), with
     * the ReLU and its backward on a quarter of the data; batch-norm, pool and ReLU are one op, so neither the
     * normalized full-size tensor nor a second copy of the pooled one is stored */
    if (c->batch_norm && c->max_pool && h && h->value.shape[2] >= 2) {
      h = ml_batch_norm_pool(g, h, w[k], w[k + 1], c->bn_eps, true);
      k += 2;
      continue;
    }
    if (c->batch_norm) {
      h = ml_batch_norm(g, h, w[k], w[k + 1], c->bn_eps);
      k += 2;
    }
    if (c->max_pool) h = ml_maxpool2(g, h);
    h = ml_relu(g, h);
  }
  if (!h) return NULL;
  return ml_reshape(g, h, 2, (int64_t[]){h->value.shape[0], m->feature_dim});
}

ml_node *ml_model_head(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *features) {
  if (m->kind == ML_MODEL_CUSTOM) return features ? m->custom_forward(m, g, w, features) : NULL;
  if (m->head_first >= m->params->count) return features;
  return ml_linear(g, features, w[m->head_first], w[m->head_first + 1]);
}

ml_node *ml_model_forward(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x) {
  return ml_model_head(m, g, w, ml_model_features(m, g, w, x));
}
