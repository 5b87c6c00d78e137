/* attention.cu — see attention.cuh. Block = 4 warps × 4 queries (DK_CUDA_ATTN_BQ = 16) of one head; lane l
 * scores key l of the current 32-key tile for the warp's 4 queries at once (its K row padded by one float:
 * conflict-free; each K and V element read from shared memory feeds 4 FMAs) and accumulates output
 * dimensions d ≡ l (mod 32). Dynamic shared memory: q (16, D) + k (32, D+1) + v (32, D) floats,
 * 81 KB at D = 256 (raised above 48 KB with cudaFuncSetAttribute). */
#include "attention.cuh"

#include <math.h>

#include "common.cuh"

enum { WARPS = 4, QPW = DK_CUDA_ATTN_BQ / WARPS, BK = 32, DPL = DK_CUDA_ATTN_MAX_D / 32 };

template <typename T>
__global__ void k_attention(T *out, int64_t ldo, const T *q, int64_t ldq, const T *k, int64_t ldk, const T *v,
                            int64_t ldv, const int32_t *tiles, const int32_t *kv_past, int kv_capacity, int n_heads,
                            int n_kv_heads, int D, float scale, float softcap, int window) {
    extern __shared__ float smem[];
    float *q_s = smem;                         /* (BQ, D) */
    float *k_s = q_s + DK_CUDA_ATTN_BQ * D;    /* (BK, D + 1) */
    float *v_s = k_s + BK * (D + 1);           /* (BK, D) */
    const int32_t *tile = tiles + 4 * (int64_t)blockIdx.x;
    const int64_t start = tile[0];
    const int q0 = tile[1], nq = tile[2], seq = tile[3];
    /* with a KV cache the keys of sequence seq are cache rows seq·capacity + position and the tile's queries sit
     * at positions past + q0 ...; without one the keys are the batch's rows and positions start at 0 */
    const int past = kv_past ? kv_past[seq] : 0;
    const int64_t kv0 = kv_past ? (int64_t)seq * kv_capacity : start; /* row of the key at position 0 */
    const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < DK_CUDA_ATTN_BQ * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        q_s[i] = r < nq ? dk_ld(q + (start + q0 + r) * ldq + (int64_t)h * D + d) : 0.0f;
    }
    const int first = past + q0, last = first + nq - 1;                      /* first and last query position */
    const int k_begin = window > 0 && first - window + 1 > 0 ? first - window + 1 : 0;
    const int k_end = last + 1;

    float m[QPW], l[QPW], acc[QPW][DPL];
#pragma unroll
    for (int qi = 0; qi < QPW; qi++) {
        m[qi] = -INFINITY;
        l[qi] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[qi][c] = 0.0f;
    }

    for (int kt = k_begin; kt < k_end; kt += BK) {
        __syncthreads(); /* q_s written (first tile) / previous tile consumed */
        for (int i = threadIdx.x; i < BK * D; i += blockDim.x) {
            const int j = i / D, d = i % D;
            const bool in = kt + j < k_end;
            const int64_t row = kv0 + kt + j;
            k_s[j * (D + 1) + d] = in ? dk_ld(k + row * ldk + (int64_t)kvh * D + d) : 0.0f;
            v_s[j * D + d] = in ? dk_ld(v + row * ldv + (int64_t)kvh * D + d) : 0.0f;
        }
        __syncthreads();
        /* scores of key j = kt + lane for the warp's QPW queries: one K element read per QPW FMAs
         * (q_s rows of queries past nq are zeros, and masked below) */
        const int j = kt + lane;
        float s[QPW];
#pragma unroll
        for (int qi = 0; qi < QPW; qi++) s[qi] = 0.0f;
        const float *kr = k_s + lane * (D + 1), *qw = q_s + warp * QPW * D;
        for (int d = 0; d < D; d++) {
            const float kd = kr[d];
#pragma unroll
            for (int qi = 0; qi < QPW; qi++) s[qi] += qw[qi * D + d] * kd;
        }
        float p[QPW];
#pragma unroll
        for (int qi = 0; qi < QPW; qi++) {
            const int r = warp * QPW + qi, pos = first + r;
            const bool visible = r < nq && j <= pos && (window <= 0 || j > pos - window);
            float sc = -INFINITY;
            if (visible) {
                sc = s[qi] * scale;
                if (softcap > 0.0f) sc = tanhf(sc / softcap) * softcap;
            }
            float tile_max = sc;
            for (int o = 16; o > 0; o >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
            const float m_new = fmaxf(m[qi], tile_max);
            p[qi] = 0.0f;
            if (m_new == -INFINITY) continue; /* no visible key yet (uniform over the warp) */
            const float pv = visible ? expf(sc - m_new) : 0.0f;
            const float correction = expf(m[qi] - m_new); /* 0 when m was -inf */
            float p_sum = pv;
            for (int o = 16; o > 0; o >>= 1) p_sum += __shfl_xor_sync(0xffffffffu, p_sum, o);
            l[qi] = l[qi] * correction + p_sum;
            m[qi] = m_new;
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[qi][c] *= correction;
            p[qi] = pv;
        }
        /* acc += p_j · v_j over the tile's keys: one V element read per QPW FMAs */
        for (int jj = 0; jj < BK; jj++) {
            float pj[QPW];
#pragma unroll
            for (int qi = 0; qi < QPW; qi++) pj[qi] = __shfl_sync(0xffffffffu, p[qi], jj);
            const float *vr = v_s + jj * D;
#pragma unroll
            for (int c = 0; c < DPL; c++)
                if (lane + 32 * c < D) {
                    const float vd = vr[lane + 32 * c];
#pragma unroll
                    for (int qi = 0; qi < QPW; qi++) acc[qi][c] += pj[qi] * vd;
                }
        }
    }
#pragma unroll
    for (int qi = 0; qi < QPW; qi++) {
        const int r = warp * QPW + qi;
        if (r >= nq) continue;
        T *o = out + (start + q0 + r) * ldo + (int64_t)h * D; /* (D) */
        const float inv = 1.0f / l[qi]; /* l >= 1: the query sees at least itself */
#pragma unroll
        for (int c = 0; c < DPL; c++)
            if (lane + 32 * c < D) dk_st(o + lane + 32 * c, acc[qi][c] * inv);
    }
}

extern "C" int64_t dk_cuda_attention_n_tiles(const int64_t *seq_start, int64_t n_seqs) {
    int64_t n = 0;
    for (int64_t s = 0; s < n_seqs; s++) n += (seq_start[s + 1] - seq_start[s] + DK_CUDA_ATTN_BQ - 1) / DK_CUDA_ATTN_BQ;
    return n;
}

extern "C" int64_t dk_cuda_attention_tiles_bq(const int64_t *seq_start, int64_t n_seqs, int64_t bq, int32_t *tiles) {
    int64_t n = 0;
    for (int64_t s = 0; s < n_seqs; s++)
        for (int64_t q0 = 0; q0 < seq_start[s + 1] - seq_start[s]; q0 += bq, n++) {
            const int64_t left = seq_start[s + 1] - seq_start[s] - q0;
            tiles[4 * n] = (int32_t)seq_start[s];
            tiles[4 * n + 1] = (int32_t)q0;
            tiles[4 * n + 2] = (int32_t)(left < bq ? left : bq);
            tiles[4 * n + 3] = (int32_t)s;
        }
    return n;
}

extern "C" int64_t dk_cuda_attention_tiles(const int64_t *seq_start, int64_t n_seqs, int32_t *tiles) {
    return dk_cuda_attention_tiles_bq(seq_start, n_seqs, DK_CUDA_ATTN_BQ, tiles);
}

template <typename T>
static cudaError_t launch(T *out, int64_t ldo, const T *q, int64_t ldq, const T *k, int64_t ldk, const T *v,
                          int64_t ldv, const int32_t *tiles, int64_t n_tiles, const int32_t *kv_past, int kv_capacity,
                          int n_heads, int n_kv_heads, int D, float scale, float softcap, int window,
                          cudaStream_t stream) {
    const size_t smem = sizeof(float) * ((size_t)DK_CUDA_ATTN_BQ * D + (size_t)BK * (D + 1) + (size_t)BK * D);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_attention<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    k_attention<T><<<dim3((unsigned)n_tiles, (unsigned)n_heads), WARPS * 32, smem, stream>>>(
        out, ldo, q, ldq, k, ldk, v, ldv, tiles, kv_past, kv_capacity, n_heads, n_kv_heads, D, scale, softcap, window);
    return cudaGetLastError();
}

/* Both entry points: kv_past NULL = no cache. */
static cudaError_t attention(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k, int64_t ldk,
                             const void *v, int64_t ldv, const int32_t *tiles, int64_t n_tiles, const int32_t *kv_past,
                             int64_t kv_capacity, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                             float softcap, int64_t window, dk_cuda_dtype dtype, cudaStream_t stream) {
    if (n_tiles == 0) return cudaSuccess;
    if (head_dim < 1 || head_dim > DK_CUDA_ATTN_MAX_D || n_kv_heads < 1 || n_heads % n_kv_heads != 0 ||
        n_tiles > 0x7fffffff || n_heads > 65535 || window > 0x7fffffff || kv_capacity < 0 || kv_capacity > 0x7fffffff)
        return cudaErrorInvalidValue;
    const int nh = (int)n_heads, nkv = (int)n_kv_heads, D = (int)head_dim, W = (int)window, cap = (int)kv_capacity;
    if (dtype == DK_CUDA_BF16)
        return launch((__nv_bfloat16 *)out, ldo, (const __nv_bfloat16 *)q, ldq, (const __nv_bfloat16 *)k, ldk,
                      (const __nv_bfloat16 *)v, ldv, tiles, n_tiles, kv_past, cap, nh, nkv, D, scale, softcap, W, stream);
    return launch((float *)out, ldo, (const float *)q, ldq, (const float *)k, ldk, (const float *)v, ldv, tiles,
                  n_tiles, kv_past, cap, nh, nkv, D, scale, softcap, W, stream);
}

extern "C" cudaError_t dk_cuda_attention(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k,
                                         int64_t ldk, const void *v, int64_t ldv, const int32_t *tiles,
                                         int64_t n_tiles, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                         float scale, float softcap, int64_t window, dk_cuda_dtype dtype,
                                         cudaStream_t stream) {
    return attention(out, ldo, q, ldq, k, ldk, v, ldv, tiles, n_tiles, NULL, 0, n_heads, n_kv_heads, head_dim, scale,
                     softcap, window, dtype, stream);
}

extern "C" cudaError_t dk_cuda_attention_cached(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k_cache,
                                                const void *v_cache, int64_t ld_kv, int64_t capacity,
                                                const int32_t *kv_past, const int32_t *tiles, int64_t n_tiles,
                                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                                                float softcap, int64_t window, dk_cuda_dtype dtype,
                                                cudaStream_t stream) {
    if (!kv_past) return cudaErrorInvalidValue;
    return attention(out, ldo, q, ldq, k_cache, ld_kv, v_cache, ld_kv, tiles, n_tiles, kv_past, capacity, n_heads,
                     n_kv_heads, head_dim, scale, softcap, window, dtype, stream);
}
