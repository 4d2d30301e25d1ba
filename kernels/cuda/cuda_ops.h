/* cuda_ops: C entry points of the CUDA backend. Pointers named d_* are device memory.
 * Every function returns a gq error code (GQ_EDEVICE with a detail message on CUDA errors). */
#ifndef GQ_CUDA_OPS_H
#define GQ_CUDA_OPS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when there is no GPU or no driver). */
int gq_cuda_device_count(void);
int gq_cuda_alloc(void **d_ptr, size_t bytes);
int gq_cuda_free(void *d_ptr);
int gq_cuda_upload(void *d_dst, const void *src, size_t bytes);
int gq_cuda_download(void *dst, const void *d_src, size_t bytes);
int gq_cuda_sync(void);

/* d_out, d_inp: (n) fp32 */
int gq_cuda_gelu_forward(float *d_out, const float *d_inp, size_t n);
/* d_dinp = gelu'(d_inp) * d_dout; all (n) fp32 */
int gq_cuda_gelu_backward(float *d_dinp, const float *d_inp, const float *d_dout, size_t n);

#ifdef __cplusplus
}
#endif

#endif
