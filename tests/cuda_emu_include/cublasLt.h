/* cublasLt.h for kernels/cuda compiled against the CPU emulator (cuda_emu_runtime.h): the part of
 * cuBLASLt that kernels/cuda/cublaslt.cu calls. cublasLtMatmul is a reference product in double
 * (the operands as cuBLAS sees them, gq_emu::gemm_products), then the epilogue on the fp32 sum
 * and one rounding to the output type, as the cuBLASLt documentation describes them:
 *   D = alpha op(A) op(B) + beta C, then
 *   BIAS:          + bias[row] (bias: D's type; CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE may only say so)
 *   GELU_AUX_BIAS: + bias[row], the sum stored to the aux matrix (D's type), D = GELU(sum)
 *   DGELU:         D = GELU'(aux) x sum (aux: the forward's stored GELU input)
 * GELU in its tanh form. Refused like the library refuses (CUBLAS_STATUS_INVALID_VALUE /
 * NOT_SUPPORTED): operand types that differ, bf16 with a compute type other than 32F, a bf16 D
 * from fp32 operands, C's type not D's, a bias type not D's (the H200's cuBLAS 13 refused an fp32
 * bias beside a bf16 D, session 19), an aux leading dimension not a multiple of 8 or below
 * D's rows, epilogues other than those above, batches. GQ_EMU_LT_REFUSE=1 in the environment
 * makes cublasLtMatmulAlgoGetHeuristic find no algorithm, as for a configuration the library has
 * no kernel for (the callers' fallback path). */
#ifndef GQ_EMU_CUBLASLT_H
#define GQ_EMU_CUBLASLT_H

#include "cuda_emu_runtime.h"

#include <cmath>
#include <cstring>

typedef cudaDataType cudaDataType_t;
typedef struct gq_emu_lt *cublasLtHandle_t;
typedef struct gq_emu_lt_desc {
    cublasComputeType_t compute;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    void *aux;
    int64_t aux_ld;
    int32_t bias_type; /* -1: D's type */
} *cublasLtMatmulDesc_t;
typedef struct gq_emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch;
} *cublasLtMatrixLayout_t;
typedef struct gq_emu_lt_pref {
    size_t workspace;
} *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

typedef enum {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26
} cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5 } cublasLtMatrixLayoutAttribute_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 } cublasLtMatmulPreferenceAttributes_t;
typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_GELU = 32,
    CUBLASLT_EPILOGUE_GELU_AUX = 32 | 128,
    CUBLASLT_EPILOGUE_GELU_BIAS = 32 | 4,
    CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4,
    CUBLASLT_EPILOGUE_DGELU = 64 | 128
} cublasLtEpilogue_t;

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = (cublasLtHandle_t)0x1;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

namespace gq_emu {
/* an attribute's value, whose size must be its type's (as the library checks) */
inline cublasStatus_t lt_set(void *dst, size_t want, const void *v, size_t n) {
    if (n != want) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(dst, v, n);
    return CUBLAS_STATUS_SUCCESS;
}
template <class T> inline cublasStatus_t lt_delete(T *p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
} // namespace gq_emu

inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new gq_emu_lt_desc{compute, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL, NULL, 0, -1};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return gq_emu::lt_delete(d); }
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void *v, size_t n) {
    using gq_emu::lt_set;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return lt_set(&d->transa, sizeof(int32_t), v, n);
    case CUBLASLT_MATMUL_DESC_TRANSB: return lt_set(&d->transb, sizeof(int32_t), v, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return lt_set(&d->epilogue, sizeof(uint32_t), v, n);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return lt_set(&d->bias, sizeof(void *), v, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return lt_set(&d->aux, sizeof(void *), v, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return lt_set(&d->aux_ld, sizeof(int64_t), v, n);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return lt_set(&d->bias_type, sizeof(int32_t), v, n);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
    if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new gq_emu_lt_layout{t, rows, cols, ld, 1};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return gq_emu::lt_delete(l); }
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                       const void *v, size_t n) {
    if (a != CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) return CUBLAS_STATUS_INVALID_VALUE;
    return gq_emu::lt_set(&l->batch, sizeof(int32_t), v, n);
}

inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new gq_emu_lt_pref{0};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return gq_emu::lt_delete(p); }
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a, const void *v,
                                                           size_t n) {
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return CUBLAS_STATUS_INVALID_VALUE;
    return gq_emu::lt_set(&p->workspace, sizeof(size_t), v, n);
}

namespace gq_emu {
/* the shapes and types the library would take (see the file comment): CUBLAS_STATUS_SUCCESS or why not */
inline cublasStatus_t lt_check(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                               cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D) {
    const uint64_t m = D->rows, n = D->cols, k = d->transa == CUBLAS_OP_N ? A->cols : A->rows;
    if ((d->transa == CUBLAS_OP_N ? A->rows : A->cols) != m || (d->transb == CUBLAS_OP_N ? B->rows : B->cols) != k ||
        (d->transb == CUBLAS_OP_N ? B->cols : B->rows) != n || C->rows != m || C->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (A->batch != 1 || B->batch != 1 || C->batch != 1 || D->batch != 1) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (A->type != B->type || C->type != D->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (A->type == CUDA_R_16BF && d->compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (A->type == CUDA_R_32F && D->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    const uint32_t e = d->epilogue;
    if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS && e != CUBLASLT_EPILOGUE_GELU_AUX_BIAS &&
        e != CUBLASLT_EPILOGUE_DGELU)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((e & 4) && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->bias_type != -1 && d->bias_type != (int32_t)D->type) /* (an fp32 bias beside a bf16 D: refused on the H200) */
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((e & 128) && (!d->aux || d->aux_ld % 8 || d->aux_ld < (int64_t)m)) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
/* GPT-2's GELU (tanh form) and its derivative, in double */
inline double lt_gelu(double x) {
    const double s = std::sqrt(2.0 / M_PI), u = s * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + std::tanh(u));
}
inline double lt_dgelu(double x) {
    const double s = std::sqrt(2.0 / M_PI), u = s * (x + 0.044715 * x * x * x), t = std::tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * 0.044715 * x * x);
}
} // namespace gq_emu

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                                     cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                                     cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                                     cublasLtMatmulPreference_t, int requested,
                                                     cublasLtMatmulHeuristicResult_t *res, int *returned) {
    *returned = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t st = gq_emu::lt_check(d, A, B, C, D);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const char *refuse = getenv("GQ_EMU_LT_REFUSE");
    if (refuse && !strcmp(refuse, "1")) return CUBLAS_STATUS_NOT_SUPPORTED; /* no algorithm */
    memset(res, 0, sizeof *res);
    res->state = CUBLAS_STATUS_SUCCESS;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

/* D = epilogue(alpha op(A) op(B) + beta C); C is not read when beta is 0 */
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *a,
                                     cublasLtMatrixLayout_t A, const void *b, cublasLtMatrixLayout_t B,
                                     const void *beta, const void *c, cublasLtMatrixLayout_t C, void *dp,
                                     cublasLtMatrixLayout_t D, const cublasLtMatmulAlgo_t *, void *, size_t,
                                     cudaStream_t) {
    const cublasStatus_t st = gq_emu::lt_check(d, A, B, C, D);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const int m = (int)D->rows, n = (int)D->cols, k = (int)(d->transa == CUBLAS_OP_N ? A->cols : A->rows);
    const float al = *(const float *)alpha, be = *(const float *)beta;
    std::vector<double> acc;
    gq_emu::gemm_products((cublasOperation_t)d->transa, (cublasOperation_t)d->transb, m, n, k, a, A->type,
                          (size_t)A->ld, b, B->type, (size_t)B->ld, d->compute == CUBLAS_COMPUTE_32F_FAST_TF32, acc);
    const uint32_t e = d->epilogue;
    const cudaDataType bt = d->bias_type == -1 ? D->type : (cudaDataType)d->bias_type;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            /* the sum in fp32, as the tensor cores' accumulators hold it */
            float v = (float)(al * acc[(size_t)j * m + i]);
            if (be != 0) v = (float)((double)v + (double)be * gq_emu::gemm_value(c, C->type, (size_t)j * C->ld + i, false));
            if (e & 4) v = (float)((double)v + gq_emu::gemm_value(d->bias, bt, (size_t)i, false));
            const size_t di = (size_t)j * D->ld + i, xi = (size_t)j * d->aux_ld + i;
            if (e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
                gq_emu::store_value(d->aux, D->type, xi, v);
                v = (float)gq_emu::lt_gelu(v);
            } else if (e == CUBLASLT_EPILOGUE_DGELU) {
                v = (float)(gq_emu::lt_dgelu(gq_emu::gemm_value(d->aux, D->type, xi, false)) * v);
            }
            gq_emu::store_value(dp, D->type, di, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
