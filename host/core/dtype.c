/* dtype.c — see dtype.h. */
#include "dtype.h"

#include <strings.h>

static const struct {
    dk_dtype type;
    size_t size;
    const char *names[5]; /* names[0] is canonical */
} dtype_table[] = {
    {DK_DTYPE_F32, 4, {"float32", "f32", "fp32", "float", NULL}},
    {DK_DTYPE_BF16, 2, {"bfloat16", "bf16", NULL}},
    {DK_DTYPE_F16, 2, {"float16", "f16", "fp16", "half", NULL}},
    {DK_DTYPE_F64, 8, {"float64", "f64", "fp64", "double", NULL}},
    {DK_DTYPE_I64, 8, {"int64", "i64", NULL}},
    {DK_DTYPE_I32, 4, {"int32", "i32", NULL}},
    {DK_DTYPE_I16, 2, {"int16", "i16", NULL}},
    {DK_DTYPE_I8, 1, {"int8", "i8", NULL}},
    {DK_DTYPE_U8, 1, {"uint8", "u8", NULL}},
    {DK_DTYPE_BOOL, 1, {"bool", NULL}},
};
enum { DTYPE_COUNT = sizeof dtype_table / sizeof dtype_table[0] };

size_t dk_dtype_size(dk_dtype t) {
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (dtype_table[i].type == t) return dtype_table[i].size;
    return 0;
}

const char *dk_dtype_name(dk_dtype t) {
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (dtype_table[i].type == t) return dtype_table[i].names[0];
    return "invalid";
}

dk_dtype dk_dtype_parse(const char *name) {
    if (!name) return DK_DTYPE_INVALID;
    for (int i = 0; i < DTYPE_COUNT; i++)
        for (int j = 0; j < 5 && dtype_table[i].names[j]; j++)
            if (strcasecmp(name, dtype_table[i].names[j]) == 0) return dtype_table[i].type;
    return DK_DTYPE_INVALID;
}
