/* tensor_file.h — writes named float32 tensors to a .safetensors file (what `diffkit forward` outputs).
 *
 * Why here: the engine's outputs (captured residuals, logits) go to Python users, and safetensors is what
 * they load with one call (safetensors.torch.load_file). The header is the format's JSON (models_formats.md
 * §1), padded with spaces to a multiple of 8 bytes so every tensor's data is 8-byte aligned, then the data
 * in the order given. Written through io/out_file.h (a temporary renamed at the end, every write checked), so a
 * failed run never leaves a half file behind, and a name given twice is refused.
 */
#ifndef DK_MODEL_TENSOR_FILE_H
#define DK_MODEL_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/out_file.h"

typedef struct dk_tensor_out {
    char *name;          /* owned by the caller */
    int ndim;            /* 1 or 2 */
    int64_t shape[2];
    const float *data;   /* (shape[0] * shape[1]) */
} dk_tensor_out;

/* Writes the tensors to out (opened by the caller with dk_out_open, before the work that makes them, so that a
 * bad output path fails at once) and commits it; on any failure out is aborted. 0, or -1 with err set naming the
 * file (code 1 for I/O, 2 for a tensor name given twice). */
int dk_write_f32_safetensors(dk_out_file *out, const dk_tensor_out *tensors, size_t n, dk_err *err);

#endif
