/* safetensors: reader for Hugging Face .safetensors files (8-byte little-endian header length,
 * a JSON header of name -> {dtype, shape, data_offsets}, then the raw data). The file is
 * mmap'd; every header field is validated against the file before any tensor is read. */
#ifndef GQ_SAFETENSORS_H
#define GQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum gq_st_dtype { GQ_ST_F32, GQ_ST_F16, GQ_ST_BF16, GQ_ST_I32, GQ_ST_I64, GQ_ST_F64, GQ_ST_U8, GQ_ST_I8 };

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[8];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets into the data section */
} gq_st_tensor;

typedef struct {
    char *path;
    uint8_t *map;
    size_t map_len;
    const uint8_t *data; /* data section */
    size_t data_len;
    gq_st_tensor *tensors;
    int n_tensors;
} gq_safetensors;

/* Parse and validate a whole file image held in memory (used by gq_st_open and the fuzzer).
 * `name` is used in messages. On success st->tensors is allocated; free with gq_st_clear. */
int gq_st_parse(gq_safetensors *st, const uint8_t *file, size_t len, const char *name);
void gq_st_clear(gq_safetensors *st);

int gq_st_open(gq_safetensors **out, const char *path);
void gq_st_close(gq_safetensors *st);

const gq_st_tensor *gq_st_find(const gq_safetensors *st, const char *name);
/* Convert a float tensor (F32, F16, BF16, F64) into dst (t->numel floats). */
int gq_st_read_f32(const gq_safetensors *st, const gq_st_tensor *t, float *dst);
/* Convert an integer tensor (I32, I64) into dst (t->numel int32; GQ_ERANGE on overflow). */
int gq_st_read_i32(const gq_safetensors *st, const gq_st_tensor *t, int32_t *dst);

#endif
