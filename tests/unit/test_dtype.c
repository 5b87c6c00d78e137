/* test_dtype.c — bf16/f16 <-> f32 conversions (kernels/dtype_convert.h) against references we did not write:
 *   bf16: every one of the 65,536 bit patterns decoded, and 6 rounding cases around each encoded, compared
 *         bit for bit with ml_dtypes (tests/fixtures/dtype/bf16_reference.bin.gz, tools/make_dtype_fixtures.py).
 *   f16:  every one of the 65,536 bit patterns decoded, and every f16 value, every midpoint between
 *         neighbours (and one f32 ulp either side) plus 4M seeded random f32 patterns encoded, compared
 *         bit for bit with the compiler's _Float16 conversions (libgcc soft-float or F16C hardware).
 * Also the dtype name table and the array versions in kernels/cpu/convert.c. */
#include "test.h"

#include "core/dtype.h"
#include "kernels/cpu/convert.h"

#include <math.h>
#include <stdint.h>
#include <zlib.h>

static const uint32_t ENCODE_LOW_BITS[6] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF};

static void test_bf16_against_ml_dtypes(void) {
    char *path = dk_fixture_path("dtype/bf16_reference.bin.gz");
    gzFile f = gzopen(path, "rb");
    if (!EXPECT(f != NULL, "cannot open %s", path)) {
        free(path);
        return;
    }
    uint32_t *decoded = malloc(65536 * sizeof *decoded);
    uint16_t *encoded = malloc(65536 * 6 * sizeof *encoded);
    int n1 = gzread(f, decoded, 65536 * sizeof *decoded);
    int n2 = gzread(f, encoded, 65536 * 6 * sizeof *encoded);
    gzclose(f);
    EXPECT(n1 == (int)(65536 * sizeof *decoded) && n2 == (int)(65536 * 6 * sizeof *encoded), "short fixture %s", path);
    int bad_decode = 0, bad_encode = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (dk_f32_bits(dk_bf16_to_f32((uint16_t)h)) != decoded[h] && bad_decode++ < 5)
            EXPECT(false, "bf16 0x%04x decodes to 0x%08x, ml_dtypes 0x%08x", h, dk_f32_bits(dk_bf16_to_f32((uint16_t)h)),
                   decoded[h]);
        for (int k = 0; k < 6; k++) {
            uint32_t x = (h << 16) | ENCODE_LOW_BITS[k];
            uint16_t ours = dk_f32_to_bf16(dk_bits_f32(x)), ref = encoded[h * 6 + k];
            if (ours != ref && bad_encode++ < 5) EXPECT(false, "f32 0x%08x encodes to bf16 0x%04x, ml_dtypes 0x%04x", x, ours, ref);
        }
    }
    EXPECT(bad_decode == 0, "%d of 65536 bf16 decodes differ from ml_dtypes", bad_decode);
    EXPECT(bad_encode == 0, "%d of 393216 bf16 encodes differ from ml_dtypes", bad_encode);
    free(decoded);
    free(encoded);
    free(path);
}

static uint16_t f16_bits(_Float16 h) {
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static _Float16 f16_from_bits(uint16_t u) {
    _Float16 h;
    memcpy(&h, &u, 2);
    return h;
}

static int encode_mismatches = 0;
static void check_f16_encode(uint32_t x) {
    float f = dk_bits_f32(x);
    uint16_t ours = dk_f32_to_f16(f), ref = f16_bits((_Float16)f);
    if (ours != ref && encode_mismatches++ < 5) EXPECT(false, "f32 0x%08x encodes to f16 0x%04x, compiler 0x%04x", x, ours, ref);
}

static void test_f16_against_compiler(void) {
    int bad_decode = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float ours = dk_f16_to_f32((uint16_t)h), ref = (float)f16_from_bits((uint16_t)h);
        if (dk_f32_bits(ours) != dk_f32_bits(ref) && bad_decode++ < 5)
            EXPECT(false, "f16 0x%04x decodes to 0x%08x, compiler 0x%08x", h, dk_f32_bits(ours), dk_f32_bits(ref));
    }
    EXPECT(bad_decode == 0, "%d of 65536 f16 decodes differ from the compiler", bad_decode);
    /* every f16 value, the midpoints to its neighbour, and one f32 ulp either side */
    for (uint32_t h = 0; h < 65536; h++) {
        float a = (float)f16_from_bits((uint16_t)h);
        uint32_t xa = dk_f32_bits(a);
        check_f16_encode(xa);
        if (isnan(a) || isinf(a)) continue;
        uint16_t next = (uint16_t)(h + 1);
        float b = (float)f16_from_bits(next);
        if (isnan(b) || (next & 0x7fff) == 0) continue;
        float mid = (float)(((double)a + (double)b) / 2);
        if (isinf(b)) mid = copysignf(65520.0f, a);
        uint32_t xm = dk_f32_bits(mid);
        check_f16_encode(xm);
        check_f16_encode(xm + 1);
        check_f16_encode(xm - 1);
    }
    /* deterministic pseudo-random f32 patterns (xorshift64*) */
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 4000000; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        check_f16_encode((uint32_t)((s * 0x2545F4914F6CDD1Dull) >> 32));
    }
    /* special values */
    const uint32_t specials[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001,
                                 0x477fe000, 0x477ff000, 0x477fefff, 0x33000000, 0x33000001, 0x387fc000, 0x38800000};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) check_f16_encode(specials[i]);
    EXPECT(encode_mismatches == 0, "%d f16 encodes differ from the compiler", encode_mismatches);
}

static void test_array_conversions(void) {
    enum { N = 1027 };
    float src[N], back[N];
    uint16_t half[N];
    for (int i = 0; i < N; i++) src[i] = (float)sin(i * 0.37) * (float)(1 << (i % 20)) * 1e-3f;
    dk_cpu_f32_to_bf16(half, src, N);
    dk_cpu_bf16_to_f32(back, half, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += half[i] != dk_f32_to_bf16(src[i]) || back[i] != dk_bf16_to_f32(half[i]);
    dk_cpu_f32_to_f16(half, src, N);
    dk_cpu_f16_to_f32(back, half, N);
    for (int i = 0; i < N; i++) bad += half[i] != f16_bits((_Float16)src[i]) || back[i] != (float)f16_from_bits(half[i]);
    EXPECT(bad == 0, "%d array conversions differ from the scalar ones", bad);
}

static void test_dtype_names(void) {
    EXPECT(dk_dtype_parse("BF16") == DK_DTYPE_BF16, "BF16 (safetensors spelling)");
    EXPECT(dk_dtype_parse("bfloat16") == DK_DTYPE_BF16, "bfloat16 (config spelling)");
    EXPECT(dk_dtype_parse("F32") == DK_DTYPE_F32 && dk_dtype_parse("float32") == DK_DTYPE_F32, "F32");
    EXPECT(dk_dtype_parse("F16") == DK_DTYPE_F16 && dk_dtype_parse("fp16") == DK_DTYPE_F16, "F16");
    EXPECT(dk_dtype_parse("F8_E4M3") == DK_DTYPE_INVALID, "unknown dtypes are invalid");
    EXPECT(dk_dtype_size(DK_DTYPE_BF16) == 2 && dk_dtype_size(DK_DTYPE_I64) == 8, "sizes");
    EXPECT(strcmp(dk_dtype_name(DK_DTYPE_BF16), "bfloat16") == 0, "canonical name");
}

int main(void) {
    test_bf16_against_ml_dtypes();
    test_f16_against_compiler();
    test_array_conversions();
    test_dtype_names();
    return dk_test_finish("test_dtype");
}
