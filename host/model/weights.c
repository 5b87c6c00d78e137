/* weights.c — see weights.h. Layout: 1. binding names to tensors with shape checks (and comparing two
 * checkpoints' shapes); 1b. GPT-2's Conv1D tensors transposed into derived ones; 2. widening; 3. the
 * linear (fused for a few rows of x, tiled through sgemm otherwise). */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "core/strutil.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/linear_fused.h"

static const char *const module_names[DK_N_MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};

const char *dk_module_name(dk_module m) { return (m >= 0 && m < DK_N_MODULES) ? module_names[m] : "?"; }

/* ---------------------------------------------------------------------------------------------------
 * 1. Binding */

/* <prefix><suffix>, required, with this shape (d1 unused when ndim is 1). */
static const dk_st_tensor *bind(const dk_model_weights *w, const char *suffix, int ndim, int64_t d0, int64_t d1,
                                dk_err *err) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", w->prefix, suffix);
    int64_t shape[2] = {d0, d1};
    return dk_st_require(w->ck, name, ndim, shape, err);
}

/* <prefix>layers.<l>.<suffix>, required, with this shape. */
static const dk_st_tensor *bind_layer(const dk_model_weights *w, int64_t l, const char *suffix, int ndim, int64_t d0,
                                      int64_t d1, dk_err *err) {
    char layer_suffix[192];
    snprintf(layer_suffix, sizeof layer_suffix, "layers.%lld.%s", (long long)l, suffix);
    return bind(w, layer_suffix, ndim, d0, d1, err);
}

/* Which prefix the checkpoint uses for the language model. */
static int find_prefix(dk_model_weights *w, const dk_hf_config *cfg, dk_err *err) {
    static const char *const decoder[] = {"model.", "model.language_model.", "language_model.model."};
    static const char *const gpt2[] = {"transformer.", ""};
    const bool is_gpt2 = cfg->arch == DK_ARCH_GPT2;
    const char *const *candidates = is_gpt2 ? gpt2 : decoder;
    const size_t n = is_gpt2 ? 2 : 3;
    const char *embedding = is_gpt2 ? "wte.weight" : "embed_tokens.weight";
    dk_strbuf looked = {0};
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", candidates[i], embedding);
        if (dk_st_find(w->ck, name)) {
            snprintf(w->prefix, sizeof w->prefix, "%s", candidates[i]);
            dk_strbuf_free(&looked);
            return 0;
        }
        dk_strbuf_printf(&looked, "%s%s", i ? ", " : "", name);
    }
    dk_err_set(err, DK_EXIT_RUNTIME, "%s: no embedding tensor found (looked for %s); is this a %s checkpoint?",
               w->ck->path, looked.data, cfg->architecture);
    dk_strbuf_free(&looked);
    return -1;
}

/* ---------------------------------------------------------------------------------------------------
 * 1b. GPT-2: Conv1D weights (in, out) become (out, in) tensors, c_attn split into q, k, v */

static dk_st_tensor *new_derived(dk_model_weights *w, const dk_st_tensor *src, const char *name) {
    CHECK(w->derived && w->n_derived < (size_t)(9 * w->n_layers), "derived tensor table full (a bug)");
    dk_st_tensor *d = &w->derived[w->n_derived++];
    *d = *src;
    d->name = dk_strdup(name);
    return d;
}

/* Columns [col0, col0 + cols) of a 2-D (rows, C) tensor, transposed into a new (cols, rows) tensor of the
 * same dtype. */
static const dk_st_tensor *transposed(dk_model_weights *w, const dk_st_tensor *src, int64_t col0, int64_t cols,
                                      const char *name) {
    const int64_t rows = src->shape[0], C = src->shape[1];
    const size_t elem = src->dtype == DK_DTYPE_F32 ? 4 : 2;
    unsigned char *data = dk_malloc((size_t)(rows * cols) * elem);
    const unsigned char *s = src->data;
    enum { BLOCK = 64 }; /* blocks of 64 x 64 keep both sides in cache */
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK)
        for (int64_t c0 = 0; c0 < cols; c0 += BLOCK)
            for (int64_t c = c0; c < cols && c < c0 + BLOCK; c++)
                for (int64_t r = r0; r < rows && r < r0 + BLOCK; r++)
                    memcpy(data + (size_t)(c * rows + r) * elem, s + (size_t)(r * C + col0 + c) * elem, elem);
    dk_st_tensor *d = new_derived(w, src, name);
    w->derived_data[w->n_derived - 1] = data;
    d->shape[0] = cols;
    d->shape[1] = rows;
    d->numel = rows * cols;
    d->data = data;
    d->nbytes = (size_t)(rows * cols) * elem;
    d->offset = 0;
    return d;
}

/* Elements [start, start + n) of a 1-D tensor, as a tensor viewing the mapping. */
static const dk_st_tensor *slice(dk_model_weights *w, const dk_st_tensor *src, int64_t start, int64_t n,
                                 const char *name) {
    const size_t elem = src->dtype == DK_DTYPE_F32 ? 4 : 2;
    dk_st_tensor *d = new_derived(w, src, name);
    d->shape[0] = n;
    d->numel = n;
    d->data = (const unsigned char *)src->data + (size_t)start * elem;
    d->nbytes = (size_t)n * elem;
    d->offset = src->offset + (size_t)start * elem;
    return d;
}

/* <prefix>h.<l>.<suffix>, required, with this shape. */
static const dk_st_tensor *gpt2_tensor(const dk_model_weights *w, int64_t l, const char *suffix, int ndim, int64_t d0,
                                       int64_t d1, dk_err *err) {
    char name[192];
    snprintf(name, sizeof name, "%sh.%lld.%s", w->prefix, (long long)l, suffix);
    int64_t shape[2] = {d0, d1};
    return dk_st_require(w->ck, name, ndim, shape, err);
}

static int bind_gpt2_layer(dk_model_weights *w, const dk_hf_config *cfg, int64_t l, dk_err *err) {
    dk_layer_weights *lw = &w->layers[l];
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size;
    char name[192];
    const dk_st_tensor *ln_1_w, *ln_1_b, *ln_2_w, *ln_2_b, *attn_w, *attn_b, *proj_w, *proj_b, *fc_w, *fc_b, *down_w,
        *down_b;
    if (!(ln_1_w = gpt2_tensor(w, l, "ln_1.weight", 1, H, 0, err)) ||
        !(ln_1_b = gpt2_tensor(w, l, "ln_1.bias", 1, H, 0, err)) ||
        !(ln_2_w = gpt2_tensor(w, l, "ln_2.weight", 1, H, 0, err)) ||
        !(ln_2_b = gpt2_tensor(w, l, "ln_2.bias", 1, H, 0, err)) ||
        !(attn_w = gpt2_tensor(w, l, "attn.c_attn.weight", 2, H, 3 * H, err)) ||
        !(attn_b = gpt2_tensor(w, l, "attn.c_attn.bias", 1, 3 * H, 0, err)) ||
        !(proj_w = gpt2_tensor(w, l, "attn.c_proj.weight", 2, H, H, err)) ||
        !(proj_b = gpt2_tensor(w, l, "attn.c_proj.bias", 1, H, 0, err)) ||
        !(fc_w = gpt2_tensor(w, l, "mlp.c_fc.weight", 2, H, I, err)) ||
        !(fc_b = gpt2_tensor(w, l, "mlp.c_fc.bias", 1, I, 0, err)) ||
        !(down_w = gpt2_tensor(w, l, "mlp.c_proj.weight", 2, I, H, err)) ||
        !(down_b = gpt2_tensor(w, l, "mlp.c_proj.bias", 1, H, 0, err)))
        return -1;
    lw->input_norm = ln_1_w;
    lw->input_norm_bias = ln_1_b;
    lw->post_attn_norm = ln_2_w;
    lw->post_attn_norm_bias = ln_2_b;
    static const char *const qkv[3] = {"q", "k", "v"};
    for (int j = 0; j < 3; j++) {
        dk_linear_weight *p = &lw->proj[DK_MOD_Q + j];
        snprintf(name, sizeof name, "%sh.%lld.attn.c_attn.weight[%s, transposed]", w->prefix, (long long)l, qkv[j]);
        p->weight = transposed(w, attn_w, j * H, H, name);
        snprintf(name, sizeof name, "%sh.%lld.attn.c_attn.bias[%s]", w->prefix, (long long)l, qkv[j]);
        p->bias = slice(w, attn_b, j * H, H, name);
        p->out_features = p->in_features = H;
    }
    const struct {
        dk_module m;
        const dk_st_tensor *weight, *bias;
        int64_t out, in;
    } plain[] = {{DK_MOD_O, proj_w, proj_b, H, H}, {DK_MOD_UP, fc_w, fc_b, I, H}, {DK_MOD_DOWN, down_w, down_b, H, I}};
    for (size_t j = 0; j < sizeof plain / sizeof plain[0]; j++) {
        dk_linear_weight *p = &lw->proj[plain[j].m];
        snprintf(name, sizeof name, "%s[transposed]", plain[j].weight->name);
        p->weight = transposed(w, plain[j].weight, 0, plain[j].out, name);
        p->bias = plain[j].bias;
        p->out_features = plain[j].out;
        p->in_features = plain[j].in;
    }
    lw->proj[DK_MOD_GATE] = (dk_linear_weight){.out_features = I, .in_features = H}; /* no gate */
    return 0;
}

static int bind_gpt2(dk_model_weights *w, const dk_hf_config *cfg, dk_err *err) {
    const int64_t V = cfg->vocab_size, H = cfg->hidden_size, P = cfg->max_position_embeddings;
    w->derived = dk_calloc((size_t)(9 * w->n_layers), sizeof *w->derived);
    w->derived_data = dk_calloc((size_t)(9 * w->n_layers), sizeof *w->derived_data);
    if (!(w->embed = bind(w, "wte.weight", 2, V, H, err)) || !(w->pos_embed = bind(w, "wpe.weight", 2, P, H, err)) ||
        !(w->final_norm = bind(w, "ln_f.weight", 1, H, 0, err)) ||
        !(w->final_norm_bias = bind(w, "ln_f.bias", 1, H, 0, err)))
        return -1;
    if (cfg->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else if (!(w->lm_head = dk_st_require(w->ck, "lm_head.weight", 2, (int64_t[]){V, H}, err))) {
        return -1;
    }
    for (int64_t l = 0; l < w->n_layers; l++)
        if (bind_gpt2_layer(w, cfg, l, err) != 0) return -1;
    return 0;
}

static int bind_layer_weights(dk_model_weights *w, const dk_hf_config *cfg, int64_t l, dk_err *err) {
    dk_layer_weights *lw = &w->layers[l];
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, D = cfg->head_dim;
    const int64_t q_out = cfg->num_attention_heads * D, kv_out = cfg->num_key_value_heads * D;
    const int64_t out[DK_N_MODULES] = {q_out, kv_out, kv_out, H, I, I, H};
    const int64_t in[DK_N_MODULES] = {H, H, H, q_out, H, H, I};
    const bool has_bias[DK_N_MODULES] = {cfg->qkv_bias, cfg->qkv_bias, cfg->qkv_bias, cfg->o_bias,
                                         cfg->mlp_bias, cfg->mlp_bias, cfg->mlp_bias};
    if (!(lw->input_norm = bind_layer(w, l, "input_layernorm.weight", 1, H, 0, err))) return -1;
    if (!(lw->post_attn_norm = bind_layer(w, l, "post_attention_layernorm.weight", 1, H, 0, err))) return -1;
    if (cfg->gemma_norms) {
        if (!(lw->pre_ff_norm = bind_layer(w, l, "pre_feedforward_layernorm.weight", 1, H, 0, err))) return -1;
        if (!(lw->post_ff_norm = bind_layer(w, l, "post_feedforward_layernorm.weight", 1, H, 0, err))) return -1;
    }
    if (cfg->qk_norm) {
        if (!(lw->q_norm = bind_layer(w, l, "self_attn.q_norm.weight", 1, D, 0, err))) return -1;
        if (!(lw->k_norm = bind_layer(w, l, "self_attn.k_norm.weight", 1, D, 0, err))) return -1;
    }
    for (int m = 0; m < DK_N_MODULES; m++) {
        const char *block = m <= DK_MOD_O ? "self_attn" : "mlp";
        char suffix[96];
        dk_linear_weight *p = &lw->proj[m];
        p->out_features = out[m];
        p->in_features = in[m];
        snprintf(suffix, sizeof suffix, "%s.%s.weight", block, module_names[m]);
        if (!(p->weight = bind_layer(w, l, suffix, 2, out[m], in[m], err))) return -1;
        /* biases only where the config announces them: transformers builds nn.Linear(bias=...) from the config
         * and ignores (warns about) an unexpected bias tensor in the checkpoint */
        snprintf(suffix, sizeof suffix, "%s.%s.bias", block, module_names[m]);
        p->bias = has_bias[m] ? bind_layer(w, l, suffix, 1, out[m], 0, err) : NULL;
        if (has_bias[m] && !p->bias) return -1;
    }
    return 0;
}

int dk_model_weights_open(const dk_hf_config *cfg, const char *folder, dk_model_weights *w, dk_err *err) {
    memset(w, 0, sizeof *w);
    w->ck = dk_st_open_dir(folder, err);
    if (!w->ck) return -1;
    if (find_prefix(w, cfg, err) != 0) goto fail;
    w->n_layers = cfg->num_hidden_layers;
    w->layers = dk_calloc((size_t)w->n_layers, sizeof *w->layers);
    for (size_t i = 0; i < w->ck->n_tensors; i++) w->file_bytes += w->ck->tensors[i].nbytes;
    if (cfg->arch == DK_ARCH_GPT2) {
        if (bind_gpt2(w, cfg, err) != 0) goto fail;
        return 0;
    }
    const int64_t V = cfg->vocab_size, H = cfg->hidden_size;
    if (!(w->embed = bind(w, "embed_tokens.weight", 2, V, H, err))) goto fail;
    if (!(w->final_norm = bind(w, "norm.weight", 1, H, 0, err))) goto fail;
    if (cfg->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        /* the head sits next to the language model: "lm_head.weight" or "language_model.lm_head.weight" */
        const char *head = strcmp(w->prefix, "language_model.model.") == 0 ? "language_model.lm_head.weight"
                                                                           : "lm_head.weight";
        int64_t shape[2] = {V, H};
        if (!(w->lm_head = dk_st_require(w->ck, head, 2, shape, err))) goto fail;
    }
    for (int64_t l = 0; l < w->n_layers; l++)
        if (bind_layer_weights(w, cfg, l, err) != 0) goto fail;
    return 0;
fail:
    dk_err_prefix(err, "loading the weights of %s (%s): ", folder, cfg->architecture);
    dk_model_weights_close(w);
    return -1;
}

void dk_model_weights_close(dk_model_weights *w) {
    for (size_t i = 0; i < w->n_derived; i++) {
        free((char *)w->derived[i].name);
        free(w->derived_data[i]);
    }
    free(w->derived);
    free(w->derived_data);
    if (w->ck) dk_st_close(w->ck);
    free(w->layers);
    memset(w, 0, sizeof *w);
}

static int same_shape(const dk_st_tensor *a, const dk_st_tensor *b, const dk_model_weights *wa,
                      const dk_model_weights *wb, dk_err *err) {
    if (!a && !b) return 0;
    char sa[96] = "(absent)", sb[96] = "(absent)";
    if (a) dk_st_format_shape(a->shape, a->ndim, sa, sizeof sa);
    if (b) dk_st_format_shape(b->shape, b->ndim, sb, sizeof sb);
    if (a && b && strcmp(sa, sb) == 0) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME,
                      "the organism does not have the base model's shapes: %s is %s in %s but %s is %s in %s; a full "
                      "finetune must keep every tensor's shape (a resized vocabulary is not supported)",
                      a ? a->name : b->name, sa, wa->ck->path, b ? b->name : a->name, sb, wb->ck->path);
}

int dk_model_weights_check_same_shapes(const dk_model_weights *base, const dk_model_weights *other, dk_err *err) {
    if (base->n_layers != other->n_layers)
        return dk_err_set(err, DK_EXIT_RUNTIME, "the organism %s has %lld layers, the base model %s %lld",
                          other->ck->path, (long long)other->n_layers, base->ck->path, (long long)base->n_layers);
    if (same_shape(base->embed, other->embed, base, other, err) || same_shape(base->lm_head, other->lm_head, base, other, err) ||
        same_shape(base->final_norm, other->final_norm, base, other, err) ||
        same_shape(base->final_norm_bias, other->final_norm_bias, base, other, err) ||
        same_shape(base->pos_embed, other->pos_embed, base, other, err))
        return -1;
    for (int64_t l = 0; l < base->n_layers; l++) {
        const dk_layer_weights *a = &base->layers[l], *b = &other->layers[l];
        const dk_st_tensor *pairs[][2] = {{a->input_norm, b->input_norm}, {a->post_attn_norm, b->post_attn_norm},
                                          {a->pre_ff_norm, b->pre_ff_norm}, {a->post_ff_norm, b->post_ff_norm},
                                          {a->q_norm, b->q_norm}, {a->k_norm, b->k_norm},
                                          {a->input_norm_bias, b->input_norm_bias},
                                          {a->post_attn_norm_bias, b->post_attn_norm_bias}};
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
            if (same_shape(pairs[i][0], pairs[i][1], base, other, err)) return -1;
        for (int m = 0; m < DK_N_MODULES; m++)
            if (same_shape(a->proj[m].weight, b->proj[m].weight, base, other, err) ||
                same_shape(a->proj[m].bias, b->proj[m].bias, base, other, err))
                return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. Widening */

void dk_weights_rows_f32(const dk_st_tensor *t, int64_t row0, int64_t n_rows, float *dst) {
    const int64_t row_len = t->ndim >= 2 ? t->numel / t->shape[0] : t->numel;
    const size_t n = (size_t)(n_rows * row_len);
    const size_t elem = t->dtype == DK_DTYPE_F32 ? 4 : 2;
    const uint8_t *src = (const uint8_t *)t->data + (size_t)(row0 * row_len) * elem;
    CHECK(row0 >= 0 && row0 + n_rows <= (t->ndim >= 2 ? t->shape[0] : 1), "rows %lld+%lld of %s out of range",
          (long long)row0, (long long)n_rows, t->name);
    if (t->dtype == DK_DTYPE_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    void (*widen)(float *, const uint16_t *, size_t) = t->dtype == DK_DTYPE_BF16 ? dk_cpu_bf16_to_f32
                                                                                 : dk_cpu_f16_to_f32;
    if ((uintptr_t)src % 2 == 0) {
        widen(dst, (const uint16_t *)(const void *)src, n);
        return;
    }
    enum { CHUNK = 2048 }; /* an odd offset (legal in safetensors): realign through a small buffer */
    uint16_t tmp[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        memcpy(tmp, src + 2 * i, 2 * m);
        widen(dst + i, tmp, m);
    }
}

static bool usable_in_place(const dk_st_tensor *t) {
    return t->dtype == DK_DTYPE_F32 && (uintptr_t)t->data % sizeof(float) == 0;
}

const float *dk_weights_f32(const dk_st_tensor *t, float *scratch) {
    if (usable_in_place(t)) return (const float *)t->data;
    dk_weights_rows_f32(t, 0, t->ndim >= 2 ? t->shape[0] : 1, scratch);
    return scratch;
}

/* ---------------------------------------------------------------------------------------------------
 * 3. The linear: fused for a few rows of x, tiled through sgemm otherwise */

typedef struct fused_job {
    float *y;
    const float *x;
    const dk_st_tensor *w;
    const float *bias;
    int64_t M, N, K;
} fused_job;

static void fused_rows(void *ctx, int64_t n0, int64_t n1) {
    const fused_job *j = ctx;
    dk_cpu_weight_type type = j->w->dtype == DK_DTYPE_BF16  ? DK_CPU_WEIGHT_BF16
                              : j->w->dtype == DK_DTYPE_F16 ? DK_CPU_WEIGHT_F16
                                                            : DK_CPU_WEIGHT_F32;
    for (int64_t m0 = 0; m0 < j->M; m0 += DK_CPU_FUSED_MAX_M) { /* more rows than the kernel takes: in groups */
        const int64_t rows = j->M - m0 < DK_CPU_FUSED_MAX_M ? j->M - m0 : DK_CPU_FUSED_MAX_M;
        dk_cpu_linear_fused(j->y + m0 * j->N, j->x + m0 * j->K, j->w->data, type, j->bias, rows, j->N, j->K, n0,
                            n1);
    }
}

/* Threads over output rows, each at least ~64K weight elements (below that a thread costs more than it
 * saves); each row's sum is the same whatever the split (linear_fused.h). */
static void fused_matmul(float *y, const float *x, int64_t M, const dk_st_tensor *w, const float *bias, int64_t N,
                         int64_t K, int n_threads) {
    fused_job job = {y, x, w, bias, M, N, K};
    dk_parallel_rows(n_threads, N, 1 + (1 << 16) / (K > 0 ? K : 1), fused_rows, &job);
}

static void weight_matmul(float *y, const float *x, int64_t M, const dk_st_tensor *w, const float *bias, int64_t N,
                          int64_t K, float *scratch, int64_t scratch_floats, int n_threads, int64_t fused_max_m) {
    if (M <= fused_max_m) {
        fused_matmul(y, x, M, w, bias, N, K, n_threads);
        return;
    }
    if (usable_in_place(w)) {
        dk_cpu_linear(y, x, (const float *)w->data, bias, M, N, K);
        return;
    }
    CHECK(scratch_floats >= K, "weight scratch of %lld floats cannot hold one row of %s (%lld)",
          (long long)scratch_floats, w->name, (long long)K);
    int64_t tile_rows = scratch_floats / K;
    for (int64_t n0 = 0; n0 < N; n0 += tile_rows) {
        int64_t rows = N - n0 < tile_rows ? N - n0 : tile_rows;
        dk_weights_rows_f32(w, n0, rows, scratch); /* (rows, K) */
        dk_cpu_linear_strided(y + n0, N, x, scratch, bias ? bias + n0 : NULL, M, rows, K);
    }
}

void dk_weights_linear(float *y, const float *x, int64_t M, const dk_linear_weight *lin, float *scratch,
                       int64_t scratch_floats, float *bias_scratch, int n_threads, int64_t fused_max_m) {
    const float *bias = lin->bias ? dk_weights_f32(lin->bias, bias_scratch) : NULL;
    weight_matmul(y, x, M, lin->weight, bias, lin->out_features, lin->in_features, scratch, scratch_floats,
                  n_threads, fused_max_m);
}

void dk_weights_matmul(float *y, const float *x, int64_t M, const dk_st_tensor *w, float *scratch,
                       int64_t scratch_floats, int n_threads, int64_t fused_max_m) {
    weight_matmul(y, x, M, w, NULL, w->shape[0], w->shape[1], scratch, scratch_floats, n_threads, fused_max_m);
}
