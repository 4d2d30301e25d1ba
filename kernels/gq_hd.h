/* gq_hd: GQ_HD marks math shared by the CPU and CUDA backends (__host__ __device__ under
 * nvcc, plain static inline elsewhere), so that one definition serves both. */
#ifndef GQ_HD_H
#define GQ_HD_H

#ifdef __CUDACC__
#define GQ_HD __host__ __device__ __forceinline__
#else
#define GQ_HD static inline
#endif

#endif
