/* attention_tc.cuh: the tensor-core flash attention's kernels (see attention_tc.cu, which
 * launches them). Device code only, written against CUDA's names (threadIdx, __syncthreads,
 * __shfl_xor_sync, nvcuda::wmma, __nv_bfloat16), which the includer provides: nvcc's headers
 * in attention_tc.cu, or tests/cuda_emu.h, which runs these kernels on the CPU (a fiber per
 * CUDA thread) for tests/test_attention_tc_emu.cpp; mma.sync, inline PTX here, is the one
 * instruction the emulator supplies in its own form (GQ_CUDA_EMU). */
#ifndef GQ_ATTENTION_TC_CUH
#define GQ_ATTENTION_TC_CUH

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

enum {
    TC_ROWS = 64,                /* queries or keys of a block, and of a tile */
    TC_WARPS = 4,                /* 16 rows each */
    TC_THREADS = TC_WARPS * 32,
    TC_LDS = TC_ROWS + 4,        /* fp32 score rows (floats) */
    TC_LDP = TC_ROWS + 8         /* bf16 probability rows (elements; 16 bytes of skew) */
};
#define TC_FULL 0xffffffffu
#define TC_LOG2E 1.4426950408889634f
#define TC_LN2 0.6931471805599453f

/* mma.sync m16n8k16 (bf16 in, fp32 accumulate) on registers as the PTX ISA lays them out
 * (g = lane / 4, c = lane % 4): A (16 x 16, row-major) a[0] = (g, 2c..2c+1), a[1] = (g+8, same),
 * a[2] = (g, 2c+8..2c+9), a[3] = (g+8, same), the lower column in the low half; B (16 x 8)
 * b0 = rows 2c..2c+1 of column g, b1 = rows 2c+8..2c+9; C / D (16 x 8) d[0..1] = (g, 2c..2c+1),
 * d[2..3] = (g+8, 2c..2c+1). cuda_emu.h models the same layout. */
#ifdef GQ_CUDA_EMU
#define tc_mma gq_emu::mma_m16n8k16_bf16
static inline uint32_t tc_ld32(const bf16 *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 as the PTX ISA defines it: lanes 8i..8i+7 give
 * the rows of 8 x 8 matrix i (8 bf16 each); lane l gets in r[i] elements (2(l%4), l/4) and
 * (2(l%4)+1, l/4) of matrix i, i.e. column l/4 of two adjacent rows (a B fragment of the rows'
 * transpose). The rows' addresses meet through the warp's shuffle exchange. */
static inline void tc_ldsm_x4_t(uint32_t (&r)[4], const bf16 *p) {
    const int lane = threadIdx.x % 32;
    for (int i = 0; i < 4; i++) {
        const bf16 *a = (const bf16 *)__shfl_sync(0xffffffffu, (uintptr_t)p, 8 * i + 2 * (lane % 4));
        const bf16 *b = (const bf16 *)__shfl_sync(0xffffffffu, (uintptr_t)p, 8 * i + 2 * (lane % 4) + 1);
        r[i] = (uint32_t)__bfloat16_as_ushort(a[lane / 4]) | (uint32_t)__bfloat16_as_ushort(b[lane / 4]) << 16;
    }
}
/* ldmatrix.sync.aligned.m8n8.x4.shared.b16 (not transposed): lanes 8i..8i+7 give the rows of
 * 8 x 8 matrix i; lane l gets in r[i] elements (l/4, 2(l%4)) and (l/4, 2(l%4)+1) of matrix i,
 * i.e. two adjacent bf16 of row l/4 (a B fragment half of a row-major tile of B's columns) */
static inline void tc_ldsm_x4(uint32_t (&r)[4], const bf16 *p) {
    const int lane = threadIdx.x % 32;
    for (int i = 0; i < 4; i++) {
        const bf16 *a = (const bf16 *)__shfl_sync(0xffffffffu, (uintptr_t)p, 8 * i + lane / 4);
        r[i] = tc_ld32(a + 2 * (lane % 4));
    }
}
/* cp.async of 16 bytes (zeros where !in): the emulator copies at once; commit / wait do nothing
 * (a missing wait shows on the GPU only: every wait here is followed by __syncthreads) */
static inline void tc_cp16(bf16 *dst, const bf16 *src, bool in) {
    if (in) memcpy(dst, src, 16);
    else memset(dst, 0, 16);
}
static inline void tc_cp_commit() {}
template <int N> static inline void tc_cp_wait() {}
#else
static __device__ __forceinline__ void tc_mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* two adjacent bf16 of shared memory (4-byte aligned) as one register */
static __device__ __forceinline__ uint32_t tc_ld32(const bf16 *p) { return *(const uint32_t *)p; }
/* four 8 x 8 bf16 matrices of shared memory, transposed (lane 8i + k gives row k of matrix i; the
 * rows 16-byte aligned): r[i] = B fragment half of matrix i's transpose */
static __device__ __forceinline__ void tc_ldsm_x4_t(uint32_t (&r)[4], const bf16 *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
/* four 8 x 8 bf16 matrices of shared memory as they are (lane 8i + k gives row k of matrix i): r[i]
 * = the two bf16 of row lane/4, columns 2(lane%4).. of matrix i */
static __device__ __forceinline__ void tc_ldsm_x4(uint32_t (&r)[4], const bf16 *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
/* 16 bytes global -> shared without passing through registers (zeros where !in: source size 0) */
static __device__ __forceinline__ void tc_cp16(bf16 *dst, const bf16 *src, bool in) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(in ? 16 : 0) : "memory");
}
static __device__ __forceinline__ void tc_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> static __device__ __forceinline__ void tc_cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
#endif
/* two floats as a bf16 pair, lo in the low half */
static __device__ __forceinline__ uint32_t tc_pack(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16;
}
static __device__ __forceinline__ float tc_lo(uint32_t v) {
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)(v & 0xffffu)));
}
static __device__ __forceinline__ float tc_hi(uint32_t v) {
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)(v >> 16)));
}

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt; /* a transposed row-major tile */
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;

/* the softmax scale 1 / sqrt(HS) and the same times log2(e) (the kernels' base-2 exponentials),
 * computed once for the forward and the backward alike */
static __host__ inline float tc_scale(int hs) { return 1.0f / sqrtf((float)hs); }
static __host__ inline float tc_sl2(int hs) { return TC_LOG2E * tc_scale(hs); }

/* Shared memory, carved in 128-byte pieces (WMMA wants 32-byte-aligned fragment rows); the
 * host adds the same sizes up with tc_bytes. */
static __host__ __device__ constexpr size_t tc_bytes(size_t n) { return (n + 127) / 128 * 128; }
struct tc_carve {
    unsigned char *p;
    template <typename E> __device__ E *take(size_t n) {
        E *r = (E *)p;
        p += tc_bytes(n * sizeof(E));
        return r;
    }
};

template <int HS> struct tc_dims {
    static constexpr int LDH = HS + 8; /* bf16 rows of a head (elements) */
    static constexpr int LDO = HS + 4; /* fp32 rows of a head (floats) */
    static constexpr int NF = HS / 16; /* 16-column fragments across a head */
    /* fp32 region: two score tiles, or (at the end) a 64 x HS staging of the result */
    static constexpr size_t REGION = 2 * TC_ROWS * TC_LDS > TC_ROWS * LDO ? 2 * TC_ROWS * TC_LDS : TC_ROWS * LDO;
    static constexpr size_t TILE = tc_bytes(TC_ROWS * LDH * sizeof(bf16));
    static constexpr size_t PTILE = tc_bytes(TC_ROWS * TC_LDP * sizeof(bf16));
    static constexpr size_t VEC = tc_bytes(TC_ROWS * sizeof(float));
    static constexpr size_t FORWARD = 3 * TILE + tc_bytes(TC_ROWS * TC_LDS * sizeof(float)) + PTILE +
                                      tc_bytes(TC_ROWS * LDO * sizeof(float)) + 2 * VEC;
    /* the register-level kernels: row-major tiles, and transposed ones (HS rows of 64) */
    static constexpr size_t TTILE = tc_bytes(HS * TC_LDP * sizeof(bf16));
    static constexpr size_t FORWARD2 = 2 * TILE + TTILE;
    static constexpr size_t DKDV2 = 4 * TILE + 2 * TTILE + 2 * VEC;
    static constexpr size_t DQ2 = 4 * TILE + TTILE + 2 * VEC;
    static constexpr size_t DKDV = 4 * TILE + 2 * VEC + tc_bytes(REGION * sizeof(float)) + 2 * PTILE;
    static constexpr size_t DQ = 4 * TILE + 2 * VEC + tc_bytes(REGION * sizeof(float)) + PTILE;
};

/* an activation's element as a tile holds it: fp32 rounded to nearest, bf16 as it is */
static __device__ __forceinline__ bf16 tc_bf16(float x) { return __float2bfloat16_rn(x); }
static __device__ __forceinline__ bf16 tc_bf16(bf16 x) { return x; }

/* Whether a head's rows load 16 bytes at a time: the head 16-byte aligned and its rows a
 * multiple of 16 bytes apart (bf16 rows: 8 elements a load, fp32 rows: 4). Block-uniform. */
template <class ST> static __device__ __forceinline__ bool tc_vec_ok(const ST *head, size_t stride) {
    return (((uintptr_t)head | (uintptr_t)(stride * sizeof(ST))) & 15u) == 0;
}

/* 16 bytes of row t of a head from column c (zeros past T), as bf16: a bf16 source as it lies,
 * an fp32 one (two loads, 8 values) rounded to nearest; e(k) is column c + k */
struct tc_chunk {
    uint4 v;
    __device__ bf16 e(int k) const {
        const unsigned w = k < 2 ? v.x : k < 4 ? v.y : k < 6 ? v.z : v.w;
        return __ushort_as_bfloat16((unsigned short)(k % 2 ? w >> 16 : w & 0xffffu));
    }
};
static __device__ __forceinline__ tc_chunk tc_load8(const bf16 *p, bool in) {
    tc_chunk r;
    r.v = in ? *(const uint4 *)p : uint4{0u, 0u, 0u, 0u};
    return r;
}
static __device__ __forceinline__ tc_chunk tc_load8(const float *p, bool in) {
    tc_chunk r;
    const float4 a = in ? *(const float4 *)p : float4{0.0f, 0.0f, 0.0f, 0.0f};
    const float4 b = in ? *(const float4 *)(p + 4) : float4{0.0f, 0.0f, 0.0f, 0.0f};
    r.v = uint4{tc_pack(a.x, a.y), tc_pack(a.z, a.w), tc_pack(b.x, b.y), tc_pack(b.z, b.w)};
    return r;
}

/* rows [r0, r0 + 64) of one head of an fp32 or bf16 activation (rows `stride` elements apart, the
 * head's first column at `head`) into a bf16 tile; rows at or past T are zero. 16-byte loads and
 * stores where tc_vec_ok, else one element per thread. */
template <int HS, class ST> static __device__ void load_tile(bf16 *s, const ST *head, size_t stride, int r0, int T) {
    if (tc_vec_ok(head, stride)) {
        constexpr int V = HS / 8; /* 8-element chunks a row (tile rows are 16-byte multiples: LDH) */
        for (int i = threadIdx.x; i < TC_ROWS * V; i += TC_THREADS) {
            const int r = i / V, c = i % V * 8, t = r0 + r;
            *(uint4 *)(s + r * tc_dims<HS>::LDH + c) = tc_load8(head + (size_t)(t < T ? t : 0) * stride + c, t < T).v;
        }
        return;
    }
    for (int i = threadIdx.x; i < TC_ROWS * HS; i += TC_THREADS) {
        const int r = i / HS, d = i % HS, t = r0 + r;
        s[r * tc_dims<HS>::LDH + d] = t < T ? tc_bf16(head[(size_t)t * stride + d]) : tc_bf16(0.0f);
    }
}

/* the same rows transposed: s[d * TC_LDP + r] (HS rows of 64), for B operands that run along
 * the tile's rows (16-byte loads where tc_vec_ok, each scattered to 8 rows of the tile) */
template <int HS, class ST> static __device__ void load_tile_t(bf16 *s, const ST *head, size_t stride, int r0, int T) {
    if (tc_vec_ok(head, stride)) {
        constexpr int V = HS / 8;
        for (int i = threadIdx.x; i < TC_ROWS * V; i += TC_THREADS) {
            const int r = i % TC_ROWS, c = i / TC_ROWS * 8, t = r0 + r; /* lanes along r: conflict-free stores */
            const tc_chunk ch = tc_load8(head + (size_t)(t < T ? t : 0) * stride + c, t < T);
#pragma unroll
            for (int k = 0; k < 8; k++) s[(c + k) * TC_LDP + r] = ch.e(k);
        }
        return;
    }
    for (int i = threadIdx.x; i < TC_ROWS * HS; i += TC_THREADS) {
        const int r = i / HS, d = i % HS, t = r0 + r;
        s[d * TC_LDP + r] = t < T ? tc_bf16(head[(size_t)t * stride + d]) : tc_bf16(0.0f);
    }
}

/* t (HS rows of 64, stride TC_LDP) = the transpose of the bf16 tile s (64 rows, stride LDH),
 * within shared memory: a tile the kernel has loaded already is not read from global memory again */
template <int HS> static __device__ void transpose_tile(bf16 *t, const bf16 *s) {
    for (int i = threadIdx.x; i < TC_ROWS * HS; i += TC_THREADS) {
        const int r = i % TC_ROWS, d = i / TC_ROWS;
        t[d * TC_LDP + r] = s[r * tc_dims<HS>::LDH + d];
    }
}

/* WMMA: the 16 x 16 block (the warp's rows, column block n) of a b^T into a fp32 score tile
 * (stride TC_LDS): a's 16 rows of the warp and b's rows 16n..16n+15, row-major bf16 tiles of HS
 * columns */
template <int HS> static __device__ void tc_wmma_bt(float *out, const bf16 *a, const bf16 *b, int warp, int n) {
    typedef tc_dims<HS> D;
    frag_acc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D::NF; kk++) {
        frag_a fa;
        frag_bt fb;
        wmma::load_matrix_sync(fa, a + warp * 16 * D::LDH + kk * 16, D::LDH);
        wmma::load_matrix_sync(fb, b + n * 16 * D::LDH + kk * 16, D::LDH);
        wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + warp * 16 * TC_LDS + n * 16, acc, TC_LDS, wmma::mem_row_major);
}

/* Forward. Block: 64 queries from q0 (the last query tiles, which see the most keys, first);
 * warp w owns queries q0 + 16w ... Per key tile: S = q k^T (16 x 64 per warp) into shared
 * memory; two lanes a row take the online softmax step (new maximum, probabilities in bf16,
 * rescaled running sum and output); then O += P v on the tensor cores. */
template <int HS, class OT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_forward_kernel(OT *out, float *lse, const OT *qkv, int T, int C, int NH, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC_ROWS, w0 = q0 + warp * 16;
    const int r = lane / 2, half = lane % 2, row = warp * 16 + r, t = w0 + r; /* softmax: this lane's row */
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *ks = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *vs = sm.take<bf16>(TC_ROWS * D::LDH);
    float *ss = sm.take<float>(TC_ROWS * TC_LDS);
    bf16 *ps = sm.take<bf16>(TC_ROWS * TC_LDP);
    float *os = sm.take<float>(TC_ROWS * D::LDO), *ms = sm.take<float>(TC_ROWS), *ls = sm.take<float>(TC_ROWS);
    const OT *head = qkv + (size_t)b * T * C3 + h * HS;
    load_tile<HS>(qs, head, C3, q0, T);
    for (int i = threadIdx.x; i < TC_ROWS * D::LDO; i += TC_THREADS) os[i] = 0.0f;
    for (int i = threadIdx.x; i < TC_ROWS; i += TC_THREADS) ms[i] = -3.0e38f, ls[i] = 0.0f;
    const int kend = min(T, q0 + TC_ROWS);
    for (int k0 = 0; k0 < kend; k0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(ks, head + C, C3, k0, T);
        load_tile<HS>(vs, head + 2 * C, C3, k0, T);
        __syncthreads();
        if (w0 >= T || k0 > w0 + 15) continue; /* warp-uniform: the warp sees nothing of this tile */
        for (int n = 0; n < 4 && k0 + 16 * n <= w0 + 15; n++) {
            tc_wmma_bt<HS>(ss, qs, ks, warp, n);
        }
        __syncwarp();
        /* the lane's half of row t (columns 2i + half), log2 domain; scores of blocks the
         * loop above skipped are never read (they are masked) */
        const float *srow = ss + row * TC_LDS;
        bf16 *prow = ps + row * TC_LDP;
        float mx = -3.0e38f;
        for (int i = 0; i < 32; i++) {
            const int j = 2 * i + half;
            if (k0 + j <= t && t < T) mx = fmaxf(mx, srow[j] * sl2);
        }
        mx = fmaxf(mx, __shfl_xor_sync(TC_FULL, mx, 1));
        const float mold = ms[row], mnew = fmaxf(mold, mx), alpha = exp2f(mold - mnew);
        float sum = 0.0f;
        for (int i = 0; i < 32; i++) {
            const int j = 2 * i + half;
            const bf16 p = __float2bfloat16_rn(k0 + j <= t && t < T ? exp2f(srow[j] * sl2 - mnew) : 0.0f);
            prow[j] = p;
            sum += __bfloat162float(p); /* the probabilities as the product sees them */
        }
        sum += __shfl_xor_sync(TC_FULL, sum, 1);
        float *orow = os + row * D::LDO;
        for (int i = 0; i < HS / 2; i++) orow[2 * i + half] *= alpha;
        __syncwarp();
        if (half == 0) ms[row] = mnew, ls[row] = ls[row] * alpha + sum;
        __syncwarp();
#pragma unroll
        for (int n = 0; n < D::NF; n++) {
            frag_acc acc;
            wmma::load_matrix_sync(acc, os + warp * 16 * D::LDO + n * 16, D::LDO, wmma::mem_row_major);
            for (int kk = 0; kk < 4 && k0 + 16 * kk <= w0 + 15; kk++) {
                frag_a fa;
                frag_b fb;
                wmma::load_matrix_sync(fa, ps + warp * 16 * TC_LDP + kk * 16, TC_LDP);
                wmma::load_matrix_sync(fb, vs + kk * 16 * D::LDH + n * 16, D::LDH);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(os + warp * 16 * D::LDO + n * 16, acc, D::LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (t < T) {
        const float inv = 1.0f / ls[row];
        OT *o = out + ((size_t)b * T + t) * C + h * HS;
        for (int i = 0; i < HS / 2; i++) gq_st(o + 2 * i + half, os[row * D::LDO + 2 * i + half] * inv);
        if (half == 0) lse[(size_t)bh * T + t] = (ms[row] + log2f(ls[row])) * TC_LN2;
    }
}

/* the row statistics of a tile of 64 rows from r0: lse (as log2) and D (the softmax backward's
 * dO . O), zero past T */
static __device__ void load_stats(float *l2, float *dl, const float *lse, const float *Dv, size_t bhT, int r0, int T) {
    for (int i = threadIdx.x; i < TC_ROWS; i += TC_THREADS) {
        const int t = r0 + i;
        l2[i] = t < T ? lse[bhT + t] * TC_LOG2E : 0.0f;
        dl[i] = t < T ? Dv[bhT + t] : 0.0f;
    }
}

/* 16 x HS accumulators of a warp, times `mul`, into columns [col, col + HS) of rows
 * row0 + 0..15 (rows at or past T skipped) of a (., ld) fp32 or bf16 matrix, through the warp's
 * rows of the fp32 staging area (row stride LDO) */
template <int HS, class DT>
static __device__ void store_rows(DT *dst, size_t ld, int col, int row0, int T, frag_acc (&acc)[HS / 16], float mul,
                                  float *stage) {
    typedef tc_dims<HS> D;
    const int lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
#pragma unroll
    for (int n = 0; n < D::NF; n++) wmma::store_matrix_sync(stage + n * 16, acc[n], D::LDO, wmma::mem_row_major);
    __syncwarp();
    if (row0 + r < T) {
        DT *o = dst + (size_t)(row0 + r) * ld + col;
        for (int i = 0; i < HS / 2; i++) gq_st(o + 2 * i + half, stage[r * D::LDO + 2 * i + half] * mul);
    }
    __syncwarp();
}

/* dK and dV. Block: 64 keys from k0 (the first key tiles, which most queries see, first); warp
 * w owns keys k0 + 16w ... Per query tile from k0 on: S^T = k q^T and dP^T = v dO^T (16 x 64 per
 * warp) into shared memory; two lanes a key row form P^T = exp(S^T - lse) and
 * dS^T = P^T (dP^T - D) in bf16; then dV += P^T dO and dK += dS^T q in accumulator fragments. */
template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_dkdv_kernel(QT *dqkv, const float *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C,
                   int NH, float scale, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int k0 = blockIdx.x * TC_ROWS, w0 = k0 + warp * 16;
    const int r = lane / 2, half = lane % 2, row = warp * 16 + r, key = w0 + r;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *ks = sm.take<bf16>(TC_ROWS * D::LDH), *vs = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *dos = sm.take<bf16>(TC_ROWS * D::LDH);
    float *l2 = sm.take<float>(TC_ROWS), *dl = sm.take<float>(TC_ROWS);
    float *region = sm.take<float>(D::REGION), *st = region, *dpt = region + TC_ROWS * TC_LDS;
    bf16 *pt = sm.take<bf16>(TC_ROWS * TC_LDP), *dst = sm.take<bf16>(TC_ROWS * TC_LDP);
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const float *dhead = dout + (size_t)b * T * C + h * HS;
    load_tile<HS>(ks, head + C, C3, k0, T);
    load_tile<HS>(vs, head + 2 * C, C3, k0, T);
    frag_acc dk[D::NF], dv[D::NF];
#pragma unroll
    for (int n = 0; n < D::NF; n++) wmma::fill_fragment(dk[n], 0.0f), wmma::fill_fragment(dv[n], 0.0f);
    for (int q0 = k0; q0 < T; q0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(qs, head, C3, q0, T);
        load_tile<HS>(dos, dhead, C, q0, T);
        load_stats(l2, dl, lse, Dv, (size_t)bh * T, q0, T);
        __syncthreads();
        if (w0 >= T) continue; /* warp-uniform */
        for (int n = 0; n < 4; n++) {
            if (q0 + 16 * n + 15 < w0) continue; /* these queries come before all of the warp's keys */
            tc_wmma_bt<HS>(st, ks, qs, warp, n);
            tc_wmma_bt<HS>(dpt, vs, dos, warp, n);
        }
        __syncwarp();
        for (int i = 0; i < 32; i++) {
            const int j = 2 * i + half, tq = q0 + j;
            float p = 0.0f, ds = 0.0f;
            if (key < T && tq < T && tq >= key) {
                p = exp2f(st[row * TC_LDS + j] * sl2 - l2[j]);
                ds = p * (dpt[row * TC_LDS + j] - dl[j]);
            }
            pt[row * TC_LDP + j] = __float2bfloat16_rn(p);
            dst[row * TC_LDP + j] = __float2bfloat16_rn(ds);
        }
        __syncwarp();
#pragma unroll
        for (int n = 0; n < D::NF; n++)
            for (int kk = 0; kk < 4; kk++) {
                if (q0 + 16 * kk + 15 < w0) continue; /* P^T and dS^T are zero there */
                frag_a fa;
                frag_b fb;
                wmma::load_matrix_sync(fa, pt + warp * 16 * TC_LDP + kk * 16, TC_LDP);
                wmma::load_matrix_sync(fb, dos + kk * 16 * D::LDH + n * 16, D::LDH);
                wmma::mma_sync(dv[n], fa, fb, dv[n]);
                wmma::load_matrix_sync(fa, dst + warp * 16 * TC_LDP + kk * 16, TC_LDP);
                wmma::load_matrix_sync(fb, qs + kk * 16 * D::LDH + n * 16, D::LDH);
                wmma::mma_sync(dk[n], fa, fb, dk[n]);
            }
    }
    __syncthreads(); /* the region becomes the staging area, whose rows span other warps' tiles */
    float *stage = region + warp * 16 * D::LDO;
    QT *base = dqkv + (size_t)b * T * C3 + h * HS;
    store_rows<HS>(base, C3, C, w0, T, dk, scale, stage);
    store_rows<HS>(base, C3, 2 * C, w0, T, dv, 1.0f, stage);
}

/* dQ. Block: 64 queries from q0 (longest rows first); warp w owns queries q0 + 16w ... Per key
 * tile: S = q k^T and dP = dO v^T, dS = P (dP - D) in bf16 (two lanes a row), dQ += dS k. */
template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_dq_kernel(QT *dqkv, const float *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C,
                 int NH, float scale, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC_ROWS, w0 = q0 + warp * 16;
    const int r = lane / 2, half = lane % 2, row = warp * 16 + r, t = w0 + r;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *dos = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *ks = sm.take<bf16>(TC_ROWS * D::LDH), *vs = sm.take<bf16>(TC_ROWS * D::LDH);
    float *l2 = sm.take<float>(TC_ROWS), *dl = sm.take<float>(TC_ROWS);
    float *region = sm.take<float>(D::REGION), *ss = region, *dps = region + TC_ROWS * TC_LDS;
    bf16 *dss = sm.take<bf16>(TC_ROWS * TC_LDP);
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const float *dhead = dout + (size_t)b * T * C + h * HS;
    load_tile<HS>(qs, head, C3, q0, T);
    load_tile<HS>(dos, dhead, C, q0, T);
    load_stats(l2, dl, lse, Dv, (size_t)bh * T, q0, T);
    frag_acc dq[D::NF];
#pragma unroll
    for (int n = 0; n < D::NF; n++) wmma::fill_fragment(dq[n], 0.0f);
    const int kend = min(T, q0 + TC_ROWS);
    for (int k0 = 0; k0 < kend; k0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(ks, head + C, C3, k0, T);
        load_tile<HS>(vs, head + 2 * C, C3, k0, T);
        __syncthreads();
        if (w0 >= T || k0 > w0 + 15) continue; /* warp-uniform */
        for (int n = 0; n < 4 && k0 + 16 * n <= w0 + 15; n++) {
            tc_wmma_bt<HS>(ss, qs, ks, warp, n);
            tc_wmma_bt<HS>(dps, dos, vs, warp, n);
        }
        __syncwarp();
        for (int i = 0; i < 32; i++) {
            const int j = 2 * i + half;
            float ds = 0.0f;
            if (k0 + j <= t && t < T)
                ds = exp2f(ss[row * TC_LDS + j] * sl2 - l2[row]) * (dps[row * TC_LDS + j] - dl[row]);
            dss[row * TC_LDP + j] = __float2bfloat16_rn(ds);
        }
        __syncwarp();
#pragma unroll
        for (int n = 0; n < D::NF; n++)
            for (int kk = 0; kk < 4 && k0 + 16 * kk <= w0 + 15; kk++) {
                frag_a fa;
                frag_b fb;
                wmma::load_matrix_sync(fa, dss + warp * 16 * TC_LDP + kk * 16, TC_LDP);
                wmma::load_matrix_sync(fb, ks + kk * 16 * D::LDH + n * 16, D::LDH);
                wmma::mma_sync(dq[n], fa, fb, dq[n]);
            }
    }
    __syncthreads();
    store_rows<HS>(dqkv + (size_t)b * T * C3 + h * HS, C3, 0, w0, T, dq, scale, region + warp * 16 * D::LDO);
}

/* One key tile's online-softmax step for a warp's rows t0 and t1 (the register-level forwards'):
 * the scores s (16 x 64 from key k0) masked to the keys each row sees and scaled to log2 units,
 * the running maxima m and sums l updated, the probabilities left in bf16 as P v's A fragments
 * pa (tiles 2j and 2j+1 of s are k-step j; the sums are of these bf16 values), and the running
 * output's rescale factors a0, a1. MASK false: a tile the caller knows every row sees whole
 * (every key at or before every row, every row before T; tc_interior): the masks' compares and
 * selects left out, which would keep every value as it is, so the same bits */
template <bool MASK = true>
static __device__ __forceinline__ void tc_softmax_step(float (&s)[8][4], uint32_t (&pa)[4][4], float &m0, float &m1,
                                                       float &l0, float &l1, float &a0, float &a1, int k0, int t0,
                                                       int t1, int T, float sl2) {
    const int c = threadIdx.x % 4;
    float mx0 = -3.0e38f, mx1 = -3.0e38f; /* rows t0: s[j][0..1], t1: s[j][2..3] */
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = k0 + 8 * j + 2 * c + (e & 1), t = e < 2 ? t0 : t1;
            const bool vis = !MASK || (key <= t && t < T);
            s[j][e] = vis ? s[j][e] * sl2 : -3.0e38f;
            if (e < 2) mx0 = fmaxf(mx0, s[j][e]);
            else mx1 = fmaxf(mx1, s[j][e]);
        }
    mx0 = fmaxf(mx0, __shfl_xor_sync(TC_FULL, mx0, 1)), mx0 = fmaxf(mx0, __shfl_xor_sync(TC_FULL, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(TC_FULL, mx1, 1)), mx1 = fmaxf(mx1, __shfl_xor_sync(TC_FULL, mx1, 2));
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1);
    m0 = n0, m1 = n1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++) { /* masked probabilities 0 */
        const float p0 = !MASK || s[j][0] > -1.0e38f ? exp2f(s[j][0] - n0) : 0.0f;
        const float p1 = !MASK || s[j][1] > -1.0e38f ? exp2f(s[j][1] - n0) : 0.0f;
        const float p2 = !MASK || s[j][2] > -1.0e38f ? exp2f(s[j][2] - n1) : 0.0f;
        const float p3 = !MASK || s[j][3] > -1.0e38f ? exp2f(s[j][3] - n1) : 0.0f;
        const uint32_t top = tc_pack(p0, p1), bottom = tc_pack(p2, p3);
        sum0 += tc_lo(top) + tc_hi(top), sum1 += tc_lo(bottom) + tc_hi(bottom);
        pa[j / 2][(j % 2) * 2] = top, pa[j / 2][(j % 2) * 2 + 1] = bottom;
    }
    sum0 += __shfl_xor_sync(TC_FULL, sum0, 1), sum0 += __shfl_xor_sync(TC_FULL, sum0, 2);
    sum1 += __shfl_xor_sync(TC_FULL, sum1, 1), sum1 += __shfl_xor_sync(TC_FULL, sum1, 2);
    l0 = l0 * a0 + sum0, l1 = l1 * a1 + sum1;
}

/* the register-level forwards' end: rows t0, t1 of head h of out (o / l) and their lse (natural log) */
template <int HS, class OT>
static __device__ __forceinline__ void tc_store_rows(OT *out, float *lse, const float (&o)[HS / 8][4], float m0,
                                                     float m1, float l0, float l1, int b, int h, int bh, int t0,
                                                     int t1, int T, int C) {
    const int c = threadIdx.x % 4;
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
#pragma unroll
    for (int j = 0; j < HS / 8; j++) {
        const int d = 8 * j + 2 * c;
        if (t0 < T) {
            OT *p = out + ((size_t)b * T + t0) * C + h * HS + d;
            gq_st(p, o[j][0] * i0), gq_st(p + 1, o[j][1] * i0);
        }
        if (t1 < T) {
            OT *p = out + ((size_t)b * T + t1) * C + h * HS + d;
            gq_st(p, o[j][2] * i1), gq_st(p + 1, o[j][3] * i1);
        }
    }
    if (c == 0 && t0 < T) lse[(size_t)bh * T + t0] = (m0 + log2f(l0)) * TC_LN2;
    if (c == 0 && t1 < T) lse[(size_t)bh * T + t1] = (m1 + log2f(l1)) * TC_LN2;
}

/* Forward, register-level (FlashAttention-2's form on mma.sync): the same blocks and tiles as
 * tc_forward_kernel, but a warp's scores, probabilities and running output stay in registers
 * (layout above): S for 64 keys is 8 accumulator tiles of 16 x 8, a lane holding rows g and g+8,
 * whose maxima and sums need two shuffles among the 4 lanes of a group; the probabilities,
 * packed to bf16, are the A operand of P v as they lie (tiles 2j and 2j+1 of S are k-step j).
 * v is stored transposed in shared memory so that its B fragments are 32-bit loads. */
template <int HS, class OT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_forward2_kernel(OT *out, float *lse, const OT *qkv, int T, int C, int NH, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC_ROWS, w0 = q0 + warp * 16;
    const int t0 = w0 + g, t1 = t0 + 8; /* this lane's two query rows */
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *ks = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *vt = sm.take<bf16>(HS * TC_LDP); /* vt[d][key] */
    const OT *head = qkv + (size_t)b * T * C3 + h * HS;
    load_tile<HS>(qs, head, C3, q0, T);
    __syncthreads();
    uint32_t qa[D::NF][4]; /* this warp's 16 queries as A fragments, k-step kk = dims 16kk.. */
#pragma unroll
    for (int kk = 0; kk < D::NF; kk++) {
        const bf16 *r0 = qs + (warp * 16 + g) * D::LDH + kk * 16 + 2 * c, *r1 = r0 + 8 * D::LDH;
        qa[kk][0] = tc_ld32(r0), qa[kk][1] = tc_ld32(r1), qa[kk][2] = tc_ld32(r0 + 8), qa[kk][3] = tc_ld32(r1 + 8);
    }
    float o[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -3.0e38f, m1 = -3.0e38f, l0 = 0.0f, l1 = 0.0f;
    const int kend = min(T, q0 + TC_ROWS);
    for (int k0 = 0; k0 < kend; k0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(ks, head + C, C3, k0, T);
        load_tile_t<HS>(vt, head + 2 * C, C3, k0, T);
        __syncthreads();
        if (w0 >= T || k0 > w0 + 15) continue; /* warp-uniform */
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            if (k0 + 8 * j > w0 + 15) continue; /* keys after every query of the warp (warp-uniform) */
#pragma unroll
            for (int kk = 0; kk < D::NF; kk++) {
                const bf16 *kr = ks + (8 * j + g) * D::LDH + kk * 16 + 2 * c;
                tc_mma(s[j], qa[kk], tc_ld32(kr), tc_ld32(kr + 8));
            }
        }
        uint32_t pa[4][4];
        float a0, a1;
        tc_softmax_step(s, pa, m0, m1, l0, l1, a0, a1, k0, t0, t1, T, sl2);
#pragma unroll
        for (int j = 0; j < HS / 8; j++) {
            o[j][0] *= a0, o[j][1] *= a0, o[j][2] *= a1, o[j][3] *= a1;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (k0 + 16 * kk > w0 + 15) break; /* P is zero there (warp-uniform) */
                const bf16 *vr = vt + (8 * j + g) * TC_LDP + kk * 16 + 2 * c;
                tc_mma(o[j], pa[kk], tc_ld32(vr), tc_ld32(vr + 8));
            }
        }
    }
    tc_store_rows<HS>(out, lse, o, m0, m1, l0, l1, b, h, bh, t0, t1, T, C);
}

/* Forward, pipelined (session 19, after the H200 measured tc_forward2 at 64 TFLOP/s against
 * PyTorch's SDPA at ~175): tc_forward2_kernel's arithmetic, bit for bit (each query row's tiles,
 * products and softmax steps in the same order), with 8 warps = 128 queries a block (a key tile
 * loaded once serves twice the queries), the next key and value tiles copied by cp.async while
 * the warps work on the current ones (two buffers), and v's B fragments read from its row-major
 * tile by ldmatrix.trans (no transposed copy in shared memory). A bf16 qkv with 16-byte rows
 * takes the asynchronous copies; fp32 (rounded as it loads) or unaligned rows load as before,
 * still into the two buffers. */
enum { TC3_WARPS = 8, TC3_THREADS = TC3_WARPS * 32, TC3_Q = TC3_WARPS * 16 };
template <int HS> struct tc3_dims {
    static constexpr int LDH = HS + 8; /* 16-byte rows: ldmatrix and cp.async */
    static constexpr size_t QTILE = tc_bytes(TC3_Q * LDH * sizeof(bf16)), KTILE = tc_bytes(TC_ROWS * LDH * sizeof(bf16));
    static constexpr size_t SMEM = QTILE + 4 * KTILE;
};

/* rows [r0, r0 + ROWS) of a head into a bf16 tile (stride HS + 8), rows at or past T zero, by the
 * block's NT threads: cp.async (bf16 source, 16-byte rows: `async`), or loads */
template <int HS, int ROWS, class ST, int NT = TC3_THREADS>
static __device__ void tc3_load(bf16 *s, const ST *head, size_t stride, int r0, int T, bool async) {
    constexpr int V = HS / 8, LDH = tc3_dims<HS>::LDH;
    if constexpr (sizeof(ST) == 2) {
        if (async) {
            for (int i = threadIdx.x; i < ROWS * V; i += NT) {
                const int r = i / V, c = i % V * 8, t = r0 + r;
                tc_cp16(s + r * LDH + c, (const bf16 *)head + (size_t)(t < T ? t : 0) * stride + c, t < T);
            }
            return;
        }
    }
    if (tc_vec_ok(head, stride)) {
        for (int i = threadIdx.x; i < ROWS * V; i += NT) {
            const int r = i / V, c = i % V * 8, t = r0 + r;
            *(uint4 *)(s + r * LDH + c) = tc_load8(head + (size_t)(t < T ? t : 0) * stride + c, t < T).v;
        }
        return;
    }
    for (int i = threadIdx.x; i < ROWS * HS; i += NT) {
        const int r = i / HS, d = i % HS, t = r0 + r;
        s[r * LDH + d] = t < T ? tc_bf16(head[(size_t)t * stride + d]) : tc_bf16(0.0f);
    }
}

template <int HS, class OT>
static __global__ void __launch_bounds__(TC3_THREADS, 2) /* 128 registers: two blocks (16 warps) an SM, as tc_forward2's four */
    tc_forward3_kernel(OT *out, float *lse, const OT *qkv, int T, int C, int NH, float sl2, int inner) {
    constexpr int LDH = tc3_dims<HS>::LDH, NF = HS / 16;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC3_Q, w0 = q0 + warp * 16;
    const int t0 = w0 + g, t1 = t0 + 8; /* this lane's two query rows */
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC3_Q * LDH);
    /* buffer i's keys at kvb + i * 2 * KT, its values KT further (row-major tiles) */
    constexpr size_t KT = tc3_dims<HS>::KTILE / sizeof(bf16);
    bf16 *kvb = sm.take<bf16>(4 * KT);
    const OT *head = qkv + (size_t)b * T * C3 + h * HS;
    const bool async = sizeof(OT) == 2 && tc_vec_ok(head, C3); /* block-uniform */
    const int kend = min(T, q0 + TC3_Q), nt = (kend + TC_ROWS - 1) / TC_ROWS;
    tc3_load<HS, TC3_Q>(qs, head, C3, q0, T, async);
    tc3_load<HS, TC_ROWS>(kvb, head + C, C3, 0, T, async);
    tc3_load<HS, TC_ROWS>(kvb + KT, head + 2 * C, C3, 0, T, async);
    tc_cp_commit();
    uint32_t qa[NF][4]; /* this warp's 16 queries as A fragments, k-step kk = dims 16kk.. */
    float o[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -3.0e38f, m1 = -3.0e38f, l0 = 0.0f, l1 = 0.0f;
    for (int it = 0; it < nt; it++) {
        const int k0 = it * TC_ROWS, cur = it & 1;
        if (it + 1 < nt) { /* the next tiles into the other buffer, free since the last barrier */
            bf16 *nx = kvb + (size_t)(cur ^ 1) * 2 * KT;
            tc3_load<HS, TC_ROWS>(nx, head + C, C3, k0 + TC_ROWS, T, async);
            tc3_load<HS, TC_ROWS>(nx + KT, head + 2 * C, C3, k0 + TC_ROWS, T, async);
            tc_cp_commit();
            tc_cp_wait<1>(); /* this tile's group (and q's) has landed */
        } else {
            tc_cp_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < NF; kk++) {
                const bf16 *r0 = qs + (warp * 16 + g) * LDH + kk * 16 + 2 * c, *r1 = r0 + 8 * LDH;
                qa[kk][0] = tc_ld32(r0), qa[kk][1] = tc_ld32(r1), qa[kk][2] = tc_ld32(r0 + 8), qa[kk][3] = tc_ld32(r1 + 8);
            }
        }
        if (w0 < T && k0 <= w0 + 15) { /* warp-uniform */
            const bf16 *ks = kvb + (size_t)cur * 2 * KT, *vs = ks + KT;
            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
                if (k0 + 8 * j > w0 + 15) continue; /* keys after every query of the warp (warp-uniform) */
                /* k's B fragments of two k-steps by one ldmatrix (matrices: dims 32p + 0, 8, 16, 24
                 * of keys 8j..8j+7), the k-steps in order as before; an odd last one by two loads */
#pragma unroll
                for (int kk = 0; kk + 1 < NF; kk += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, ks + (8 * j + lane % 8) * LDH + kk * 16 + 8 * (lane / 8));
                    tc_mma(s[j], qa[kk], kb[0], kb[1]);
                    tc_mma(s[j], qa[kk + 1], kb[2], kb[3]);
                }
                if constexpr (NF % 2) {
                    const bf16 *kr = ks + (8 * j + g) * LDH + (NF - 1) * 16 + 2 * c;
                    tc_mma(s[j], qa[NF - 1], tc_ld32(kr), tc_ld32(kr + 8));
                }
            }
            uint32_t pa[4][4];
            float a0, a1;
            if (inner && k0 + TC_ROWS - 1 <= w0 && w0 + 15 < T) /* the warp sees the whole tile (warp-uniform) */
                tc_softmax_step<false>(s, pa, m0, m1, l0, l1, a0, a1, k0, t0, t1, T, sl2);
            else
                tc_softmax_step(s, pa, m0, m1, l0, l1, a0, a1, k0, t0, t1, T, sl2);
#pragma unroll
            for (int j = 0; j < HS / 8; j++) o[j][0] *= a0, o[j][1] *= a0, o[j][2] *= a1, o[j][3] *= a1;
            /* O += P v, k-step kk = keys 16kk..: ldmatrix.trans gives the B fragments of two
             * 8-dimension tiles at once (matrices: keys +0..7 / +8..15 of dims 8j.., then of 8j+8..) */
            const int mi = lane / 8, mr = lane % 8;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (k0 + 16 * kk > w0 + 15) break; /* P is zero there (warp-uniform) */
#pragma unroll
                for (int j = 0; j < HS / 8; j += 2) {
                    uint32_t bv[4];
                    tc_ldsm_x4_t(bv, vs + (kk * 16 + (mi & 1) * 8 + mr) * LDH + 8 * (j + (mi >> 1)));
                    tc_mma(o[j], pa[kk], bv[0], bv[1]);
                    tc_mma(o[j + 1], pa[kk], bv[2], bv[3]);
                }
            }
        }
        __syncthreads(); /* every warp is done with this buffer before the next prefetch into it */
    }
    tc_store_rows<HS>(out, lse, o, m0, m1, l0, l1, b, h, bh, t0, t1, T, C);
}

/* A fragment (k-step kk) of rows row0..row0+15 of a row-major bf16 tile (stride ld) */
static __device__ __forceinline__ void tc_frag_a(uint32_t (&a)[4], const bf16 *tile, int ld, int row0, int kk) {
    const int g = threadIdx.x % 32 / 4, c = threadIdx.x % 4;
    const bf16 *r0 = tile + (row0 + g) * ld + kk * 16 + 2 * c, *r1 = r0 + 8 * ld;
    a[0] = tc_ld32(r0), a[1] = tc_ld32(r1), a[2] = tc_ld32(r0 + 8), a[3] = tc_ld32(r1 + 8);
}

/* acc[j] (j < 8: columns 8j.. of a 16 x 64 product) = rows row0.. of a (16 x HS) times the
 * transpose of the 64 rows of b (both row-major, stride LDH); tiles j with skip(j) stay zero.
 * LDSM: b's B fragments of two k-steps by one ldmatrix (matrices: dims 32p + 0, 8, 16, 24 of b's
 * rows 8j..8j+7) in place of four 32-bit loads, an odd last k-step as before: the same products in
 * the same order (the same bits); the pipelined forward and dK / dV kernels take it (in tc_dq3 it
 * took 153 registers instead of 128: a block less an SM). */
template <int HS, bool LDSM = false, class Skip>
static __device__ __forceinline__ void tc_rows_bt(float (&acc)[8][4], const bf16 *a, int row0, const bf16 *b, Skip skip) {
    typedef tc_dims<HS> D;
    const int g = threadIdx.x % 32 / 4, c = threadIdx.x % 4, lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    if constexpr (LDSM) {
#pragma unroll
        for (int kk = 0; kk + 1 < D::NF; kk += 2) {
            uint32_t fa[4], fb[4];
            tc_frag_a(fa, a, D::LDH, row0, kk);
            tc_frag_a(fb, a, D::LDH, row0, kk + 1);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (skip(j)) continue;
                uint32_t m[4];
                tc_ldsm_x4(m, b + (8 * j + lane % 8) * D::LDH + kk * 16 + 8 * (lane / 8));
                tc_mma(acc[j], fa, m[0], m[1]);
                tc_mma(acc[j], fb, m[2], m[3]);
            }
        }
    }
    constexpr int K0 = LDSM ? D::NF / 2 * 2 : 0; /* the k-steps the 32-bit loads take */
#pragma unroll
    for (int kk = K0; kk < D::NF; kk++) {
        uint32_t fa[4];
        tc_frag_a(fa, a, D::LDH, row0, kk);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            if (skip(j)) continue;
            const bf16 *br = b + (8 * j + g) * D::LDH + kk * 16 + 2 * c;
            tc_mma(acc[j], fa, tc_ld32(br), tc_ld32(br + 8));
        }
    }
}

/* out[j] (HS / 8 tiles of 16 x 8) += P (16 x 64, as 8 accumulator tiles p, packed to bf16 here)
 * times the 64 x HS matrix whose transpose is bt (HS rows of 64, stride TC_LDP); k-steps kk with
 * skip(kk) add nothing */
template <int HS, class Skip>
static __device__ __forceinline__ void tc_p_times(float (&out)[HS / 8][4], const float (&p)[8][4], const bf16 *bt, Skip skip) {
    const int g = threadIdx.x % 32 / 4, c = threadIdx.x % 4;
    uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        pa[j / 2][(j % 2) * 2] = tc_pack(p[j][0], p[j][1]);
        pa[j / 2][(j % 2) * 2 + 1] = tc_pack(p[j][2], p[j][3]);
    }
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        if (skip(kk)) continue;
#pragma unroll
        for (int j = 0; j < HS / 8; j++) {
            const bf16 *br = bt + (8 * j + g) * TC_LDP + kk * 16 + 2 * c;
            tc_mma(out[j], pa[kk], tc_ld32(br), tc_ld32(br + 8));
        }
    }
}

/* dK and dV, register-level: tc_dkdv_kernel's blocks and tiles, the warp's S^T = k q^T and
 * dP^T = v dO^T as accumulator tiles (rows: its keys g, g+8; columns: queries), P^T and dS^T
 * formed there, then dV += P^T dO and dK += dS^T q with dO and q transposed in shared memory. */
template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_dkdv2_kernel(QT *dqkv, const float *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C,
                    int NH, float scale, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int k0 = blockIdx.x * TC_ROWS, w0 = k0 + warp * 16, key0 = w0 + g, key1 = key0 + 8;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *ks = sm.take<bf16>(TC_ROWS * D::LDH), *vs = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *dos = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *qt = sm.take<bf16>(HS * TC_LDP), *dot = sm.take<bf16>(HS * TC_LDP);
    float *l2 = sm.take<float>(TC_ROWS), *dl = sm.take<float>(TC_ROWS);
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const float *dhead = dout + (size_t)b * T * C + h * HS;
    load_tile<HS>(ks, head + C, C3, k0, T);
    load_tile<HS>(vs, head + 2 * C, C3, k0, T);
    float dk[HS / 8][4], dv[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.0f;
    for (int q0 = k0; q0 < T; q0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(qs, head, C3, q0, T);
        load_tile<HS>(dos, dhead, C, q0, T);
        load_stats(l2, dl, lse, Dv, (size_t)bh * T, q0, T);
        __syncthreads();
        transpose_tile<HS>(qt, qs);
        transpose_tile<HS>(dot, dos);
        __syncthreads();
        if (w0 >= T) continue; /* warp-uniform */
        /* query tiles before every key of the warp stay zero, and are masked below */
        auto before = [&](int j) { return q0 + 8 * j + 7 < w0; };
        float s[8][4], dp[8][4];
        tc_rows_bt<HS>(s, ks, warp * 16, qs, before);
        tc_rows_bt<HS>(dp, vs, warp * 16, dos, before);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = 8 * j + 2 * c + (e & 1), tq = q0 + col, key = e < 2 ? key0 : key1;
                float p = 0.0f, ds = 0.0f;
                if (key < T && tq < T && tq >= key) {
                    p = exp2f(s[j][e] * sl2 - l2[col]);
                    ds = p * (dp[j][e] - dl[col]);
                }
                s[j][e] = p, dp[j][e] = ds;
            }
        auto none = [&](int kk) { return q0 + 16 * kk + 15 < w0; };
        tc_p_times<HS>(dv, s, dot, none);
        tc_p_times<HS>(dk, dp, qt, none);
    }
    QT *base = dqkv + (size_t)b * T * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < HS / 8; j++) {
        const int d = 8 * j + 2 * c;
        if (key0 < T) {
            QT *r = base + (size_t)key0 * C3 + d;
            gq_st(r + C, dk[j][0] * scale), gq_st(r + C + 1, dk[j][1] * scale);
            gq_st(r + 2 * C, dv[j][0]), gq_st(r + 2 * C + 1, dv[j][1]);
        }
        if (key1 < T) {
            QT *r = base + (size_t)key1 * C3 + d;
            gq_st(r + C, dk[j][2] * scale), gq_st(r + C + 1, dk[j][3] * scale);
            gq_st(r + 2 * C, dv[j][2]), gq_st(r + 2 * C + 1, dv[j][3]);
        }
    }
}

/* dQ, register-level: tc_dq_kernel's blocks and tiles; S = q k^T and dP = dO v^T as accumulator
 * tiles (rows: the lane's queries g, g+8), dS = P (dP - D) there, dQ += dS k with k transposed
 * in shared memory. */
template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_dq2_kernel(QT *dqkv, const float *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C,
                  int NH, float scale, float sl2) {
    typedef tc_dims<HS> D;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC_ROWS, w0 = q0 + warp * 16, t0 = w0 + g, t1 = t0 + 8;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC_ROWS * D::LDH), *dos = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *ks = sm.take<bf16>(TC_ROWS * D::LDH), *vs = sm.take<bf16>(TC_ROWS * D::LDH);
    bf16 *kt = sm.take<bf16>(HS * TC_LDP);
    float *l2 = sm.take<float>(TC_ROWS), *dl = sm.take<float>(TC_ROWS);
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const float *dhead = dout + (size_t)b * T * C + h * HS;
    load_tile<HS>(qs, head, C3, q0, T);
    load_tile<HS>(dos, dhead, C, q0, T);
    load_stats(l2, dl, lse, Dv, (size_t)bh * T, q0, T);
    float dq[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;
    const int kend = min(T, q0 + TC_ROWS);
    for (int k0 = 0; k0 < kend; k0 += TC_ROWS) {
        __syncthreads();
        load_tile<HS>(ks, head + C, C3, k0, T);
        load_tile<HS>(vs, head + 2 * C, C3, k0, T);
        __syncthreads();
        transpose_tile<HS>(kt, ks);
        __syncthreads();
        if (w0 >= T || k0 > w0 + 15) continue; /* warp-uniform */
        const float l20 = l2[warp * 16 + g], l21 = l2[warp * 16 + g + 8];
        const float dl0 = dl[warp * 16 + g], dl1 = dl[warp * 16 + g + 8];
        auto after = [&](int j) { return k0 + 8 * j > w0 + 15; }; /* keys after every query of the warp */
        float s[8][4], dp[8][4];
        tc_rows_bt<HS>(s, qs, warp * 16, ks, after);
        tc_rows_bt<HS>(dp, dos, warp * 16, vs, after);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + 8 * j + 2 * c + (e & 1), t = e < 2 ? t0 : t1;
                float ds = 0.0f;
                if (key <= t && t < T)
                    ds = exp2f(s[j][e] * sl2 - (e < 2 ? l20 : l21)) * (dp[j][e] - (e < 2 ? dl0 : dl1));
                s[j][e] = ds;
            }
        tc_p_times<HS>(dq, s, kt, [&](int kk) { return k0 + 16 * kk > w0 + 15; });
    }
    QT *base = dqkv + (size_t)b * T * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < HS / 8; j++) {
        const int d = 8 * j + 2 * c;
        if (t0 < T) gq_st(base + (size_t)t0 * C3 + d, dq[j][0] * scale), gq_st(base + (size_t)t0 * C3 + d + 1, dq[j][1] * scale);
        if (t1 < T) gq_st(base + (size_t)t1 * C3 + d, dq[j][2] * scale), gq_st(base + (size_t)t1 * C3 + d + 1, dq[j][3] * scale);
    }
}

/* out[j] += P (16 x 64 as 8 accumulator tiles, packed to bf16 here) times rows [0, 64) of the
 * row-major bf16 tile m (stride HS + 8): tc_p_times's products in its order, m's B fragments by
 * ldmatrix.trans (no transposed copy of m) */
template <int HS, class Skip>
static __device__ __forceinline__ void tc_p_times_rows(float (&out)[HS / 8][4], const float (&p)[8][4], const bf16 *m,
                                                       Skip skip) {
    constexpr int LDH = HS + 8;
    const int lane = threadIdx.x % 32, mi = lane / 8, mr = lane % 8;
    uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        pa[j / 2][(j % 2) * 2] = tc_pack(p[j][0], p[j][1]);
        pa[j / 2][(j % 2) * 2 + 1] = tc_pack(p[j][2], p[j][3]);
    }
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        if (skip(kk)) continue;
#pragma unroll
        for (int j = 0; j < HS / 8; j += 2) {
            uint32_t bm[4];
            tc_ldsm_x4_t(bm, m + (kk * 16 + (mi & 1) * 8 + mr) * LDH + 8 * (j + (mi >> 1)));
            tc_mma(out[j], pa[kk], bm[0], bm[1]);
            tc_mma(out[j + 1], pa[kk], bm[2], bm[3]);
        }
    }
}

/* The backward, pipelined (session 19; the default since session 25, when the H200 ran a GPT-2
 * layer's backward in 549 us against tc_dkdv2 + tc_dq2's 764, SDPA's 227): tc_dkdv2_kernel's and
 * tc_dq2_kernel's arithmetic, bit for bit, with
 * the output gradient read from a bf16 copy (made once, rounded to nearest: the values their
 * tiles round it to), the tiles that change per step copied by cp.async into the other of two
 * buffers while the warps work, and the B fragments that ran along a tile's rows read by
 * ldmatrix.trans instead of from transposed copies. 4 warps, 64 rows a block, as before. Their
 * score steps repeat tc_dkdv2's and tc_dq2's on purpose: factored into shared functions, ptxas
 * gave tc_dkdv2 174 registers instead of 128 (or spills at 128); tc_dkdv2 and tc_dq2 stay as
 * the H200 ran them (GQ_CUDA_TC=mma), the independent form these kernels' bits are compared with
 * (test_attention_tc_emu, test_cuda_ops). */
template <int HS> struct tcb3_dims {
    static constexpr size_t TILE = tc_bytes(TC_ROWS * (HS + 8) * sizeof(bf16)), VEC = tc_bytes(TC_ROWS * sizeof(float));
    static constexpr size_t BUF = 2 * TILE + 2 * VEC; /* dK / dV's per-step buffer */
    static constexpr size_t DKDV = 2 * TILE + 2 * BUF, DQ = 2 * TILE + 2 * VEC + 2 * 2 * TILE;
};

template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS, 3) /* at most 168 registers: 3 blocks an SM */
    tc_dkdv3_kernel(QT *dqkv, const bf16 *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C,
                    int NH, float scale, float sl2, int inner) {
    constexpr int LDH = HS + 8;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int k0 = blockIdx.x * TC_ROWS, w0 = k0 + warp * 16, key0 = w0 + g, key1 = key0 + 8;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *ks = sm.take<bf16>(TC_ROWS * LDH), *vs = sm.take<bf16>(TC_ROWS * LDH);
    /* buffer i (i x BUF bytes after buffer 0): q, dO (row-major tiles), lse (log2) and D of its 64 queries */
    constexpr size_t BUF = tcb3_dims<HS>::BUF;
    bf16 *qb = sm.take<bf16>(TC_ROWS * LDH), *db = sm.take<bf16>(TC_ROWS * LDH);
    float *lb = sm.take<float>(TC_ROWS), *xb = sm.take<float>(TC_ROWS);
    auto at = [&](auto *p, int i) { return (decltype(p))((unsigned char *)p + i * BUF); };
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const bf16 *dhead = dout + (size_t)b * T * C + h * HS;
    const bool async = sizeof(QT) == 2 && tc_vec_ok(head, C3), dasync = tc_vec_ok(dhead, C); /* block-uniform */
    tc3_load<HS, TC_ROWS, QT, TC_THREADS>(ks, head + C, C3, k0, T, async);
    tc3_load<HS, TC_ROWS, QT, TC_THREADS>(vs, head + 2 * C, C3, k0, T, async);
    const int nt = (T - k0 + TC_ROWS - 1) / TC_ROWS; /* query tiles from k0 */
    auto fetch = [&](int i, int q0) {
        tc3_load<HS, TC_ROWS, QT, TC_THREADS>(at(qb, i), head, C3, q0, T, async);
        tc3_load<HS, TC_ROWS, bf16, TC_THREADS>(at(db, i), dhead, C, q0, T, dasync);
        load_stats(at(lb, i), at(xb, i), lse, Dv, (size_t)bh * T, q0, T);
        tc_cp_commit();
    };
    fetch(0, k0);
    float dk[HS / 8][4], dv[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.0f;
    for (int it = 0; it < nt; it++) {
        const int q0 = k0 + it * TC_ROWS, cur = it & 1;
        if (it + 1 < nt) {
            fetch(cur ^ 1, q0 + TC_ROWS);
            tc_cp_wait<1>();
        } else {
            tc_cp_wait<0>();
        }
        __syncthreads();
        if (w0 < T) { /* warp-uniform */
            const bf16 *qs = at(qb, cur), *dos = at(db, cur);
            const float *l2 = at(lb, cur), *dl = at(xb, cur);
            auto before = [&](int j) { return q0 + 8 * j + 7 < w0; };
            float s[8][4], dp[8][4];
            tc_rows_bt<HS, true>(s, ks, warp * 16, qs, before);
            tc_rows_bt<HS, true>(dp, vs, warp * 16, dos, before);
            /* every query of the tile at or after every key of the warp, all before T: no masks
             * (warp-uniform; the same values) */
            const bool whole = inner && q0 >= w0 + 15 && q0 + TC_ROWS <= T;
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = 8 * j + 2 * c + (e & 1), tq = q0 + col, key = e < 2 ? key0 : key1;
                    float p = 0.0f, ds = 0.0f;
                    if (whole || (key < T && tq < T && tq >= key)) {
                        p = exp2f(s[j][e] * sl2 - l2[col]);
                        ds = p * (dp[j][e] - dl[col]);
                    }
                    s[j][e] = p, dp[j][e] = ds;
                }
            auto none = [&](int kk) { return q0 + 16 * kk + 15 < w0; };
            tc_p_times_rows<HS>(dv, s, dos, none);
            tc_p_times_rows<HS>(dk, dp, qs, none);
        }
        __syncthreads(); /* this buffer is free for the fetch after next */
    }
    QT *base = dqkv + (size_t)b * T * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < HS / 8; j++) {
        const int d = 8 * j + 2 * c;
        if (key0 < T) {
            QT *r = base + (size_t)key0 * C3 + d;
            gq_st(r + C, dk[j][0] * scale), gq_st(r + C + 1, dk[j][1] * scale);
            gq_st(r + 2 * C, dv[j][0]), gq_st(r + 2 * C + 1, dv[j][1]);
        }
        if (key1 < T) {
            QT *r = base + (size_t)key1 * C3 + d;
            gq_st(r + C, dk[j][2] * scale), gq_st(r + C + 1, dk[j][3] * scale);
            gq_st(r + 2 * C, dv[j][2]), gq_st(r + 2 * C + 1, dv[j][3]);
        }
    }
}

/* (bounded to 128 registers, 4 blocks an SM as its shared memory allows: unbounded, the
 * unmasked path took it to 148) */
template <int HS, class QT>
static __global__ void __launch_bounds__(TC_THREADS, 4)
    tc_dq3_kernel(QT *dqkv, const bf16 *dout, const QT *qkv, const float *lse, const float *Dv, int T, int C, int NH,
                  float scale, float sl2, int inner) {
    constexpr int LDH = HS + 8;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * TC_ROWS, w0 = q0 + warp * 16, t0 = w0 + g, t1 = t0 + 8;
    GQ_DYN_SMEM(unsigned char, tc_smem);
    tc_carve sm{tc_smem};
    bf16 *qs = sm.take<bf16>(TC_ROWS * LDH), *dos = sm.take<bf16>(TC_ROWS * LDH);
    float *l2 = sm.take<float>(TC_ROWS), *dl = sm.take<float>(TC_ROWS);
    /* buffer i: the key and value tiles (row-major) at kvb + 2 i KT, the values KT further */
    constexpr size_t KT = tcb3_dims<HS>::TILE / sizeof(bf16);
    bf16 *kvb = sm.take<bf16>(4 * KT);
    const QT *head = qkv + (size_t)b * T * C3 + h * HS;
    const bf16 *dhead = dout + (size_t)b * T * C + h * HS;
    const bool async = sizeof(QT) == 2 && tc_vec_ok(head, C3), dasync = tc_vec_ok(dhead, C); /* block-uniform */
    tc3_load<HS, TC_ROWS, QT, TC_THREADS>(qs, head, C3, q0, T, async);
    tc3_load<HS, TC_ROWS, bf16, TC_THREADS>(dos, dhead, C, q0, T, dasync);
    load_stats(l2, dl, lse, Dv, (size_t)bh * T, q0, T);
    auto fetch = [&](int i, int k0) {
        tc3_load<HS, TC_ROWS, QT, TC_THREADS>(kvb + (size_t)i * 2 * KT, head + C, C3, k0, T, async);
        tc3_load<HS, TC_ROWS, QT, TC_THREADS>(kvb + (size_t)i * 2 * KT + KT, head + 2 * C, C3, k0, T, async);
        tc_cp_commit();
    };
    fetch(0, 0);
    float dq[HS / 8][4];
#pragma unroll
    for (int j = 0; j < HS / 8; j++) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;
    const int kend = min(T, q0 + TC_ROWS), nt = (kend + TC_ROWS - 1) / TC_ROWS;
    for (int it = 0; it < nt; it++) {
        const int k0 = it * TC_ROWS, cur = it & 1;
        if (it + 1 < nt) {
            fetch(cur ^ 1, k0 + TC_ROWS);
            tc_cp_wait<1>();
        } else {
            tc_cp_wait<0>();
        }
        __syncthreads();
        if (w0 < T && k0 <= w0 + 15) { /* warp-uniform */
            const bf16 *ks = kvb + (size_t)cur * 2 * KT, *vs = ks + KT;
            const float l20 = l2[warp * 16 + g], l21 = l2[warp * 16 + g + 8];
            const float dl0 = dl[warp * 16 + g], dl1 = dl[warp * 16 + g + 8];
            auto after = [&](int j) { return k0 + 8 * j > w0 + 15; }; /* keys after every query of the warp */
            float s[8][4], dp[8][4];
            tc_rows_bt<HS>(s, qs, warp * 16, ks, after);
            tc_rows_bt<HS>(dp, dos, warp * 16, vs, after);
            /* every key of the tile at or before every query of the warp, all queries before T:
             * no masks (warp-uniform; the same values) */
            const bool whole = inner && k0 + TC_ROWS - 1 <= w0 && w0 + 15 < T;
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = k0 + 8 * j + 2 * c + (e & 1), t = e < 2 ? t0 : t1;
                    float ds = 0.0f;
                    if (whole || (key <= t && t < T))
                        ds = exp2f(s[j][e] * sl2 - (e < 2 ? l20 : l21)) * (dp[j][e] - (e < 2 ? dl0 : dl1));
                    s[j][e] = ds;
                }
            tc_p_times_rows<HS>(dq, s, ks, [&](int kk) { return k0 + 16 * kk > w0 + 15; });
        }
        __syncthreads(); /* this buffer is free for the fetch after next */
    }
    QT *base = dqkv + (size_t)b * T * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < HS / 8; j++) {
        const int d = 8 * j + 2 * c;
        if (t0 < T) gq_st(base + (size_t)t0 * C3 + d, dq[j][0] * scale), gq_st(base + (size_t)t0 * C3 + d + 1, dq[j][1] * scale);
        if (t1 < T) gq_st(base + (size_t)t1 * C3 + d, dq[j][2] * scale), gq_st(base + (size_t)t1 * C3 + d + 1, dq[j][3] * scale);
    }
}

#endif
