/* attention_mma.cu — the same attention as attention.cu (semantics in attention.cuh), on tensor cores:
 * bf16 WMMA 16×16×16 products with fp32 accumulation for S = Q·Kᵀ and O += P·V, flash-style online softmax.
 *
 * Why a second kernel: attention.cu is the obviously-right FFMA version; at 8k-token batches attention is
 * ~5% of the FLOPs but, on FFMA, a large share of the time. This one is OPT-IN (DIFFKIT_CUDA_ATTN=mma,
 * read by host/model/forward_cuda.c) until a GPU run has checked it (tests/gpu/test_kernels_cuda.c compares
 * it with the CPU like every op) and timed it (tools/bench_gpu.py). STATUS: compiles for sm_80/sm_90,
 * untested on hardware.
 *
 * Differences from attention.cu, by design: bf16 only; head_dim a multiple of 16 (at most 256); the
 * probabilities P are rounded to bf16 before P·V, as flash-attention does (one more bf16 rounding, inside
 * the bf16 tolerance of the tests). Scores, max, sums, the rescaling and O stay fp32.
 *
 * Block = 4 warps, DK_CUDA_ATTN_MMA_BQ = 64 queries (16 per warp) of one sequence and head; keys in tiles
 * of 32. Shared memory (bf16 Q, K, V; fp32 S and O per warp; bf16 P per warp):
 *   Q (64, D) bf16 | K (32, D) bf16 | V (32, D) bf16 | S (4, 16, 32) f32 | P (4, 16, 32) bf16 | O (4, 16, D) f32
 * = 140 KB at D = 256 (A100: 163 KB, H100: 227 KB), 76 KB at D = 128.
 * Per tile, each warp: S = Q_w·Kᵀ (WMMA) → lanes 2r, 2r+1 own row r: mask, scale, softcap, row max,
 * p = exp(s − m_new) → P (bf16), rescale O_w's row by exp(m_old − m_new) → O_w += P·V (WMMA, accumulator
 * loaded from and stored to O_w). */
#include "attention.cuh"

#include <math.h>
#include <mma.h>

#include "common.cuh"

using namespace nvcuda;

enum { MMA_WARPS = 4, MMA_BQ = DK_CUDA_ATTN_MMA_BQ, MMA_BK = 32, ROWS = 16 };

__global__ void k_attention_mma(__nv_bfloat16 *out, int64_t ldo, const __nv_bfloat16 *q, int64_t ldq,
                                const __nv_bfloat16 *k, int64_t ldk, const __nv_bfloat16 *v, int64_t ldv,
                                const int32_t *tiles, int n_heads, int n_kv_heads, int D, float scale, float softcap,
                                int window) {
    extern __shared__ __align__(32) unsigned char smem_raw[];
    __nv_bfloat16 *q_s = (__nv_bfloat16 *)smem_raw;            /* (BQ, D) */
    __nv_bfloat16 *k_s = q_s + MMA_BQ * D;                      /* (BK, D) */
    __nv_bfloat16 *v_s = k_s + MMA_BK * D;                      /* (BK, D) */
    float *s_all = (float *)(v_s + MMA_BK * D);                 /* (WARPS, 16, BK) */
    __nv_bfloat16 *p_all = (__nv_bfloat16 *)(s_all + MMA_WARPS * ROWS * MMA_BK); /* (WARPS, 16, BK) */
    float *o_all = (float *)(p_all + MMA_WARPS * ROWS * MMA_BK); /* (WARPS, 16, D) */

    const int32_t *tile = tiles + 4 * (int64_t)blockIdx.x;
    const int64_t start = tile[0];
    const int q0 = tile[1], nq = tile[2];
    const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *s_w = s_all + warp * ROWS * MMA_BK;             /* (16, BK) */
    __nv_bfloat16 *p_w = p_all + warp * ROWS * MMA_BK;     /* (16, BK) */
    float *o_w = o_all + warp * ROWS * D;                  /* (16, D) */
    const __nv_bfloat16 zero = __float2bfloat16(0.0f);

    for (int i = threadIdx.x; i < MMA_BQ * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        q_s[i] = r < nq ? q[(start + q0 + r) * ldq + (int64_t)h * D + d] : zero;
    }
    for (int i = lane; i < ROWS * D; i += 32) o_w[i] = 0.0f;

    /* row r = lane / 2 of this warp's 16; the two lanes of a row split its 32 key columns */
    const int row = lane / 2, half = lane % 2;
    const int qr = warp * ROWS + row, pos = q0 + qr; /* query index in the tile, its position */
    float m = -INFINITY, l = 0.0f;

    const int last = q0 + nq - 1;
    const int k_begin = window > 0 && q0 - window + 1 > 0 ? q0 - window + 1 : 0;
    const int k_end = last + 1;
    for (int kt = k_begin; kt < k_end; kt += MMA_BK) {
        __syncthreads(); /* q_s written / previous K, V consumed by every warp */
        for (int i = threadIdx.x; i < MMA_BK * D; i += blockDim.x) {
            const int j = i / D, d = i % D;
            const bool in = kt + j < k_end;
            const int64_t r = start + kt + j;
            k_s[i] = in ? k[r * ldk + (int64_t)kvh * D + d] : zero;
            v_s[i] = in ? v[r * ldv + (int64_t)kvh * D + d] : zero;
        }
        __syncthreads();

        /* S (16, 32) = Q_w (16, D) · Kᵀ (D, 32) */
        for (int n0 = 0; n0 < MMA_BK; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int d0 = 0; d0 < D; d0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, q_s + warp * ROWS * D + d0, D);
                wmma::load_matrix_sync(b, k_s + n0 * D + d0, D); /* (d, key) at k_s[key·D + d] */
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(s_w + n0, acc, MMA_BK, wmma::mem_row_major);
        }
        __syncwarp();

        /* online softmax of row `row` over this tile's 32 keys, 16 per lane */
        float sc[16], tile_max = -INFINITY;
#pragma unroll
        for (int c = 0; c < 16; c++) {
            const int col = half * 16 + c, j = kt + col;
            const bool visible = qr < nq && j <= pos && (window <= 0 || j > pos - window);
            float x = -INFINITY;
            if (visible) {
                x = s_w[row * MMA_BK + col] * scale;
                if (softcap > 0.0f) x = tanhf(x / softcap) * softcap;
            }
            sc[c] = x;
            tile_max = fmaxf(tile_max, x);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float m_new = fmaxf(m, tile_max);
        float sum = 0.0f, correction = 1.0f;
        if (m_new != -INFINITY) correction = expf(m - m_new); /* 0 when m was -inf */
#pragma unroll
        for (int c = 0; c < 16; c++) {
            const float p = sc[c] == -INFINITY ? 0.0f : expf(sc[c] - m_new);
            const __nv_bfloat16 pb = __float2bfloat16_rn(p);
            p_w[row * MMA_BK + half * 16 + c] = pb;
            sum += __bfloat162float(pb); /* the sum of the P actually multiplied into V */
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * correction + sum;
        m = m_new;
        /* rescale O_w's row: each lane of the pair takes half the columns */
        for (int d = half; d < D; d += 2) o_w[row * D + d] *= correction;
        __syncwarp();

        /* O_w (16, D) += P (16, 32) · V (32, D) */
        for (int n0 = 0; n0 < D; n0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, o_w + n0, D, wmma::mem_row_major);
            for (int k0 = 0; k0 < MMA_BK; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
                wmma::load_matrix_sync(a, p_w + k0, MMA_BK);
                wmma::load_matrix_sync(b, v_s + k0 * D + n0, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(o_w + n0, acc, D, wmma::mem_row_major);
        }
        __syncwarp();
    }
    /* out = O / l (l > 0 for every real query: it sees at least itself) */
    if (qr < nq) {
        __nv_bfloat16 *o = out + (start + q0 + qr) * ldo + (int64_t)h * D; /* (D) */
        const float inv = 1.0f / l;
        for (int d = half; d < D; d += 2) o[d] = __float2bfloat16_rn(o_w[row * D + d] * inv);
    }
}

extern "C" size_t dk_cuda_attention_mma_smem(int64_t head_dim) {
    const size_t D = (size_t)head_dim;
    return 2 * (MMA_BQ * D + 2 * MMA_BK * D) + 4 * MMA_WARPS * ROWS * MMA_BK + 2 * MMA_WARPS * ROWS * MMA_BK +
           4 * MMA_WARPS * ROWS * D;
}

extern "C" cudaError_t dk_cuda_attention_mma(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k,
                                             int64_t ldk, const void *v, int64_t ldv, const int32_t *tiles,
                                             int64_t n_tiles, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                             float scale, float softcap, int64_t window, cudaStream_t stream) {
    if (n_tiles == 0) return cudaSuccess;
    if (head_dim < 16 || head_dim > DK_CUDA_ATTN_MAX_D || head_dim % 16 != 0 || n_kv_heads < 1 ||
        n_heads % n_kv_heads != 0 || n_tiles > 0x7fffffff || n_heads > 65535 || window > 0x7fffffff ||
        ldq % 8 != 0 || ldk % 8 != 0 || ldv % 8 != 0)
        return cudaErrorInvalidValue;
    const size_t smem = dk_cuda_attention_mma_smem(head_dim);
    cudaError_t e = cudaFuncSetAttribute(k_attention_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    k_attention_mma<<<dim3((unsigned)n_tiles, (unsigned)n_heads), MMA_WARPS * 32, smem, stream>>>(
        (__nv_bfloat16 *)out, ldo, (const __nv_bfloat16 *)q, ldq, (const __nv_bfloat16 *)k, ldk,
        (const __nv_bfloat16 *)v, ldv, tiles, (int)n_heads, (int)n_kv_heads, (int)head_dim, scale, softcap,
        (int)window);
    return cudaGetLastError();
}
