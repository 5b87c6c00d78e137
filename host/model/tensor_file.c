/* tensor_file.c — see tensor_file.h. */
#include "tensor_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t numel(const dk_tensor_out *t) { return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1]; }

/* The JSON header, unpadded (malloc'ed). Names are written as given: callers use [A-Za-z0-9._]. */
static char *header_json(const dk_tensor_out *tensors, size_t n) {
    size_t cap = 256 + n * 160, len = 0;
    char *h = dk_malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const dk_tensor_out *t = &tensors[i];
        uint64_t bytes = (uint64_t)numel(t) * 4;
        size_t need = strlen(t->name) + 160;
        if (cap - len < need) h = dk_realloc(h, cap = cap * 2 + need);
        if (t->ndim == 1)
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],", t->name,
                                    (long long)t->shape[0]);
        else
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],", t->name,
                                    (long long)t->shape[0], (long long)t->shape[1]);
        len += (size_t)snprintf(h + len, cap - len, "\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                                (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    if (cap - len < 2) h = dk_realloc(h, cap += 2);
    h[len++] = '}';
    h[len] = '\0';
    return h;
}

int dk_write_f32_safetensors(dk_out_file *out, const dk_tensor_out *tensors, size_t n, dk_err *err) {
    for (size_t i = 0; i < n; i++) /* a header naming a tensor twice is a file every reader rejects */
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[i].name, tensors[j].name) == 0) {
                dk_out_abort(out);
                return dk_err_set(err, DK_EXIT_USAGE, "the tensor %s would be written twice", tensors[i].name);
            }
    char *header = header_json(tensors, n);
    size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++) size_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fwrite(size_le, 1, 8, out->f);
    fwrite(header, 1, len, out->f);
    for (size_t i = len; i < padded; i++) fputc(' ', out->f);
    for (size_t i = 0; i < n && !dk_out_failed(out); i++)
        fwrite(tensors[i].data, sizeof(float), (size_t)numel(&tensors[i]), out->f); /* little-endian hosts only */
    free(header);
    return dk_out_commit(out, err);
}
