/* cuda_emu: enough of CUDA's device model to run kernels written for nvcc on the CPU, so that
 * their logic (indexing, masking, tile loops, barriers, shared-memory layout) is tested on
 * machines without a GPU. C++17, host compiler only; for the kernels in kernels/cuda/ (.cuh files).
 *
 *   - Each CUDA thread of a block is a fiber on the calling thread; the blocks of a
 *     grid run one after another (1-D blocks of up to 1024 threads). A fiber runs until it
 *     waits at __syncthreads or __syncwarp, then the next one runs; when no fiber can go on
 *     (threads waiting at different barriers: a barrier in divergent code) the launch stops and
 *     says so; a fiber that waits hands over to the next runnable one directly. __shfl_*_sync
 *     (values of up to 8 bytes) go through a per-warp exchange behind one warp barrier (two
 *     buffers, used in turn); atomicAdd is a plain add (fibers switch only at barriers).
 *   - Dynamic shared memory (a kernel declares it with GQ_DYN_SMEM) is one global array; every
 *     launch fills it with 0xff bytes (NaN as fp32 and bf16, so a read of an unwritten element
 *     shows) and checks 4 KiB of guard bytes past the launch's size afterwards. Block-scope
 *     shared arrays must be declared `static __shared__` (the same to nvcc): one array then
 *     serves every thread of the block, as on the GPU (blocks run one after another).
 *   - float4 / uint4 (16-byte aligned), for kernels that load 16 bytes at a time.
 *   - nvcuda::wmma's 16x16x16 fragments (bf16 / fp32) hold whole tiles in each lane: loads and
 *     stores are collective as the API documents them (every lane arrives, then the warp loads
 *     or stores; one lane writes), products are computed in each lane in fp32. The API's rules
 *     are checked on every call: a 32-byte-aligned pointer and ldm a multiple of 16 bytes.
 *   - mma.sync m16n8k16 with bf16 inputs and fp32 accumulation (gq_emu::mma_m16n8k16_bf16, for
 *     kernels that write it as inline PTX): each lane's registers are laid out as the PTX ISA's
 *     figures for that shape give them; the warp's fragments meet in a per-warp exchange.
 *   - __nv_bfloat16 with round-to-nearest-even conversion.
 * Not modelled: memory ordering between lanes without a barrier (fibers switch only at
 * barriers: a missing one shows only as a wrong result in one of the two thread orders,
 * GQ_EMU_ORDER=reverse, which the tests run both), warp divergence, bank conflicts, resource
 * limits, timing. A violation found is counted in gq_emu::violations and the first one printed. */
#ifndef GQ_CUDA_EMU_H
#define GQ_CUDA_EMU_H
#define GQ_CUDA_EMU 1 /* for kernels that pick their emulated form of a PTX instruction */

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <math.h>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <vector>

/* AddressSanitizer (GCC's __SANITIZE_ADDRESS__, clang's feature test): a fiber's stack is reused
 * by later launches, so a frame that never returns must leave no poisoned redzones behind. The
 * frames a finished fiber leaves (its entry, the switch it left by) are not instrumented; a fiber
 * a launch abandoned mid-kernel (a violation) has its whole stack cleared before its next start. */
#if defined(__SANITIZE_ADDRESS__)
#define GQ_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GQ_EMU_ASAN 1
#endif
#endif
#ifdef GQ_EMU_ASAN
#include <sanitizer/asan_interface.h>
#define GQ_EMU_NO_ASAN __attribute__((no_sanitize_address))
#else
#define GQ_EMU_NO_ASAN
#endif

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

namespace gq_emu {
inline dim3 grid, block, block_index, thread_index;
inline double exchange[2][32][32]; /* a lane's shuffled value (up to 8 bytes), two alternating buffers */
inline int violations;
/* every kernel's dynamic shared memory (GQ_DYN_SMEM): the H100's 227 KiB and a guard */
enum : size_t { DYN_SMEM_MAX = 227 * 1024, DYN_SMEM_GUARD = 4096 };
alignas(128) inline unsigned char dyn_smem[DYN_SMEM_MAX + DYN_SMEM_GUARD];

/* GQ_EMU_ORDER=reverse: a block's threads run from the last to the first between barriers, and
 * the grid's blocks from the last to the first (a read that a missing barrier leaves racing
 * with another thread's write then sees the other side: the tests run both ways) */
inline int reverse = -1;

inline void violation(const char *what) {
    if (!violations++) fprintf(stderr, "cuda_emu: %s\n", what);
}

enum { RUNNABLE, WAITING, DONE };
/* Context switches: on x86-64 a few instructions of our own (callee-saved registers and the
 * stack pointer: glibc's swapcontext makes a system call a switch, which was most of the
 * emulator's time, 6-12x slower); elsewhere ucontext. (The ASan build runs the same switch and
 * reports nothing on the emulated tests.) */
#if defined(__x86_64__)
#define GQ_EMU_ASM_SWITCH 1
extern "C" void gq_emu_switch(void **save_sp, void *load_sp);
asm(".text\n.weak gq_emu_switch\n.type gq_emu_switch,@function\ngq_emu_switch:\n"
    "pushq %rbp\npushq %rbx\npushq %r12\npushq %r13\npushq %r14\npushq %r15\n"
    "movq %rsp, (%rdi)\nmovq %rsi, %rsp\n"
    "popq %r15\npopq %r14\npopq %r13\npopq %r12\npopq %rbx\npopq %rbp\nret\n"
    ".size gq_emu_switch, .-gq_emu_switch\n");
#endif
struct fiber {
#ifdef GQ_EMU_ASM_SWITCH
    void *sp;
#else
    ucontext_t ctx;
#endif
    int state = DONE, waits_on;
    unsigned shuffles; /* the lane's shuffles so far: the parity picks the exchange buffer */
    std::vector<char> stack;
};
inline std::vector<fiber> fibers; /* grown, never shrunk: a launch runs the first nthreads */
inline unsigned nthreads;
#ifdef GQ_EMU_ASM_SWITCH
inline void *scheduler_sp;
#else
inline ucontext_t scheduler;
#endif
inline unsigned current;

/* From the running fiber (waiting at a barrier, or done) to the next runnable one in the
 * scheduler's order (the block's threads in turn, cyclically: the order the scheduler's own round
 * would take, without passing through it), or back to the scheduler when none can run (the block
 * is done, or deadlocked). */
GQ_EMU_NO_ASAN inline void to_scheduler() {
    const unsigned n = nthreads, from = current;
#ifdef GQ_EMU_ASM_SWITCH
    for (unsigned k = 1; k < n; k++) {
        const unsigned t = reverse ? (from + n - k) % n : (from + k) % n;
        if (fibers[t].state == RUNNABLE) {
            current = t, thread_index = dim3(t, 0, 0);
            gq_emu_switch(&fibers[from].sp, fibers[t].sp);
            return;
        }
    }
    gq_emu_switch(&fibers[from].sp, scheduler_sp);
#else
    swapcontext(&fibers[from].ctx, &scheduler);
#endif
}
inline unsigned arrived[33], expected[33]; /* barriers: 0..31 the warps', 32 the block's */

inline void barrier(unsigned id) {
    if (++arrived[id] == expected[id]) { /* the last to arrive releases the others and goes on */
        arrived[id] = 0;
        const size_t lo = id < 32 ? 32 * id : 0, hi = id < 32 ? std::min<size_t>(nthreads, lo + 32) : nthreads;
        for (size_t i = lo; i < hi; i++)
            if (fibers[i].state == WAITING && (unsigned)fibers[i].waits_on == id) fibers[i].state = RUNNABLE;
        return;
    }
    fiber &me = fibers[current];
    me.state = WAITING, me.waits_on = (int)id;
    to_scheduler();
}
} // namespace gq_emu

#define threadIdx gq_emu::thread_index
#define blockIdx gq_emu::block_index
#define blockDim gq_emu::block
#define gridDim gq_emu::grid
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
/* a kernel's dynamic shared array (extern __shared__ T name[] on the GPU, cuda_util.cuh) */
#define GQ_DYN_SMEM(T, name) T *name = (T *)gq_emu::dyn_smem

/* CUDA's min / max: std's for two of a type, and the int overloads for mixed integer kinds
 * (an enum constant and an int) */
using std::max;
using std::min;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline void __syncthreads() { gq_emu::barrier(32); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) gq_emu::violation("__syncwarp with a partial mask is not modelled");
    gq_emu::barrier(threadIdx.x / 32);
}
namespace gq_emu {
/* lane src(l)'s v for every lane l of the warp (src out of range: the lane's own v) */
template <class T, class Src> inline T shuffle(unsigned mask, T v, Src src) {
    static_assert(sizeof(T) <= 8, "cuda_emu: shuffles of up to 8 bytes");
    if (mask != 0xffffffffu) violation("shuffles with a partial mask are not modelled");
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    /* one barrier: the next shuffle writes the other buffer, and the one after it (this
     * buffer again) comes after the next shuffle's barrier, which every lane reaches only
     * after its read here */
    const unsigned b = fibers[current].shuffles++ & 1;
    memcpy(&exchange[b][w][l], &v, sizeof v);
    __syncwarp();
    const int from = src((int)l);
    T r = v;
    if (from >= 0 && from < 32) memcpy(&r, &exchange[b][w][from], sizeof r);
    return r;
}
} // namespace gq_emu
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    return gq_emu::shuffle(mask, v, [&](int l) { return (l ^ lane_mask) % 32; });
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta) {
    return gq_emu::shuffle(mask, v, [&](int l) { return l - (int)delta; });
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    return gq_emu::shuffle(mask, v, [&](int l) { return l + (int)delta; });
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src_lane) {
    return gq_emu::shuffle(mask, v, [&](int) { return src_lane % 32; });
}
/* blocks run one after another: their writes are visible to the next as they stand */
inline void __threadfence() {}
/* fibers switch only at barriers, so a read-modify-write is atomic as it stands */
template <class T> inline T atomicAdd(T *p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
template <class T> inline T atomicMin(T *p, T v) {
    const T old = *p;
    *p = v < old ? v : old;
    return old;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}

struct __nv_bfloat16 {
    uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if (std::isnan(f)) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }

namespace gq_emu {
inline uint32_t mma_a[32][32][4], mma_b[32][32][2];
/* d (16 x 8, fp32) += a (16 x 16, bf16) b (16 x 8, bf16), warp-collective; lane = 4 g + c holds
 * a[0] = A(g, 2c..2c+1), a[1] = A(g+8, 2c..2c+1), a[2] = A(g, 2c+8..2c+9), a[3] = A(g+8, 2c+8..),
 * b0 = B(2c..2c+1, g), b1 = B(2c+8..2c+9, g), d[0..1] = D(g, 2c..2c+1), d[2..3] = D(g+8, 2c..);
 * the lower index of a pair in the low 16 bits */
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    memcpy(mma_a[w][l], a, sizeof a);
    mma_b[w][l][0] = b0, mma_b[w][l][1] = b1;
    __syncwarp();
    auto half = [](uint32_t v, int k) { return __bfloat162float(__nv_bfloat16{(uint16_t)(k ? v >> 16 : v & 0xffff)}); };
    auto A = [&](int r, int k) { /* element (r, k) from the lane and register that hold it */
        const int lane = 4 * (r % 8) + (k % 8) / 2, reg = (r >= 8) + 2 * (k >= 8);
        return half(mma_a[w][lane][reg], k % 2);
    };
    auto B = [&](int k, int n) { return half(mma_b[w][4 * n + (k % 8) / 2][k >= 8], k % 2); };
    const int g = l / 4, c = l % 4;
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e >= 2), n = 2 * c + (e & 1);
        float s = d[e];
        for (int k = 0; k < 16; k++) s += A(r, k) * B(k, n);
        d[e] = s;
    }
    __syncwarp();
}
} // namespace gq_emu

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

/* element (i, j) of the fragment's matrix at v[16 i + j]: (m, k) for matrix_a, (k, n) for
 * matrix_b, (m, n) for the accumulator */
template <class Use, int M, int N, int K, class E, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cuda_emu: 16x16x16 fragments only");
    float v[256];
};

inline float emu_value(float x) { return x; }
inline float emu_value(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class E> inline void emu_rules(const E *p, unsigned ldm) {
    if ((uintptr_t)p % 32) gq_emu::violation("wmma: pointer not 32-byte aligned");
    if (ldm * sizeof(E) % 16) gq_emu::violation("wmma: ldm not a multiple of 16 bytes");
}

template <class Use, class E, class Layout> inline void fill_fragment(fragment<Use, 16, 16, 16, E, Layout> &f, float x) {
    for (float &e : f.v) e = x;
}

/* (i, j) of a 16 x 16 matrix at p: row-major p[i ldm + j], else p[j ldm + i] */
template <class E> inline void emu_load(float *v, const E *p, unsigned ldm, bool row_major_) {
    emu_rules(p, ldm);
    __syncwarp();
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) v[16 * i + j] = emu_value(row_major_ ? p[i * ldm + j] : p[j * ldm + i]);
    __syncwarp();
}

template <class Use, class E, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, E, Layout> &f, const E *p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "cuda_emu: an accumulator load needs a layout");
    /* matrix_a row-major: (m, k) at p[m ldm + k]; matrix_b row-major: (k, n) at p[k ldm + n] */
    emu_load(f.v, p, ldm, std::is_same<Layout, row_major>::value);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    emu_load(f.v, p, ldm, l == mem_row_major);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    emu_rules(p, ldm);
    __syncwarp();
    if (threadIdx.x % 32 == 0)
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) (l == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.v[16 * i + j];
    __syncwarp();
}

template <class E, class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, E, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, E, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    float out[256];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = c.v[16 * m + n];
            for (int k = 0; k < 16; k++) s += a.v[16 * m + k] * b.v[16 * k + n];
            out[16 * m + n] = s;
        }
    memcpy(d.v, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

namespace gq_emu {
inline void (*fiber_body)(void *);
inline void *fiber_arg;
GQ_EMU_NO_ASAN inline void fiber_entry() {
    fiber_body(fiber_arg);
    fibers[current].state = DONE;
#ifdef GQ_EMU_ASM_SWITCH
    to_scheduler(); /* never resumed */
    __builtin_unreachable();
#endif /* (ucontext: uc_link returns to the scheduler) */
}

/* Run body() as every thread of every block of grid g x block b, with `bytes` of dynamic shared
 * memory (dyn_smem). */
template <class F> inline void launch(dim3 g, dim3 b, size_t bytes, F body) {
    unsigned char *smem = dyn_smem;
    const size_t guard = DYN_SMEM_GUARD, stack = 256 * 1024;
    if (b.x < 1 || b.x > 1024 || b.y != 1 || b.z != 1) {
        violation("launch: the emulator takes 1-D blocks of 1 to 1024 threads");
        return;
    }
    if (bytes > DYN_SMEM_MAX) {
        violation("launch: more dynamic shared memory than an H100 block has (227 KiB)");
        return;
    }
    grid = g, block = b;
    fiber_body = [](void *p) { (*(F *)p)(); };
    fiber_arg = &body;
    /* (a smaller launch keeps the fibers past its size, and their stacks, for the next) */
    if (fibers.size() < b.x) fibers.resize(b.x);
    nthreads = b.x;
    for (unsigned w = 0; w < 32; w++) expected[w] = w * 32 < b.x ? std::min(32u, b.x - w * 32) : 32; /* a last, partial warp */
    expected[32] = b.x;
    if (reverse < 0) {
        const char *e = getenv("GQ_EMU_ORDER");
        reverse = e && !strcmp(e, "reverse");
    }
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                /* (reverse: the blocks too, last first: a kernel whose last block to finish does
                 * extra work must not depend on which one that is) */
                block_index = reverse ? dim3(g.x - 1 - x, g.y - 1 - y, g.z - 1 - z) : dim3(x, y, z);
                memset(smem, 0xff, bytes + guard);
                memset(arrived, 0, sizeof arrived);
                for (unsigned t = 0; t < b.x; t++) {
                    fiber &f = fibers[t];
                    if (f.stack.size() != stack) f.stack.resize(stack);
#ifdef GQ_EMU_ASAN
                    if (f.state != DONE) ASAN_UNPOISON_MEMORY_REGION(f.stack.data(), stack);
#endif
#ifdef GQ_EMU_ASM_SWITCH
                    /* a frame gq_emu_switch "returns" from into fiber_entry: six registers, the
                     * entry, a dummy return address (so that the entry sees a call's alignment) */
                    void **sp = (void **)((uintptr_t)(f.stack.data() + stack) & ~(uintptr_t)15);
                    *--sp = NULL;
                    *--sp = (void *)fiber_entry;
                    for (int r = 0; r < 6; r++) *--sp = NULL;
                    f.sp = sp;
#else
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = stack;
                    f.ctx.uc_link = &scheduler;
                    makecontext(&f.ctx, fiber_entry, 0);
#endif
                    f.state = RUNNABLE, f.shuffles = 0;
                }
                for (;;) {
                    unsigned done = 0, ran = 0;
                    for (unsigned i = 0; i < b.x; i++) {
                        const unsigned t = reverse ? b.x - 1 - i : i;
                        if (fibers[t].state == RUNNABLE) {
                            current = t, thread_index = dim3(t, 0, 0), ran++;
#ifdef GQ_EMU_ASM_SWITCH
                            gq_emu_switch(&scheduler_sp, fibers[t].sp);
#else
                            swapcontext(&scheduler, &fibers[t].ctx);
#endif
                        }
                        done += fibers[t].state == DONE;
                    }
                    if (done == b.x) break;
                    if (!ran) {
                        violation("deadlock: threads wait at different barriers (a barrier in divergent code?)");
                        return;
                    }
                }
                for (size_t i = bytes; i < bytes + guard; i++)
                    if (smem[i] != 0xff) {
                        violation("shared memory written past the launch's size");
                        break;
                    }
            }
}
} // namespace gq_emu

#endif
