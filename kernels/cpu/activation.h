/* activation.h — the MLP activation on the CPU: out = act(gate) ⊙ up (models_formats.md §3.1), or act(x) alone
 * for GPT-2's MLP, which has no gate.
 *   SILU       x / (1 + exp(-x))                                    Llama, Mistral, Qwen ("silu")
 *   GELU_TANH  0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))           Gemma ("gelu_pytorch_tanh"), GPT-2 ("gelu_new")
 *   GELU_ERF   0.5·x·(1 + erf(x/√2))                                ("gelu", exact)
 * Element-wise in float32, as PyTorch computes them. */
#ifndef DK_CPU_ACTIVATION_H
#define DK_CPU_ACTIVATION_H

#include <stddef.h>

typedef enum { DK_CPU_ACT_SILU, DK_CPU_ACT_GELU_TANH, DK_CPU_ACT_GELU_ERF } dk_cpu_act;

float dk_cpu_act_scalar(float x, dk_cpu_act act);
/* out (n) = act(gate (n)) * up (n); out may equal gate or up. */
void dk_cpu_gated_act(float *out, const float *gate, const float *up, size_t n, dk_cpu_act act);
/* out (n) = act(x (n)); out may equal x. */
void dk_cpu_plain_act(float *out, const float *x, size_t n, dk_cpu_act act);

#endif
