/* test_convert_cuda.c — kernels/cuda/convert.cu against kernels/cpu/convert.c, bit for bit: every bf16 and
 * f16 pattern widened, and 2^20 f32 patterns (all rounding cases around many values, specials, random)
 * narrowed. Output buffers are poisoned with NaN patterns and carry guard bands that must be untouched
 * (out-of-bounds writes; gpu_test.h), and an odd length checks the tail. Without a usable GPU it prints "SKIP: no GPU (...)" and exits 77, which ctest
 * reports as skipped. Label: gpu (run by `make gpu-check` on a GPU machine). */
#include "gpu_test.h"

#include "kernels/cpu/convert.h"
#include "kernels/cuda/convert.cuh"

enum { GUARD = 64 };

/* widen: all 65,536 patterns of a 16-bit type */
static void check_widen(const char *name, cudaError_t (*gpu)(float *, const uint16_t *, size_t, cudaStream_t),
                        void (*cpu)(float *, const uint16_t *, size_t)) {
    const size_t n = 65536;
    uint16_t *src = malloc(n * sizeof *src);
    float *want = malloc(n * sizeof *want), *got = malloc((n + 2 * GUARD) * sizeof *got);
    for (size_t i = 0; i < n; i++) src[i] = (uint16_t)i;
    cpu(want, src, n);
    uint16_t *d_src;
    float *d_dst;
    CUDA_CHECK(cudaMalloc((void **)&d_src, n * sizeof *d_src));
    CUDA_CHECK(cudaMalloc((void **)&d_dst, (n + 2 * GUARD) * sizeof *d_dst));
    CUDA_CHECK(cudaMemcpy(d_src, src, n * sizeof *src, cudaMemcpyHostToDevice));
    gpu_poison_device(d_dst, (n + 2 * GUARD) * sizeof *d_dst);
    CUDA_CHECK(gpu(d_dst + GUARD, d_src, n, 0));
    CUDA_CHECK(cudaMemcpy(got, d_dst, (n + 2 * GUARD) * sizeof *got, cudaMemcpyDeviceToHost));
    size_t bad = 0, guard_bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&got[GUARD + i], &want[i], 4) != 0;
    for (size_t i = 0; i < GUARD; i++)
        guard_bad += !gpu_is_poison(&got[i], sizeof *got) || !gpu_is_poison(&got[GUARD + n + i], sizeof *got);
    EXPECT(bad == 0, "%s widen: %zu of %zu values differ from the CPU", name, bad, n);
    EXPECT(guard_bad == 0, "%s widen: %zu guard words overwritten", name, guard_bad);
    CUDA_CHECK(cudaFree(d_src));
    CUDA_CHECK(cudaFree(d_dst));
    free(src), free(want), free(got);
}

static void check_narrow(const char *name, cudaError_t (*gpu)(uint16_t *, const float *, size_t, cudaStream_t),
                         void (*cpu)(uint16_t *, const float *, size_t)) {
    const size_t n = (1u << 20) + 3; /* odd tail */
    float *src = malloc(n * sizeof *src);
    uint16_t *want = malloc(n * sizeof *want), *got = malloc((n + 2 * GUARD) * sizeof *got);
    uint64_t s = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        if (i < 65536 * 8) { /* around every 16-bit-aligned value: exact, +1, half-1, half, half+1, max, ... */
            static const uint32_t low[8] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x0FFF, 0x1000};
            bits = ((uint32_t)(i / 8) << 16) | low[i % 8];
        } else {
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
            bits = (uint32_t)((s * 0x2545F4914F6CDD1Dull) >> 32);
        }
        memcpy(&src[i], &bits, 4);
    }
    cpu(want, src, n);
    float *d_src;
    uint16_t *d_dst;
    CUDA_CHECK(cudaMalloc((void **)&d_src, n * sizeof *d_src));
    CUDA_CHECK(cudaMalloc((void **)&d_dst, (n + 2 * GUARD) * sizeof *d_dst));
    CUDA_CHECK(cudaMemcpy(d_src, src, n * sizeof *src, cudaMemcpyHostToDevice));
    gpu_poison_device(d_dst, (n + 2 * GUARD) * sizeof *d_dst);
    CUDA_CHECK(gpu(d_dst + GUARD, d_src, n, 0));
    CUDA_CHECK(cudaMemcpy(got, d_dst, (n + 2 * GUARD) * sizeof *got, cudaMemcpyDeviceToHost));
    size_t bad = 0, guard_bad = 0;
    for (size_t i = 0; i < n; i++) bad += got[GUARD + i] != want[i];
    for (size_t i = 0; i < GUARD; i++) guard_bad += got[i] != GPU_POISON16 || got[GUARD + n + i] != GPU_POISON16;
    EXPECT(bad == 0, "%s narrow: %zu of %zu values differ from the CPU", name, bad, n);
    EXPECT(guard_bad == 0, "%s narrow: %zu guard words overwritten", name, guard_bad);
    CUDA_CHECK(cudaFree(d_src));
    CUDA_CHECK(cudaFree(d_dst));
    free(src), free(want), free(got);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    check_widen("bf16", dk_cuda_bf16_to_f32, dk_cpu_bf16_to_f32);
    check_widen("f16", dk_cuda_f16_to_f32, dk_cpu_f16_to_f32);
    check_narrow("bf16", dk_cuda_f32_to_bf16, dk_cpu_f32_to_bf16);
    check_narrow("f16", dk_cuda_f32_to_f16, dk_cpu_f32_to_f16);
    CUDA_CHECK(cudaDeviceSynchronize());
    return dk_test_finish("test_convert_cuda");
}
