/* cuda_util: device discovery and memory helpers behind cuda_ops.h. */
#include "cuda_ops.h"
#include "cuda_util.cuh"

extern "C" int gq_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

extern "C" int gq_cuda_alloc(void **d_ptr, size_t bytes) {
    GQ_CUDA_CHECK(cudaMalloc(d_ptr, bytes));
    return GQ_OK;
}

extern "C" int gq_cuda_free(void *d_ptr) {
    GQ_CUDA_CHECK(cudaFree(d_ptr));
    return GQ_OK;
}

extern "C" int gq_cuda_upload(void *d_dst, const void *src, size_t bytes) {
    GQ_CUDA_CHECK(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
    return GQ_OK;
}

extern "C" int gq_cuda_download(void *dst, const void *d_src, size_t bytes) {
    GQ_CUDA_CHECK(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
    return GQ_OK;
}

extern "C" int gq_cuda_sync(void) {
    GQ_CUDA_CHECK(cudaDeviceSynchronize());
    return GQ_OK;
}
