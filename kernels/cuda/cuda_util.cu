/* cuda_util: device discovery, memory helpers, CUDA graphs, scratch memory and the
 * deterministic column sum behind cuda_ops.h (cuBLAS is in cublas.cu: the inference runner
 * links without it). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "backend.h"

#include <stdio.h>

extern "C" int gq_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

extern "C" int gq_cuda_alloc(void **d_ptr, size_t bytes) {
    GQ_CUDA_CHECK(cudaMalloc(d_ptr, bytes ? bytes : 1));
    GQ_CUDA_CHECK(cudaMemset(*d_ptr, 0, bytes));
    return GQ_OK;
}

extern "C" int gq_cuda_free(void *d_ptr) {
    GQ_CUDA_CHECK(cudaFree(d_ptr));
    return GQ_OK;
}

extern "C" int gq_cuda_upload(void *d_dst, const void *src, size_t bytes) {
    if (bytes) GQ_CUDA_CHECK(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
    return GQ_OK;
}

extern "C" int gq_cuda_download(void *dst, const void *d_src, size_t bytes) {
    if (bytes) GQ_CUDA_CHECK(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
    return GQ_OK;
}

extern "C" int gq_cuda_zero(void *d_ptr, size_t bytes) {
    if (bytes) GQ_CUDA_CHECK(cudaMemsetAsync(d_ptr, 0, bytes));
    return GQ_OK;
}

extern "C" int gq_cuda_copy(void *d_dst, const void *d_src, size_t bytes) {
    if (bytes) GQ_CUDA_CHECK(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice));
    return GQ_OK;
}

extern "C" int gq_cuda_device_name(char *buf, size_t size) {
    cudaDeviceProp p;
    GQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    snprintf(buf, size, "%s, %d SMs, %.1f GiB", p.name, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0);
    return GQ_OK;
}

extern "C" int gq_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    GQ_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    return GQ_OK;
}

extern "C" int gq_cuda_sync(void) {
    GQ_CUDA_CHECK(cudaDeviceSynchronize());
    return GQ_OK;
}

/* ---- CUDA graphs: every op launches on the per-thread default stream (the CUDA sources are
 * built with --default-stream per-thread), which can be captured ---- */

extern "C" int gq_cuda_graph_begin(void) {
    GQ_CUDA_CHECK(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeRelaxed));
    return GQ_OK;
}

extern "C" int gq_cuda_graph_end(void **exec) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t e = NULL;
    *exec = NULL;
    cudaError_t err = cudaStreamEndCapture(cudaStreamPerThread, &g);
    if (err == cudaSuccess) err = cudaGraphInstantiate(&e, g, 0);
    if (g) cudaGraphDestroy(g);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* a failed capture leaves nothing behind: the caller runs the ops directly */
        return gq_errf(GQ_EDEVICE, "CUDA graph capture: %s", cudaGetErrorString(err));
    }
    *exec = e;
    return GQ_OK;
}

extern "C" int gq_cuda_graph_launch(void *exec) {
    GQ_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)exec, cudaStreamPerThread));
    return GQ_OK;
}

extern "C" void gq_cuda_graph_free(void *exec) {
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

/* Device-to-device copy bandwidth (read + write bytes per second), the best of a few passes over
 * 1 GiB: the ceiling a memory-bound kernel is compared with. */
extern "C" int gq_cuda_copy_bandwidth(double *bytes_per_s) {
    const size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0, e1;
    *bytes_per_s = 0;
    GQ_CUDA_CHECK(cudaMalloc(&a, n));
    if (cudaMalloc(&b, n) != cudaSuccess) {
        cudaFree(a);
        return gq_errf(GQ_EDEVICE, "CUDA: no room for the 2 GiB of the bandwidth measurement");
    }
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    cudaMemsetAsync(a, 1, n, cudaStreamPerThread);
    for (int pass = 0; pass < 5; pass++) {
        cudaEventRecord(e0, cudaStreamPerThread);
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, cudaStreamPerThread);
        cudaEventRecord(e1, cudaStreamPerThread);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms > 0 && 2.0 * n / (ms * 1e-3) > *bytes_per_s) *bytes_per_s = 2.0 * n / (ms * 1e-3);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    cudaFree(a), cudaFree(b);
    GQ_CUDA_CHECK(cudaGetLastError());
    return GQ_OK;
}

int gq_cuda_scratch(int slot, size_t bytes, void **p) {
    static void *buf[GQ_SCRATCH_N];
    static size_t cap[GQ_SCRATCH_N];
    if (bytes > cap[slot]) {
        if (buf[slot]) GQ_CUDA_CHECK(cudaFree(buf[slot]));
        buf[slot] = NULL, cap[slot] = 0;
        size_t want = bytes + bytes / 4; /* some headroom against regrowth */
        GQ_CUDA_CHECK(cudaMalloc(&buf[slot], want));
        cap[slot] = want;
    }
    *p = buf[slot];
    return GQ_OK;
}

/* Column sums in two fixed-order passes: block (chunk, column tile) sums its rows into a
 * partial, then one thread per column adds the partials in chunk order. */
enum { COLSUM_CHUNKS = 64 };

template <class T> static __global__ void colsum_partial_kernel(float *partial, const T *in, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (c >= C) return;
    int rows = (N + COLSUM_CHUNKS - 1) / COLSUM_CHUNKS, lo = chunk * rows, hi = min(N, lo + rows);
    float s = 0.0f;
    for (int n = lo; n < hi; n++) s += gq_ld(in + (size_t)n * C + c);
    partial[(size_t)chunk * C + c] = s;
}

static __global__ void colsum_final_kernel(float *out, const float *partial, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < COLSUM_CHUNKS; k++) s += partial[(size_t)k * C + c];
    out[c] += s;
}

template <class T> static int colsum_add(float *out, const T *in, int N, int C) {
    float *partial = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_REDUCE, (size_t)COLSUM_CHUNKS * C * sizeof(float), (void **)&partial));
    GQ_TRY(gq_launch(colsum_partial_kernel<T>, dim3(gq_cuda_blocks(C, 128), COLSUM_CHUNKS), 128, 0, partial, in, N, C));
    GQ_TRY(gq_launch(colsum_final_kernel, gq_cuda_blocks(C, 128), 128, 0, out, partial, C));
    return GQ_OK;
}

int gq_cuda_colsum_add(float *out, const float *in, int N, int C) { return colsum_add(out, in, N, C); }

int gq_cuda_colsum_add_bf16(float *out, const void *in, int N, int C) {
    return colsum_add(out, (const __nv_bfloat16 *)in, N, C);
}
