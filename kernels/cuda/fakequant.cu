/* fakequant (CUDA): QAT's quantize-dequantize with quant.h's group functions compiled for the
 * device (one definition, DESIGN.md decision 1), bit-identical to the CPU reference: the absmax
 * formats with a warp's lanes per group (statistics by shuffles, then the codes in parallel;
 * groups that are multiples of 32 up to 256, or divide 32), searched scales and other group
 * sizes one thread per group (up to 256 values), one block per row for int8 per-row, and for
 * nf4 with double quantization the same staged order as quant.h (exact absmax per group, the
 * mean summed per block of 256 groups in double and then over blocks, int8 absmax codes).
 * Nothing waits for the device but a call without a status word: the finite check leaves its
 * answer in device memory (`bad`), and the kernels after it read that word and do nothing once
 * it names a value (a refused call's output is undefined; no code comes from a non-finite value). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "sround.h"

#include <limits.h>

enum { FQ_MAX_GROUP = 256 };

struct fq_work {
    unsigned long long bad; /* a call without a status word: its answer (as *status) */
    float offset;           /* nf4 double quant: mean absmax */
};

/* the kernels after the finite check: nothing to do once it refused the call */
static __device__ bool fq_refused(const unsigned long long *bad) { return *bad != ULLONG_MAX; }

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

static __global__ void fq_check_finite_kernel(unsigned long long *bad, const float *w, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!isfinite(w[i])) atomicMin(bad, (unsigned long long)i);
}

template <class O>
static __global__ void fq_group_kernel(O *out, uint8_t *mask, const float *w, size_t groups, int g,
                                       gq_qformat f, int search, const float *dq_scales,
                                       const unsigned long long *bad) {
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= groups || fq_refused(bad)) return;
    const float *x = w + k * g;
    uint8_t codes[FQ_MAX_GROUP], zero = 0;
    float sc;
    if (search) {
        sc = gq_qsearch_group(f, x, NULL, g, codes, &zero);
    } else {
        switch (f) {
        case GQ_QF_Q8_0: sc = gq_q8_group(x, g, codes, 1); break;
        case GQ_QF_INT4:
        case GQ_QF_INT3:
        case GQ_QF_INT2: sc = gq_qsym_group(x, g, gq_qbits(f), codes); break;
        case GQ_QF_INT4A: sc = gq_qasym_group(x, g, codes, &zero); break;
        default: sc = gq_q4code_group(x, g, f == GQ_QF_FP4, codes); break;
        }
    }
    if (dq_scales) sc = dq_scales[k]; /* nf4 double quant: codes from the exact scale, values from the stored one */
    for (int i = 0; i < g; i++) {
        float y = gq_qvalue(f, codes[i], sc, zero);
        gq_st(&out[k * g + i], y);
        mask[k * g + i] = !gq_qclipped(f, search, x[i], y, sc);
    }
}

/* The absmax formats (not searched, not int8) with L lanes per group: L = 32 where the group
 * is a multiple of 32 values, else the group's size where it divides 32 (several groups a warp);
 * P = g / L values a lane, contiguous. Each lane takes its values' statistics in index order, the
 * group's lanes merge theirs by shuffles (the lower lanes' run first, quant.h's first-largest
 * rule: gq_qstats_merge), then every lane codes its values alone (gq_qgroup_params,
 * gq_qgroup_code): quant.h's group functions in parallel, the same bits. One pass over the
 * weights: the finite check is folded in (the lowest bad index, as fq_check_finite_kernel); with
 * double-quantized scales (checked before them) `gate` is the check's word. */
template <class O, int P>
static __global__ void fq_warp_kernel(O *out, uint8_t *mask, const float *w, size_t groups, int L, gq_qformat f,
                                      const float *dq_scales, unsigned long long *bad, const unsigned long long *gate) {
    if (gate && fq_refused(gate)) return;
    const int lane = threadIdx.x % 32, sub = lane % L;
    const size_t k = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32 * (size_t)(32 / L) + (size_t)(lane / L);
    const bool live = k < groups;
    const size_t base = k * (size_t)(L * P) + (size_t)sub * P;
    float v[P];
    gq_qstats s = gq_qstats_zero();
#pragma unroll
    for (int i = 0; i < P; i++) {
        v[i] = live ? w[base + i] : 0.0f;
        if (!isfinite(v[i])) { /* refused; coded as 0 meanwhile, so that no code comes from a
                                * non-finite value (undefined) */
            atomicMin(bad, (unsigned long long)(base + i));
            v[i] = 0.0f;
        }
        gq_qstats_add(&s, v[i]);
    }
    for (int o = 1; o < L; o <<= 1) {
        gq_qstats t;
        t.amax = __shfl_xor_sync(0xffffffffu, s.amax, o);
        t.m = __shfl_xor_sync(0xffffffffu, s.m, o);
        t.lo = __shfl_xor_sync(0xffffffffu, s.lo, o);
        t.hi = __shfl_xor_sync(0xffffffffu, s.hi, o);
        s = (sub & o) ? gq_qstats_merge(t, s) : gq_qstats_merge(s, t);
    }
    if (!live) return;
    const gq_qparams p = gq_qgroup_params(f, s);
    const float sc = dq_scales ? dq_scales[k] : p.sc; /* nf4 double quant: codes from the exact scale */
#pragma unroll
    for (int i = 0; i < P; i++) {
        const float y = gq_qvalue(f, gq_qgroup_code(f, v[i], p), sc, p.zero);
        gq_st(&out[base + i], y);
        mask[base + i] = !gq_qclipped(f, 0, v[i], y, sc);
    }
}

/* lanes per group for fq_warp_kernel, or 0 where it does not take the group size */
static int fq_lanes(int g) { return g % 32 == 0 && g / 32 <= 8 ? 32 : g < 32 && 32 % g == 0 ? g : 0; }

template <class O>
static int fq_warp_launch(O *out, uint8_t *mask, const float *w, size_t groups, int g, gq_qformat f,
                          const float *dq, unsigned long long *bad, const unsigned long long *gate) {
    const int L = fq_lanes(g), P = g / L;
    const size_t warps = (groups + (size_t)(32 / L) - 1) / (size_t)(32 / L);
    const unsigned blocks = (unsigned)((warps + 7) / 8);
    void (*const kernel[8])(O *, uint8_t *, const float *, size_t, int, gq_qformat, const float *,
                            unsigned long long *, const unsigned long long *) = {
        fq_warp_kernel<O, 1>, fq_warp_kernel<O, 2>, fq_warp_kernel<O, 3>, fq_warp_kernel<O, 4>,
        fq_warp_kernel<O, 5>, fq_warp_kernel<O, 6>, fq_warp_kernel<O, 7>, fq_warp_kernel<O, 8>};
    return gq_launch(kernel[P - 1], blocks, 256, 0, out, mask, w, groups, L, f, dq, bad, gate);
}

static int g_fq_warp = -1; /* -1: GQ_CUDA_FQ_WARP=0 (a thread per group) not yet read */

static int fq_warp_on(void) {
    if (g_fq_warp < 0) g_fq_warp = gq_cuda_env_on("GQ_CUDA_FQ_WARP", "0");
    return g_fq_warp;
}

extern "C" int gq_cuda_set_fakequant_warp(int on) {
    const int was = fq_warp_on();
    g_fq_warp = on != 0;
    return was;
}

/* int8 per output row: one block per row */
template <class O>
static __global__ void fq_int8_row_kernel(O *out, uint8_t *mask, const float *w, int cols,
                                          const unsigned long long *bad) {
    static __shared__ float sh[32];
    if (fq_refused(bad)) return;
    const float *x = w + (size_t)blockIdx.x * cols;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) amax = fmaxf(amax, fabsf(x[i]));
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = amax;
    __syncthreads();
    amax = sh[0];
    for (int k = 1; k < (int)(blockDim.x / 32); k++) amax = fmaxf(amax, sh[k]);
    float d = amax / 127.0f;
    if (d == 0.0f) d = 1.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float q = rintf(x[i] / d);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        gq_st(&out[(size_t)blockIdx.x * cols + i], gq_qvalue(GQ_QF_INT8, (uint8_t)(int8_t)q, d, 0));
        mask[(size_t)blockIdx.x * cols + i] = 1;
    }
}

/* nf4 double quant, stage 1: the exact absmax scale of each group (1 for a zero group), or the
 * searched one */
static __global__ void fq_nf4_absmax_kernel(float *scales, const float *w, size_t groups, int g, int search,
                                            const unsigned long long *bad) {
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= groups || fq_refused(bad)) return;
    if (search) {
        uint8_t codes[FQ_MAX_GROUP];
        scales[k] = gq_qsearch_group(GQ_QF_NF4, w + k * g, NULL, g, codes, NULL);
        return;
    }
    float amax = 0.0f;
    for (int i = 0; i < g; i++) amax = fabsf(w[k * g + i]) > amax ? fabsf(w[k * g + i]) : amax;
    scales[k] = amax == 0.0f ? 1.0f : amax;
}

/* stage 2: per second-level block, the double sum of its absmax values */
static __global__ void fq_nf4_block_sum_kernel(double *bsum, const float *scales, size_t groups,
                                               const unsigned long long *bad) {
    size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (b * GQ_DQ_BLOCK >= groups || fq_refused(bad)) return;
    double part = 0;
    for (size_t k = b * GQ_DQ_BLOCK; k < groups && k < (b + 1) * GQ_DQ_BLOCK; k++) part += scales[k];
    bsum[b] = part;
}

/* stage 3: the mean over blocks, in block order (quant.h's gq_nf4_absmax_mean) */
static __global__ void fq_nf4_mean_kernel(struct fq_work *wk, const double *bsum, size_t groups,
                                          const unsigned long long *bad) {
    if (fq_refused(bad)) return;
    double mean = 0;
    for (size_t b = 0; b * GQ_DQ_BLOCK < groups; b++) mean += bsum[b];
    wk->offset = (float)(mean / (double)groups);
}

/* stage 4: per block, int8 codes of (absmax - offset) and the stored scale, in place */
static __global__ void fq_nf4_dq_kernel(float *scales, const struct fq_work *wk, size_t groups,
                                        const unsigned long long *bad) {
    size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t lo = b * GQ_DQ_BLOCK;
    if (lo >= groups || fq_refused(bad)) return;
    size_t hi = lo + GQ_DQ_BLOCK < groups ? lo + GQ_DQ_BLOCK : groups;
    const float off = wk->offset;
    float amax = 0.0f;
    for (size_t k = lo; k < hi; k++) {
        float d = fabsf(scales[k] - off);
        amax = d > amax ? d : amax;
    }
    float s2 = amax / 127.0f;
    if (s2 == 0.0f) s2 = 1.0f;
    for (size_t k = lo; k < hi; k++) {
        float c = rintf((scales[k] - off) / s2);
        int8_t q = (int8_t)(c > 127.0f ? 127.0f : c < -127.0f ? -127.0f : c);
        scales[k] = (float)q * s2 + off;
    }
}

extern "C" size_t gq_cuda_fakequant_workspace(int rows, int cols, const gq_qspec *spec) {
    size_t groups = gq_qn_groups(spec, rows, cols);
    return round16(sizeof(struct fq_work)) + round16(groups * sizeof(float)) +
           (groups / GQ_DQ_BLOCK + 1) * sizeof(double);
}

/* Every launch of one call, the answer of its finite check in *bad (set here) */
template <class O>
static int fakequant_launch(O *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                            void *work, unsigned long long *bad) {
    const gq_qformat f = spec->format;
    const int g = gq_qgroup(spec, cols), search = spec->search && gq_qsearchable(f);
    const size_t n = (size_t)rows * cols, groups = gq_qn_groups(spec, rows, cols);
    struct fq_work *wk = (struct fq_work *)work;
    float *scales = (float *)((char *)work + round16(sizeof *wk));
    double *bsum = (double *)((char *)scales + round16(groups * sizeof(float)));

    GQ_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof *bad));
    const int warp_form = fq_warp_on() && f != GQ_QF_INT8 && !search && fq_lanes(g);
    const int dq = f == GQ_QF_NF4 && spec->double_quant;
    if (warp_form && !dq) /* one pass, the finite check in it */
        return fq_warp_launch(out, mask, w, groups, g, f, (const float *)NULL, bad, (const unsigned long long *)NULL);
    GQ_TRY(gq_launch(fq_check_finite_kernel, gq_cuda_grid(n, 256), 256, 0, bad, w, n));
    if (f == GQ_QF_INT8) return gq_launch(fq_int8_row_kernel<O>, rows, 256, 0, out, mask, w, cols, bad);
    const float *dqs = NULL;
    if (dq) {
        size_t blocks = (groups + GQ_DQ_BLOCK - 1) / GQ_DQ_BLOCK;
        GQ_TRY(gq_launch(fq_nf4_absmax_kernel, gq_cuda_blocks(groups, 128), 128, 0, scales, w, groups, g, search, bad));
        GQ_TRY(gq_launch(fq_nf4_block_sum_kernel, gq_cuda_blocks(blocks, 128), 128, 0, bsum, scales, groups, bad));
        GQ_TRY(gq_launch(fq_nf4_mean_kernel, 1, 1, 0, wk, bsum, groups, bad));
        GQ_TRY(gq_launch(fq_nf4_dq_kernel, gq_cuda_blocks(blocks, 128), 128, 0, scales, wk, groups, bad));
        dqs = scales;
    }
    if (warp_form) return fq_warp_launch(out, mask, w, groups, g, f, dqs, bad, bad);
    return gq_launch(fq_group_kernel<O>, gq_cuda_blocks(groups, 128), 128, 0, out, mask, w, groups, g, f, search, dqs,
                     bad);
}

template <class O>
static int fakequant_forward(O *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                             void *work, unsigned long long *status) {
    const char *why = gq_qspec_problem(spec, rows, cols);
    if (why) return gq_errf(GQ_ESHAPE, "fake-quant of a [%d, %d] tensor: %s", rows, cols, why);
    const int g = gq_qgroup(spec, cols);
    if (spec->format != GQ_QF_INT8 && g > FQ_MAX_GROUP)
        return gq_errf(GQ_EUNSUPPORTED, "CUDA fake-quant: groups of %d values (at most %d)", g, FQ_MAX_GROUP);
    unsigned long long *bad = status ? status : &((struct fq_work *)work)->bad;
    GQ_TRY(fakequant_launch(out, mask, w, rows, cols, spec, work, bad));
    if (status) return GQ_OK; /* the caller reads the answer later */
    unsigned long long at;
    GQ_CUDA_CHECK(cudaMemcpy(&at, bad, sizeof at, cudaMemcpyDeviceToHost));
    return at != ULLONG_MAX ? gq_errf(GQ_ENAN, "value %llu is not finite", at) : GQ_OK;
}

extern "C" int gq_cuda_fakequant_forward(void *out, uint8_t *mask, const float *w, int rows, int cols,
                                         const gq_qspec *spec, void *work, int out_bf16, uint64_t *status) {
    static_assert(sizeof(uint64_t) == sizeof(unsigned long long), "status words are atomicMin's");
    unsigned long long *st = (unsigned long long *)status;
    return out_bf16 ? fakequant_forward((__nv_bfloat16 *)out, mask, w, rows, cols, spec, work, st)
                    : fakequant_forward((float *)out, mask, w, rows, cols, spec, work, st);
}

/* ---- learned step sizes (quant.h's gq_lsq_*): a thread a value forward (bit-exact with the CPU),
 * a warp a group backward (its scale's gradient summed across the lanes: another order than the
 * CPU's, so equal up to rounding) ---- */
template <class O>
static __global__ void lsq_forward_kernel(O *out, const float *w, const float *scales, size_t n, int g, gq_qformat f,
                                          unsigned long long *bad) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float x = w[i];
        if (!isfinite(x)) { /* refused (no code from a non-finite value) */
            atomicMin(bad, (unsigned long long)i);
            gq_st(&out[i], 0.0f);
            continue;
        }
        const float ss = gq_lsq_stored(f, scales[i / (size_t)g]);
        gq_st(&out[i], gq_qvalue(f, gq_lsq_code(f, x, ss), ss, 0));
    }
}

static __global__ void lsq_backward_kernel(float *grad, float *dscales, const float *w, const float *scales,
                                           size_t groups, int g, gq_qformat f, float gs) {
    const size_t k = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (k >= groups) return; /* (a whole warp: its lanes share k) */
    const float ss = gq_lsq_stored(f, scales[k]);
    float sum = 0.0f;
    for (int i = lane; i < g; i += 32) {
        const size_t at = k * (size_t)g + (size_t)i;
        float d;
        grad[at] = gq_lsq_backward_value(f, w[at], ss, grad[at], &d);
        sum += d;
    }
    for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) dscales[k] += gs * sum;
}

static int lsq_check(const gq_qspec *spec, int rows, int cols) {
    const char *why = gq_lsq_problem(spec, rows, cols);
    return why ? gq_errf(GQ_ESHAPE, "learned-scale fake-quant of a [%d, %d] tensor: %s", rows, cols, why) : GQ_OK;
}

extern "C" int gq_cuda_fakequant_lsq_forward(void *out, const float *w, const float *scales, int rows, int cols,
                                             const gq_qspec *spec, int out_bf16, uint64_t *status) {
    GQ_TRY(lsq_check(spec, rows, cols));
    static unsigned long long *own = NULL; /* the answer's word for a call without a status word */
    if (!status && !own) GQ_CUDA_CHECK(cudaMalloc((void **)&own, sizeof *own));
    unsigned long long *bad = status ? (unsigned long long *)status : own;
    const size_t n = (size_t)rows * cols;
    const int g = gq_qgroup(spec, cols);
    GQ_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof *bad));
    if (out_bf16)
        GQ_TRY(gq_launch(lsq_forward_kernel<__nv_bfloat16>, gq_cuda_grid(n, 256), 256, 0, (__nv_bfloat16 *)out, w,
                         scales, n, g, spec->format, bad));
    else
        GQ_TRY(gq_launch(lsq_forward_kernel<float>, gq_cuda_grid(n, 256), 256, 0, (float *)out, w, scales, n, g,
                         spec->format, bad));
    if (status) return GQ_OK;
    unsigned long long at;
    GQ_CUDA_CHECK(cudaMemcpy(&at, bad, sizeof at, cudaMemcpyDeviceToHost));
    return at != ULLONG_MAX ? gq_errf(GQ_ENAN, "value %llu is not finite", at) : GQ_OK;
}

extern "C" int gq_cuda_fakequant_lsq_backward(float *grad, float *dscales, const float *w, const float *scales,
                                              int rows, int cols, const gq_qspec *spec) {
    GQ_TRY(lsq_check(spec, rows, cols));
    const int g = gq_qgroup(spec, cols);
    const size_t groups = (size_t)rows * cols / (size_t)g;
    return gq_launch(lsq_backward_kernel, gq_cuda_blocks(groups, 8), 256, 0, grad, dscales, w, scales, groups, g,
                     spec->format, gq_lsq_gradscale(spec->format, g));
}

/* (a bf16 output holds the same value: gq_bf16_sr's result is a bf16 value, which gq_st's
 * round to nearest keeps as it is) */
template <class O>
static __global__ void round_bf16_sr_kernel(O *out, const float *in, size_t n, uint64_t seed, uint64_t base) {
    /* a thread a Philox block: the four elements whose indices (from base) it covers */
    const uint64_t q0 = base / 4, nq = (base + n - 1) / 4 - q0 + 1;
    for (uint64_t k = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; k < nq; k += (uint64_t)gridDim.x * blockDim.x) {
        const gq_u32x4 r = gq_philox_block(seed, q0 + k);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint64_t g = 4 * (q0 + k) + j;
            if (g >= base && g - base < n) gq_st(&out[g - base], gq_bf16_sr(in[g - base], r.v[j]));
        }
    }
}

extern "C" int gq_cuda_round_bf16_sr(void *out, const float *in, size_t n, uint64_t seed, uint64_t base,
                                     int out_bf16) {
    if (!n) return GQ_OK;
    const unsigned grid = gq_cuda_grid((base + n - 1) / 4 - base / 4 + 1, 256);
    if (out_bf16)
        GQ_TRY(gq_launch(round_bf16_sr_kernel<__nv_bfloat16>, grid, 256, 0, (__nv_bfloat16 *)out, in, n, seed, base));
    else
        GQ_TRY(gq_launch(round_bf16_sr_kernel<float>, grid, 256, 0, (float *)out, in, n, seed, base));
    return GQ_OK;
}

static __global__ void fq_backward_kernel(float *grad, const uint8_t *mask, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!mask[i]) grad[i] = 0.0f;
}

extern "C" int gq_cuda_fakequant_backward(float *grad, const uint8_t *mask, size_t n) {
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(fq_backward_kernel, gq_cuda_grid(n, 256), 256, 0, grad, mask, n));
    return GQ_OK;
}

/* W8A8 activation fake-quant: one warp per block of 32 values, a value per lane (gq_act8_warp),
 * so the values are the CPU's bit for bit (fp32; bf16: the widened values, the results rounded to
 * nearest as the CPU's rounded). */
template <class X>
static __global__ void act_fq_kernel(X *x, size_t blocks) {
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    const int lane = threadIdx.x % 32;
    for (size_t b = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32; b < blocks; b += warps) {
        X *p = x + b * GQ_ACT_BLOCK + lane;
        gq_st(p, gq_act8_warp(gq_ld(p)));
    }
}

extern "C" int gq_cuda_act_fakequant(float *x, size_t n, int bf16) {
    if (n % GQ_ACT_BLOCK)
        return gq_errf(GQ_ESHAPE, "activation fake-quant of %zu values: not a multiple of %d", n, GQ_ACT_BLOCK);
    const size_t blocks = n / GQ_ACT_BLOCK;
    if (!blocks) return GQ_OK;
    if (bf16)
        GQ_TRY(gq_launch(act_fq_kernel<__nv_bfloat16>, gq_cuda_grid(blocks, 8), 256, 0, (__nv_bfloat16 *)x, blocks));
    else
        GQ_TRY(gq_launch(act_fq_kernel<float>, gq_cuda_grid(blocks, 8), 256, 0, x, blocks));
    return GQ_OK;
}
