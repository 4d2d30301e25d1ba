/* safetensors: see safetensors.h. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include "gq_error.h"
#include "quant.h" /* gq_f16_to_f32 */

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    int dtype, size;
} dtypes[] = {{"F32", GQ_ST_F32, 4}, {"F16", GQ_ST_F16, 2}, {"BF16", GQ_ST_BF16, 2}, {"I32", GQ_ST_I32, 4},
              {"I64", GQ_ST_I64, 8}, {"F64", GQ_ST_F64, 8}, {"U8", GQ_ST_U8, 1},     {"I8", GQ_ST_I8, 1}};

static int dtype_size(int dtype) {
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].size;
    return 0;
}

void gq_st_clear(gq_safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n_tensors = 0;
}

int gq_st_parse(gq_safetensors *st, const uint8_t *file, size_t len, const char *name) {
    st->tensors = NULL;
    st->n_tensors = 0;
    if (len < 8) return gq_errf(GQ_ETRUNC, "%s: truncated safetensors file (%zu bytes, no header length)", name, len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | file[i];
    if (hl > len - 8)
        return gq_errf(GQ_ETRUNC, "%s: truncated safetensors file: header of %llu bytes, file has %zu", name,
                       (unsigned long long)hl, len);
    if (hl > (100u << 20)) return gq_errf(GQ_EFORMAT, "%s: safetensors header of %llu bytes is implausibly large", name, (unsigned long long)hl);
    cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)hl);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gq_errf(GQ_EFORMAT, "%s: safetensors header is not a JSON object", name);
    }
    st->data = file + 8 + hl;
    st->data_len = len - 8 - (size_t)hl;
    int n = 0;
    for (cJSON *it = root->child; it; it = it->next) n++;
    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    int rc = st->tensors ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
    for (cJSON *it = root->child; it && !rc; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        gq_st_tensor *t = &st->tensors[st->n_tensors];
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(it, "shape"),
              *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            rc = gq_errf(GQ_EFORMAT, "%s: tensor \"%.80s\": needs dtype, shape and two data_offsets", name, it->string);
            break;
        }
        t->dtype = -1;
        for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
            if (!strcmp(dt->valuestring, dtypes[i].name)) t->dtype = dtypes[i].dtype;
        if (t->dtype < 0) {
            rc = gq_errf(GQ_EUNSUPPORTED, "%s: tensor \"%.80s\": dtype %.16s is not supported", name, it->string,
                         dt->valuestring);
            break;
        }
        t->ndim = cJSON_GetArraySize(shape);
        if (t->ndim > 8) {
            rc = gq_errf(GQ_EFORMAT, "%s: tensor \"%.80s\": %d dimensions", name, it->string, t->ndim);
            break;
        }
        t->numel = 1;
        for (int d = 0; d < t->ndim && !rc; d++) {
            cJSON *x = cJSON_GetArrayItem(shape, d);
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 1e12 ||
                x->valuedouble != (double)(int64_t)x->valuedouble)
                rc = gq_errf(GQ_EFORMAT, "%s: tensor \"%.80s\": bad shape", name, it->string);
            else {
                t->shape[d] = (int64_t)x->valuedouble;
                t->numel *= (uint64_t)t->shape[d];
                if (t->numel > (1ull << 40)) rc = gq_errf(GQ_EFORMAT, "%s: tensor \"%.80s\": shape too large", name, it->string);
            }
        }
        if (rc) break;
        cJSON *b = cJSON_GetArrayItem(offs, 0), *e = cJSON_GetArrayItem(offs, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 || e->valuedouble < b->valuedouble ||
            e->valuedouble > (double)st->data_len) {
            rc = gq_errf(GQ_ETRUNC, "%s: tensor \"%.80s\": data_offsets outside the file's %zu data bytes (truncated?)",
                         name, it->string, st->data_len);
            break;
        }
        t->begin = (uint64_t)b->valuedouble;
        t->end = (uint64_t)e->valuedouble;
        if (t->end - t->begin != t->numel * (uint64_t)dtype_size(t->dtype)) {
            rc = gq_errf(GQ_ESHAPE, "%s: tensor \"%.80s\": %llu data bytes for %llu elements of %s", name, it->string,
                         (unsigned long long)(t->end - t->begin), (unsigned long long)t->numel, dt->valuestring);
            break;
        }
        t->name = strdup(it->string);
        st->n_tensors++;
    }
    cJSON_Delete(root);
    if (rc) gq_st_clear(st);
    return rc;
}

int gq_st_open(gq_safetensors **out, const char *path) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gq_errf(gq_from_errno(errno), "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return gq_errf(GQ_EINVAL, "%s: not a regular file", path);
    }
    gq_safetensors *st = calloc(1, sizeof *st);
    st->path = strdup(path);
    st->map_len = (size_t)sb.st_size;
    st->map = st->map_len ? mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (st->map_len && st->map == MAP_FAILED) {
        st->map = NULL;
        gq_st_close(st);
        return gq_errf(GQ_EIO, "%s: cannot map the file", path);
    }
    int rc = gq_st_parse(st, st->map, st->map_len, path);
    if (rc) {
        gq_st_close(st);
        return rc;
    }
    *out = st;
    return GQ_OK;
}

void gq_st_close(gq_safetensors *st) {
    if (!st) return;
    gq_st_clear(st);
    if (st->map) munmap(st->map, st->map_len);
    free(st->path);
    free(st);
}

const gq_st_tensor *gq_st_find(const gq_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

int gq_st_read_f32(const gq_safetensors *st, const gq_st_tensor *t, float *dst) {
    const uint8_t *p = st->data + t->begin;
    for (uint64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case GQ_ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case GQ_ST_F16: dst[i] = gq_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        case GQ_ST_BF16: {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, 4);
            break;
        }
        case GQ_ST_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        default: return gq_errf(GQ_EFORMAT, "%s: tensor \"%s\" is not a float tensor", st->path, t->name);
        }
    }
    return GQ_OK;
}

int gq_st_read_i32(const gq_safetensors *st, const gq_st_tensor *t, int32_t *dst) {
    const uint8_t *p = st->data + t->begin;
    for (uint64_t i = 0; i < t->numel; i++) {
        if (t->dtype == GQ_ST_I32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else if (t->dtype == GQ_ST_I64) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return gq_errf(GQ_ERANGE, "%s: tensor \"%s\": value %lld does not fit int32", st->path, t->name, (long long)v);
            dst[i] = (int32_t)v;
        } else {
            return gq_errf(GQ_EFORMAT, "%s: tensor \"%s\" is not an integer tensor", st->path, t->name);
        }
    }
    return GQ_OK;
}
