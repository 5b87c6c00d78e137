/* dtype.h — element types as named in checkpoints, configs and files, and the scalar conversions.
 * Names accepted by dk_dtype_parse: safetensors spellings ("F32", "BF16", "F16", "I32", "I64", ...) and
 * config spellings ("float32", "bfloat16", "bf16", "float16", "fp16", "fp32"), case-insensitive. */
#ifndef DK_DTYPE_H
#define DK_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/dtype_convert.h"

typedef enum {
    DK_DTYPE_INVALID = 0,
    DK_DTYPE_F32,
    DK_DTYPE_BF16,
    DK_DTYPE_F16,
    DK_DTYPE_F64,
    DK_DTYPE_I64,
    DK_DTYPE_I32,
    DK_DTYPE_I16,
    DK_DTYPE_I8,
    DK_DTYPE_U8,
    DK_DTYPE_BOOL,
} dk_dtype;

/* Bytes per element (0 for DK_DTYPE_INVALID). */
size_t dk_dtype_size(dk_dtype t);
/* Canonical lower-case name: "float32", "bfloat16", "float16", ... */
const char *dk_dtype_name(dk_dtype t);
/* DK_DTYPE_INVALID when the name is unknown. */
dk_dtype dk_dtype_parse(const char *name);

#endif
