/* h5io: see h5io.h. */
#define _POSIX_C_SOURCE 200809L
#include "h5io.h"

#include "gq_error.h"
#include "gq_file.h"

#include <hdf5.h>
#include "gq_h5.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gq_h5w {
    char *final_path;
    char tmp[4200];
    hid_t file;
    int rc;
};

struct gq_h5r {
    char *path;
    hid_t file;
};


int gq_h5w_begin(gq_h5w **out, const char *final_path) {
    gq_h5_quiet();
    *out = NULL;
    gq_h5w *w = calloc(1, sizeof *w);
    if (!w) return gq_errf(GQ_ENOMEM, "out of memory");
    w->final_path = strdup(final_path);
    gq_temp_path(final_path, w->tmp, sizeof w->tmp);
    /* no object timestamps: the same content gives the same bytes (bit-exact reruns compare
     * checkpoints with cmp) */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w->file < 0) {
        int rc = gq_errf(GQ_EIO, "%s: cannot create the file (directory missing or not writable?)", final_path);
        free(w->final_path);
        free(w);
        return rc;
    }
    *out = w;
    return GQ_OK;
}

static int wfail(gq_h5w *w, const char *what, const char *obj) {
    if (!w->rc) w->rc = gq_errf(GQ_EIO, "%s: writing %s %s failed (disk full?)", w->final_path, what, obj);
    return w->rc;
}

int gq_h5w_group(gq_h5w *w, const char *path) {
    if (w->rc) return w->rc;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char save = *p;
            *p = '\0';
            if (H5Lexists(w->file, buf, H5P_DEFAULT) <= 0) {
                hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
                H5Pset_obj_track_times(gcpl, 0);
                hid_t g = H5Gcreate2(w->file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
                H5Pclose(gcpl);
                if (g < 0) return wfail(w, "group", buf);
                H5Gclose(g);
            }
            *p = save;
            if (!save) break;
        }
    }
    return GQ_OK;
}

static int put_attr(gq_h5w *w, const char *obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    if (w->rc) return w->rc;
    if (strcmp(obj, "/") && gq_h5w_group(w, obj)) return w->rc;
    hid_t o = H5Oopen(w->file, obj, H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t a = o < 0 ? -1 : H5Acreate2(o, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    if (o >= 0) H5Oclose(o);
    return st < 0 ? wfail(w, "attribute", name) : GQ_OK;
}

int gq_h5w_attr_i64(gq_h5w *w, const char *obj, const char *name, int64_t v) {
    return put_attr(w, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
int gq_h5w_attr_u64(gq_h5w *w, const char *obj, const char *name, uint64_t v) {
    return put_attr(w, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
int gq_h5w_attr_f64(gq_h5w *w, const char *obj, const char *name, double v) {
    return put_attr(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
int gq_h5w_attr_str(gq_h5w *w, const char *obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    int rc = put_attr(w, obj, name, t, t, v);
    H5Tclose(t);
    return rc;
}

static int put_data(gq_h5w *w, const char *path, hid_t ftype, hid_t mtype, const void *data, int ndim,
                    const size_t *dims) {
    if (w->rc) return w->rc;
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (gq_h5w_group(w, parent)) return w->rc;
    }
    hsize_t hd[8];
    for (int i = 0; i < ndim; i++) hd[i] = dims[i];
    hid_t sp = ndim ? H5Screate_simple(ndim, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(w->file, path, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    herr_t st = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return st < 0 ? wfail(w, "dataset", path) : GQ_OK;
}

int gq_h5w_f32(gq_h5w *w, const char *path, const float *data, int ndim, const size_t *dims) {
    return put_data(w, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim, dims);
}
int gq_h5w_u8(gq_h5w *w, const char *path, const uint8_t *data, int ndim, const size_t *dims) {
    return put_data(w, path, H5T_STD_U8LE, H5T_NATIVE_UINT8, data, ndim, dims);
}

int gq_h5w_u16(gq_h5w *w, const char *path, const uint16_t *data, int ndim, const size_t *dims) {
    return put_data(w, path, H5T_STD_U16LE, H5T_NATIVE_UINT16, data, ndim, dims);
}
int gq_h5w_i8(gq_h5w *w, const char *path, const int8_t *data, int ndim, const size_t *dims) {
    return put_data(w, path, H5T_STD_I8LE, H5T_NATIVE_INT8, data, ndim, dims);
}

int gq_h5w_commit(gq_h5w *w) {
    int rc = w->rc;
    if (H5Fclose(w->file) < 0 && !rc) rc = gq_errf(GQ_EIO, "%s: closing failed (disk full?)", w->final_path);
    if (rc) unlink(w->tmp);
    else rc = gq_commit_file(w->tmp, w->final_path);
    free(w->final_path);
    free(w);
    return rc;
}

void gq_h5w_abort(gq_h5w *w) {
    if (!w) return;
    H5Fclose(w->file);
    unlink(w->tmp);
    free(w->final_path);
    free(w);
}

/* ---- reader ---- */

int gq_h5r_open(gq_h5r **out, const char *path) {
    gq_h5_quiet();
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return gq_errf(GQ_ENOENT, "%s: cannot open: no such file or not readable", path);
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, 8, f);
    fclose(f);
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (got < 8 || memcmp(head, sig, 8)) return gq_errf(GQ_EFORMAT, "%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return gq_errf(GQ_ETRUNC, "%s: HDF5 file cannot be opened (truncated or damaged)", path);
    gq_h5r *r = calloc(1, sizeof *r);
    r->path = strdup(path);
    r->file = file;
    *out = r;
    return GQ_OK;
}

void gq_h5r_close(gq_h5r *r) {
    if (!r) return;
    H5Fclose(r->file);
    free(r->path);
    free(r);
}

const char *gq_h5r_path(const gq_h5r *r) { return r->path; }

int gq_h5r_exists(gq_h5r *r, const char *path) {
    if (!strcmp(path, "/")) return 1;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) { /* every prefix must exist for H5Lexists */
        if (*p == '/' || !*p) {
            char save = *p;
            *p = '\0';
            if (H5Lexists(r->file, buf, H5P_DEFAULT) <= 0) return 0;
            *p = save;
            if (!save) return 1;
        }
    }
}

/* Open attribute `name` of object `obj` (both closed by close_attr); the error names both. */
static int open_attr(gq_h5r *r, const char *obj, const char *name, hid_t *o, hid_t *a) {
    if (!gq_h5r_exists(r, obj)) return gq_errf(GQ_EFORMAT, "%s: no object %s", r->path, obj);
    *o = H5Oopen(r->file, obj, H5P_DEFAULT);
    if (*o < 0 || H5Aexists(*o, name) <= 0) {
        if (*o >= 0) H5Oclose(*o);
        return gq_errf(GQ_EFORMAT, "%s: attribute %s of %s is missing", r->path, name, obj);
    }
    *a = H5Aopen(*o, name, H5P_DEFAULT);
    return GQ_OK;
}

static void close_attr(hid_t o, hid_t a) {
    H5Aclose(a);
    H5Oclose(o);
}

static int get_attr(gq_h5r *r, const char *obj, const char *name, hid_t mtype, void *v, int want_class) {
    hid_t o = -1, a = -1;
    int rc = open_attr(r, obj, name, &o, &a);
    if (rc) return rc;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == want_class && H5Aread(a, mtype, v) >= 0;
    H5Tclose(t);
    close_attr(o, a);
    return ok ? GQ_OK : gq_errf(GQ_EFORMAT, "%s: attribute %s of %s has the wrong type", r->path, name, obj);
}

int gq_h5r_attr_i64(gq_h5r *r, const char *obj, const char *name, int64_t *v) {
    return get_attr(r, obj, name, H5T_NATIVE_INT64, v, H5T_INTEGER);
}
int gq_h5r_attr_u64(gq_h5r *r, const char *obj, const char *name, uint64_t *v) {
    return get_attr(r, obj, name, H5T_NATIVE_UINT64, v, H5T_INTEGER);
}
int gq_h5r_attr_f64(gq_h5r *r, const char *obj, const char *name, double *v) {
    return get_attr(r, obj, name, H5T_NATIVE_DOUBLE, v, H5T_FLOAT);
}

int gq_h5r_attr_str(gq_h5r *r, const char *obj, const char *name, char *buf, size_t size) {
    hid_t o = -1, a = -1;
    int rc = open_attr(r, obj, name, &o, &a);
    if (rc) return rc;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && H5Tget_size(t) < size;
    if (ok) {
        memset(buf, 0, size);
        ok = H5Aread(a, t, buf) >= 0;
    }
    H5Tclose(t);
    close_attr(o, a);
    return ok ? GQ_OK : gq_errf(GQ_EFORMAT, "%s: attribute %s of %s is not a short string", r->path, name, obj);
}

int gq_h5r_dims(gq_h5r *r, const char *path, int *ndim, size_t *dims) {
    if (!gq_h5r_exists(r, path)) return gq_errf(GQ_EFORMAT, "%s: dataset %s is missing", r->path, path);
    hid_t d = H5Dopen2(r->file, path, H5P_DEFAULT);
    if (d < 0) return gq_errf(GQ_EFORMAT, "%s: %s is not a dataset", r->path, path);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[8] = {0};
    if (nd >= 0 && nd <= 4) H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    H5Dclose(d);
    if (nd < 0 || nd > 4) return gq_errf(GQ_ESHAPE, "%s: %s has %d dimensions", r->path, path, nd);
    *ndim = nd;
    for (int i = 0; i < nd; i++) dims[i] = hd[i];
    return GQ_OK;
}

static void fmt_dims(char *buf, size_t size, int nd, const size_t *dims) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < nd && n < size; i++) n += (size_t)snprintf(buf + n, size - n, i ? ", %zu" : "%zu", dims[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

static int get_data(gq_h5r *r, const char *path, hid_t mtype, int want_class, size_t want_size, void *dst, int ndim,
                    const size_t *dims) {
    int nd;
    size_t have[4];
    int rc = gq_h5r_dims(r, path, &nd, have);
    if (rc) return rc;
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = have[i] == dims[i];
    if (!same) {
        char a[128], b[128];
        fmt_dims(a, sizeof a, nd, have);
        fmt_dims(b, sizeof b, ndim, dims);
        return gq_errf(GQ_ESHAPE, "%s: %s has shape %s, expected %s", r->path, path, a, b);
    }
    hid_t d = H5Dopen2(r->file, path, H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    int ok = H5Tget_class(t) == want_class && H5Tget_size(t) == want_size;
    H5Tclose(t);
    if (!ok) {
        H5Dclose(d);
        return gq_errf(GQ_EFORMAT, "%s: %s has the wrong element type", r->path, path);
    }
    herr_t st = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    H5Dclose(d);
    return st < 0 ? gq_errf(GQ_ETRUNC, "%s: reading %s failed (truncated or damaged file)", r->path, path) : GQ_OK;
}

int gq_h5r_f32(gq_h5r *r, const char *path, float *dst, int ndim, const size_t *dims) {
    return get_data(r, path, H5T_NATIVE_FLOAT, H5T_FLOAT, 4, dst, ndim, dims);
}
int gq_h5r_u8(gq_h5r *r, const char *path, uint8_t *dst, int ndim, const size_t *dims) {
    return get_data(r, path, H5T_NATIVE_UINT8, H5T_INTEGER, 1, dst, ndim, dims);
}

int gq_h5r_u16(gq_h5r *r, const char *path, uint16_t *dst, int ndim, const size_t *dims) {
    return get_data(r, path, H5T_NATIVE_UINT16, H5T_INTEGER, 2, dst, ndim, dims);
}
int gq_h5r_i8(gq_h5r *r, const char *path, int8_t *dst, int ndim, const size_t *dims) {
    return get_data(r, path, H5T_NATIVE_INT8, H5T_INTEGER, 1, dst, ndim, dims);
}

int gq_h5r_list(gq_h5r *r, const char *group, char ***names, int *n) {
    /* H5Gget_info + H5Lget_name_by_idx: the same calls in HDF5 1.10 and 1.12+ */
    *names = NULL;
    *n = 0;
    if (!gq_h5r_exists(r, group)) return gq_errf(GQ_EFORMAT, "%s: no group %s", r->path, group);
    hid_t g = H5Gopen2(r->file, group, H5P_DEFAULT);
    if (g < 0) return gq_errf(GQ_EFORMAT, "%s: %s is not a group", r->path, group);
    H5G_info_t gi;
    if (H5Gget_info(g, &gi) < 0) {
        H5Gclose(g);
        return gq_errf(GQ_ETRUNC, "%s: cannot list %s (damaged file)", r->path, group);
    }
    char **v = calloc((size_t)gi.nlinks + 1, sizeof *v);
    int count = 0;
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        char buf[512];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf, H5P_DEFAULT) < 0) continue;
        hid_t d = H5Dopen2(g, buf, H5P_DEFAULT);
        if (d < 0) continue; /* a group or something else */
        H5Dclose(d);
        v[count++] = strdup(buf);
    }
    H5Gclose(g);
    *names = v;
    *n = count;
    return GQ_OK;
}
