/* cublaslt: the training products whose bias, residual add or GELU cuBLASLt can do in the
 * product's epilogue (issue 7: "GEMMs through cuBLAS/cuBLASLt, with bias/GELU epilogues where
 * they help"): the product's fp32 sums get the bias, the residual (as cuBLASLt's C input, beta
 * 1), the GELU (the pre-activation stored as the epilogue's aux matrix) or the GELU's derivative
 * (from that aux matrix), and are rounded once to the output type, instead of a separate pass
 * over the output per step. Descriptors, layouts and the heuristic's algorithm are made once per
 * product shape and kept (the pointers are set per call). Where cuBLASLt has no kernel for a
 * product (its heuristic finds none, or a type combination it refuses), gq_cuda_lt_matmul
 * answers GQ_EUNSUPPORTED and the caller takes its separate kernels: the same result up to that
 * rounding. GQ_CUDA_LT=0 in the environment (read once) turns the epilogues off, for measuring
 * what they are worth. */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "backend.h"

#include <cublasLt.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { LT_PLANS = 64, LT_KEY = 14 };
static const size_t LT_WORKSPACE = (size_t)32 << 20; /* cuBLAS's advice for Hopper: 32 MiB */

typedef struct {
    int used, ok; /* ok: cuBLASLt takes it (algo valid); else refused, the caller falls back */
    int key[LT_KEY];
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c, d;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

static lt_plan g_plans[LT_PLANS];
static int g_next;
static long long g_fused, g_refused;

extern "C" void gq_cuda_lt_counts(long long *fused, long long *refused) {
    *fused = g_fused;
    *refused = g_refused;
}

static int g_lt_on = -1; /* -1: not yet read from the environment */

extern "C" int gq_cuda_lt_enabled(void) {
    if (g_lt_on < 0) g_lt_on = gq_cuda_env_on("GQ_CUDA_LT", "0");
    return g_lt_on;
}

extern "C" int gq_cuda_lt_enable(int on) {
    const int was = gq_cuda_lt_enabled();
    g_lt_on = on != 0;
    return was;
}

static int lt_handle(cublasLtHandle_t *h) {
    static cublasLtHandle_t handle;
    if (!handle) GQ_CUBLAS_CHECK(cublasLtCreate(&handle));
    *h = handle;
    return GQ_OK;
}

static void plan_free(lt_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

#define LT_TRY(call)                                                                                 \
    do {                                                                                             \
        cublasStatus_t lt_st_ = (call);                                                              \
        if (lt_st_ != CUBLAS_STATUS_SUCCESS) {                                                       \
            plan_free(p);                                                                            \
            return gq_errf(GQ_EDEVICE, "cuBLASLt error in %s (%s:%d): %s", #call, __FILE__, __LINE__, \
                           cublasGetStatusString(lt_st_));                                           \
        }                                                                                            \
    } while (0)

/* A new plan for key (ta, tb, M, N, K, lda, ldb, ldd, a16, d16, epi, has_c, mode, has_bias) in
 * row-major terms; cuBLASLt is column-major, so it computes D^T (N, M) = op(B)^T op(A)^T: our B
 * is its A and our A its B. bias and aux: the first call's pointers (the heuristic looks at their
 * alignment; every pointer here is 16-byte aligned, gq_cuda_lt_matmul checks). */
static int plan_make(lt_plan *p, const int *key, const void *bias, void *aux) {
    const int ta = key[0], tb = key[1], M = key[2], N = key[3], K = key[4], lda = key[5], ldb = key[6], ldd = key[7];
    const int a16 = key[8], d16 = key[9], epi = key[10], mode = key[12];
    memset(p, 0, sizeof *p);
    p->used = 1;
    memcpy(p->key, key, sizeof p->key);
    const cudaDataType_t ab = a16 ? CUDA_R_16BF : CUDA_R_32F, dt = d16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = mode == GQ_MATMUL_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    LT_TRY(cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F));
    const int32_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    const uint32_t e = epi == GQ_LT_BIAS            ? CUBLASLT_EPILOGUE_BIAS
                       : epi == GQ_LT_GELU_AUX_BIAS ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                       : epi == GQ_LT_DGELU         ? CUBLASLT_EPILOGUE_DGELU
                                                    : CUBLASLT_EPILOGUE_DEFAULT;
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
    if (epi == GQ_LT_BIAS || epi == GQ_LT_GELU_AUX_BIAS) {
        /* the bias in D's type: cuBLASLt refuses an fp32 bias beside a bf16 D (measured on the
         * H200, session 19: every bf16 product with a bias fell back to the separate kernels) */
        const int32_t bt = d16 ? CUDA_R_16BF : CUDA_R_32F;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    if (epi == GQ_LT_GELU_AUX_BIAS || epi == GQ_LT_DGELU) {
        const int64_t ld = ldd;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
    }
    /* stored shapes, column-major (a row-major (r, c) array is a column-major (c, r) one): its A
     * is our B, stored (N, K) row-major when tb (op T), else (K, N); its B is our A, stored
     * (K, M) row-major when ta, else (M, K); D (M, N) row-major */
    LT_TRY(cublasLtMatrixLayoutCreate(&p->a, ab, tb ? K : N, tb ? N : K, ldb));
    LT_TRY(cublasLtMatrixLayoutCreate(&p->b, ab, ta ? M : K, ta ? K : M, lda));
    LT_TRY(cublasLtMatrixLayoutCreate(&p->c, dt, N, M, ldd));
    LT_TRY(cublasLtMatrixLayoutCreate(&p->d, dt, N, M, ldd));
    cublasLtHandle_t h = NULL;
    GQ_TRY(lt_handle(&h));
    cublasLtMatmulPreference_t pref = NULL;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    const cublasStatus_t ps = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                   &LT_WORKSPACE, sizeof LT_WORKSPACE);
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    const cublasStatus_t hs =
        ps == CUBLAS_STATUS_SUCCESS
            ? cublasLtMatmulAlgoGetHeuristic(h, p->desc, p->a, p->b, p->c, p->d, pref, 1, &r, &n)
            : ps;
    cublasLtMatmulPreferenceDestroy(pref);
    /* no algorithm, or a combination the library refuses: remembered, the caller falls back */
    p->ok = hs == CUBLAS_STATUS_SUCCESS && n > 0;
    if (p->ok) p->algo = r.algo;
    return GQ_OK;
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

int gq_cuda_lt_matmul(int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb,
                                 const void *C, void *D, int ldd, int d16, const float *bias, void *aux, int epi) {
    const int mode = gq_cuda_matmul_mode();
    /* bf16 mode multiplies bf16 arrays (GQ_CUDA_BF16_OPERANDS=0 keeps fp32 ones: not here) */
    const int a16 = mode == GQ_MATMUL_BF16;
    if (!gq_cuda_lt_enabled() || (a16 && !gq_cuda_bf16_operands()) || M <= 0 || N <= 0 || K <= 0)
        return GQ_EUNSUPPORTED;
    if ((epi == GQ_LT_BIAS || epi == GQ_LT_GELU_AUX_BIAS) != (bias != NULL) ||
        (epi == GQ_LT_GELU_AUX_BIAS || epi == GQ_LT_DGELU) != (aux != NULL))
        return gq_errf(GQ_EINVAL, "cuBLASLt product: epilogue %d with%s bias and with%s aux", epi, bias ? "" : "out",
                       aux ? "" : "out");
    /* 16-byte aligned pointers and rows only (the heuristic's choice depends on it) */
    const int ea = a16 ? 2 : 4, ed = d16 ? 2 : 4;
    if (!aligned16(A) || !aligned16(B) || !aligned16(D) || (C && !aligned16(C)) || (bias && !aligned16(bias)) ||
        (aux && !aligned16(aux)) || (lda * ea) % 16 || (ldb * ea) % 16 || (ldd * ed) % 16) {
        g_refused++;
        return GQ_EUNSUPPORTED;
    }
    const int key[LT_KEY] = {ta, tb, M, N, K, lda, ldb, ldd, a16, d16, epi, C != NULL, mode, bias != NULL};
    lt_plan *p = NULL;
    for (int i = 0; i < LT_PLANS && !p; i++)
        if (g_plans[i].used && !memcmp(g_plans[i].key, key, sizeof key)) p = &g_plans[i];
    if (!p) { /* a new shape: the oldest plan makes room */
        p = &g_plans[g_next];
        g_next = (g_next + 1) % LT_PLANS;
        plan_free(p);
        GQ_TRY(plan_make(p, key, bias, aux));
    }
    if (!p->ok) {
        g_refused++;
        return GQ_EUNSUPPORTED;
    }
    const void *bias_p = bias;
    if (bias && d16) { /* our biases are fp32 (the master weights, copied to the working weights):
                        * rounded to nearest bf16 for this product (N values) */
        void *b16 = NULL;
        GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_BIAS16, (size_t)N * 2, &b16));
        GQ_TRY(gq_cuda_to_bf16(b16, bias, (size_t)N));
        bias_p = b16;
    }
    if (bias) GQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_p, sizeof bias_p));
    if (aux) GQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    void *ws = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_LT, LT_WORKSPACE, &ws));
    cublasLtHandle_t h = NULL;
    GQ_TRY(lt_handle(&h));
    const float one = 1.0f, beta = C ? 1.0f : 0.0f;
    /* C's descriptor is D's (same type and layout); with beta 0 it is not read */
    const cublasStatus_t st = cublasLtMatmul(h, p->desc, &one, B, p->a, A, p->b, &beta, C ? C : D, p->c, D, p->d,
                                             &p->algo, ws, LT_WORKSPACE, cudaStreamPerThread);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
        /* refused at launch (nothing ran): from now on the separate kernels for this shape */
        p->ok = 0;
        g_refused++;
        return GQ_EUNSUPPORTED;
    }
    GQ_CUBLAS_CHECK(st);
    g_fused++;
    return GQ_OK;
}
