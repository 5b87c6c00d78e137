/* attention.h — causal multi-head attention on the CPU for packed variable-length batches (eager semantics,
 * models_formats.md §3.4).
 *
 * Why a segment list: a packed batch holds several sequences back to back with no padding, and during
 * generation each sequence's keys live in its own KV-cache rows. A segment is one sequence: its n_q new
 * queries are the LAST n_q positions of its n_k keys (n_q == n_k for a prompt, n_q == 1 for a decode step),
 * so query i sits at position n_k - n_q + i and sees key j iff j <= that position and, with a window W > 0,
 * j > position - W (transformers' sliding_window_overlay). One call covers every (segment, head) pair and
 * splits them over threads, so short sequences do not each pay for a thread start.
 *
 * Per query head h (GQA: KV head h / (n_heads / n_kv_heads)), all in fp32 as transformers' eager path:
 *   s_j = (q · k_j) · scale;  softcap c > 0: s_j = c · tanh(s_j / c);  p = softmax(s) (max subtracted);
 *   out = Σ_j p_j v_j
 */
#ifndef DK_CPU_ATTENTION_H
#define DK_CPU_ATTENTION_H

#include <stdint.h>

typedef struct dk_attn_segment {
    const float *q;  /* (n_q, n_heads, D) */
    const float *k;  /* (n_k, n_kv_heads, D) */
    const float *v;  /* (n_k, n_kv_heads, D) */
    float *out;      /* (n_q, n_heads, D) */
    int64_t n_q, n_k;
} dk_attn_segment;

typedef struct dk_attn_params {
    int64_t n_heads, n_kv_heads, head_dim;
    float scale;     /* D^-0.5, or query_pre_attn_scalar^-0.5 (Gemma) */
    float softcap;   /* 0 = none */
    int64_t window;  /* 0 = full causal */
    int n_threads;   /* >= 1 */
} dk_attn_params;

void dk_cpu_attention(const dk_attn_segment *segments, int64_t n_segments, const dk_attn_params *p);

#endif
