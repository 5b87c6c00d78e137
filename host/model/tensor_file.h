/* tensor_file.h — writes named float32 tensors to a .safetensors file (what `diffkit forward` outputs).
 *
 * Why here: the engine's outputs (captured residuals, logits) go to Python users, and safetensors is what
 * they load with one call (safetensors.torch.load_file). The header is the format's JSON (models_formats.md
 * §1), padded with spaces to a multiple of 8 bytes so every tensor's data is 8-byte aligned, then the data
 * in the order given. Written to PATH.tmp and renamed, so a failed run never leaves a half file behind.
 */
#ifndef DK_MODEL_TENSOR_FILE_H
#define DK_MODEL_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dk_tensor_out {
    char *name;          /* owned by the caller */
    int ndim;            /* 1 or 2 */
    int64_t shape[2];
    const float *data;   /* (shape[0] * shape[1]) */
} dk_tensor_out;

/* 0, or -1 with err set (code 1) naming the file. */
int dk_write_f32_safetensors(const char *path, const dk_tensor_out *tensors, size_t n, dk_err *err);

#endif
