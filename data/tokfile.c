/* tokfile: HDF5 token files (see tokfile.h). HDF5's own error printing is switched off;
 * failures become one gq error naming the file and the object. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "tokfile.h"

#include "gq_error.h"
#include "gq_file.h"
#include "shard.h"

#include <hdf5.h>
#include "gq_h5.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gq_tokfile {
    char *path;
    hid_t file, train, val, train_mask, val_mask;
    gq_tokfile_info info;
};

int gq_is_hdf5(const uint8_t *head, size_t len) {
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    return len >= 8 && memcmp(head, sig, 8) == 0;
}


/* ---- the split rule ---- */

/* the rule over elements of `size` bytes */
static void split_blocks(const void *src, size_t n, size_t size, double fraction, size_t block, void *train,
                         size_t *n_train, void *val, size_t *n_val) {
    size_t nt = 0, nv = 0;
    if (block == 0) block = 1;
    for (size_t b = 0; b * block < n; b++) {
        size_t start = b * block, len = n - start < block ? n - start : block;
        /* +1e-9 keeps 0.05 * 20 == 1 exact despite binary rounding */
        int to_val = floor((double)(b + 1) * fraction + 1e-9) > floor((double)b * fraction + 1e-9);
        memcpy((char *)(to_val ? val : train) + (to_val ? nv : nt) * size, (const char *)src + start * size, len * size);
        if (to_val) nv += len;
        else nt += len;
    }
    *n_train = nt;
    *n_val = nv;
}

void gq_split_interleaved(const uint16_t *tokens, size_t n, double fraction, size_t block, uint16_t *train,
                          size_t *n_train, uint16_t *val, size_t *n_val) {
    split_blocks(tokens, n, sizeof *tokens, fraction, block, train, n_train, val, n_val);
}

void gq_split_interleaved_mask(const uint8_t *mask, size_t n, double fraction, size_t block, uint8_t *train,
                               uint8_t *val) {
    size_t nt, nv;
    split_blocks(mask, n, 1, fraction, block, train, &nt, val, &nv);
}

/* ---- writing ---- */

static int write_attr_int(hid_t loc, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

static int write_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return st < 0 ? -1 : 0;
}

static int write_attr_strs(hid_t loc, const char *name, const char *const *values, int n) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hsize_t dims = (hsize_t)n;
    hid_t space = n ? H5Screate_simple(1, &dims, NULL) : H5Screate(H5S_NULL);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = attr < 0 ? -1 : (n ? H5Awrite(attr, type, values) : 0);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return st < 0 ? -1 : 0;
}

static int write_attr_u64s(hid_t loc, const char *name, const uint64_t *values, int n) {
    hsize_t dims = (hsize_t)n;
    hid_t space = n ? H5Screate_simple(1, &dims, NULL) : H5Screate(H5S_NULL);
    hid_t attr = H5Acreate2(loc, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = attr < 0 ? -1 : (n ? H5Awrite(attr, H5T_NATIVE_UINT64, values) : 0);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

static int write_split(hid_t file, const char *name, const void *data, size_t n, int mask) {
    hsize_t dims = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dims, NULL);
    hid_t dset = H5Dcreate2(file, name, mask ? H5T_STD_U8LE : H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = dset < 0 ? -1
                         : (n ? H5Dwrite(dset, mask ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, data)
                              : 0);
    uint64_t count = n, scored = 0;
    if (st >= 0) st = write_attr_int(dset, "n_tokens", H5T_STD_U64LE, &count);
    for (size_t i = 0; mask && i < n; i++) scored += ((const uint8_t *)data)[i];
    if (st >= 0 && mask) st = write_attr_int(dset, "n_scored", H5T_STD_U64LE, &scored); /* the targets it keeps */
    if (dset >= 0) H5Dclose(dset);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

int gq_tokfile_write(const char *path, const uint16_t *train, size_t n_train, const uint16_t *val, size_t n_val,
                     const gq_tokfile_meta *meta) {
    return gq_tokfile_write_masked(path, train, n_train, val, n_val, NULL, NULL, meta);
}

static int check_mask(const uint8_t *m, size_t n, const char *path, const char *split) {
    for (size_t i = 0; i < n; i++)
        if (m[i] > 1)
            return gq_errf(GQ_EINVAL, "%s: not written: %s mask value %d at %zu (0 or 1)", path, split, m[i], i);
    return GQ_OK;
}

int gq_tokfile_write_masked(const char *path, const uint16_t *train, size_t n_train, const uint16_t *val, size_t n_val,
                            const uint8_t *train_mask, const uint8_t *val_mask, const gq_tokfile_meta *meta) {
    if (!train_mask != !val_mask) return gq_errf(GQ_EINVAL, "%s: not written: a loss mask for one split only", path);
    int rc = gq_shard_check_ids(train, n_train, meta->vocab_size, "train split", 0);
    if (!rc) rc = gq_shard_check_ids(val, n_val, meta->vocab_size, "val split", 0);
    if (rc) return gq_errf(rc, "%s: not written: %s", path, gq_errmsg(rc));
    if (train_mask) GQ_TRY(check_mask(train_mask, n_train, path, "train"));
    if (val_mask) GQ_TRY(check_mask(val_mask, n_val, path, "val"));
    gq_h5_quiet();
    char tmp[4200];
    gq_temp_path(path, tmp, sizeof tmp);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return gq_errf(GQ_EIO, "%s: cannot create the file (directory missing or not writable?)", path);
    int version = GQ_TOKFILE_VERSION;
    uint64_t n_tr = n_train, n_va = n_val;
    const char **names = calloc((size_t)meta->n_sources + 1, sizeof *names);
    const char **shas = calloc((size_t)meta->n_sources + 1, sizeof *shas);
    uint64_t *counts = calloc((size_t)meta->n_sources + 1, sizeof *counts);
    int bad = !names || !shas || !counts;
    for (int i = 0; !bad && i < meta->n_sources; i++) {
        names[i] = meta->sources[i].name;
        shas[i] = meta->sources[i].sha256;
        counts[i] = meta->sources[i].n_tokens;
    }
    bad = bad || write_attr_str(file, "format", GQ_TOKFILE_FORMAT) ||
          write_attr_int(file, "format_version", H5T_STD_I32LE, &version) ||
          write_attr_str(file, "tokenizer", meta->tokenizer ? meta->tokenizer : "gpt2") ||
          write_attr_int(file, "vocab_size", H5T_STD_I32LE, &meta->vocab_size) ||
          write_attr_int(file, "eot_id", H5T_STD_I32LE, &meta->eot_id) ||
          write_attr_int(file, "val_fraction", H5T_IEEE_F64LE, &meta->val_fraction) ||
          write_attr_int(file, "val_block", H5T_STD_U64LE, &meta->val_block) ||
          write_attr_str(file, "val_rule", "block b is val when floor((b+1)*val_fraction) > floor(b*val_fraction)") ||
          write_attr_int(file, "n_train", H5T_STD_U64LE, &n_tr) || write_attr_int(file, "n_val", H5T_STD_U64LE, &n_va) ||
          write_attr_strs(file, "sources", names, meta->n_sources) ||
          write_attr_strs(file, "sources_sha256", shas, meta->n_sources) ||
          write_attr_u64s(file, "sources_tokens", counts, meta->n_sources) ||
          write_split(file, "train", train, n_train, 0) || write_split(file, "val", val, n_val, 0) ||
          (train_mask && (write_split(file, "train_mask", train_mask, n_train, 1) ||
                          write_split(file, "val_mask", val_mask, n_val, 1)));
    free(names);
    free(shas);
    free(counts);
    bad = (H5Fclose(file) < 0) || bad;
    if (bad) {
        unlink(tmp);
        return gq_errf(GQ_EIO, "%s: writing failed (disk full?); no file written", path);
    }
    return gq_commit_file(tmp, path);
}

/* ---- reading ---- */

static int read_attr(hid_t loc, const char *name, hid_t mem_type, void *out) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    hid_t space = H5Aget_space(attr);
    int ok = H5Sget_simple_extent_type(space) == H5S_SCALAR && H5Aread(attr, mem_type, out) >= 0;
    H5Sclose(space);
    H5Aclose(attr);
    return ok ? 0 : -1;
}

static int read_attr_str(hid_t loc, const char *name, char *out, size_t out_size) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ftype = H5Aget_type(attr);
    int ok = H5Tget_class(ftype) == H5T_STRING && !H5Tis_variable_str(ftype) && H5Tget_size(ftype) < out_size;
    if (ok) {
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5Tget_size(ftype));
        memset(out, 0, out_size);
        ok = H5Aread(attr, mtype, out) >= 0;
        H5Tclose(mtype);
    }
    H5Tclose(ftype);
    H5Aclose(attr);
    return ok ? 0 : -1;
}

/* Variable-length string array attribute -> malloc'd array of malloc'd strings. */
static int read_attr_strs(hid_t loc, const char *name, int *n_out, char ***out) {
    *n_out = 0;
    *out = NULL;
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = H5Aget_space(attr);
    int ok = 1, n = 0;
    if (H5Sget_simple_extent_type(space) == H5S_SIMPLE) {
        hssize_t np = H5Sget_simple_extent_npoints(space);
        n = np > 0 && np < 1000000 ? (int)np : 0;
        ok = np == n;
    }
    char **vals = n ? calloc((size_t)n, sizeof *vals) : NULL;
    hid_t mtype = H5Tcopy(H5T_C_S1);
    H5Tset_size(mtype, H5T_VARIABLE);
    if (ok && n) ok = vals && H5Aread(attr, mtype, vals) >= 0;
    char **copy = n ? calloc((size_t)n, sizeof *copy) : NULL;
    for (int i = 0; ok && i < n; i++) copy[i] = strdup(vals[i] ? vals[i] : "");
    if (ok && n) H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, vals);
    free(vals);
    H5Tclose(mtype);
    H5Sclose(space);
    H5Aclose(attr);
    if (!ok) {
        free(copy);
        return -1;
    }
    *n_out = n;
    *out = copy;
    return 0;
}

static int open_split(gq_tokfile *tf, const char *name, hid_t *dset, uint64_t *n, int mask) {
    if (H5Lexists(tf->file, name, H5P_DEFAULT) <= 0)
        return gq_errf(GQ_EFORMAT, "%s: no dataset /%s", tf->path, name);
    *dset = H5Dopen2(tf->file, name, H5P_DEFAULT);
    if (*dset < 0) return gq_errf(GQ_EFORMAT, "%s: /%s is not a dataset", tf->path, name);
    hid_t type = H5Dget_type(*dset), space = H5Dget_space(*dset);
    int ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == (mask ? 1u : 2u) && H5Tget_sign(type) == H5T_SGN_NONE;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims = 0;
    if (rank == 1) H5Sget_simple_extent_dims(space, &dims, NULL);
    H5Tclose(type);
    H5Sclose(space);
    if (!ok)
        return gq_errf(GQ_EFORMAT, "%s: dataset /%s must hold %s", tf->path, name, mask ? "uint8 0/1 values" : "uint16 token ids");
    if (rank != 1) return gq_errf(GQ_ESHAPE, "%s: dataset /%s must be one-dimensional, has rank %d", tf->path, name, rank);
    *n = dims;
    return GQ_OK;
}

/* the loss masks: both or neither, each as long as its split, with the count of what it keeps */
static int open_masks(gq_tokfile *tf) {
    gq_tokfile_info *in = &tf->info;
    in->n_train_scored = in->n_train, in->n_val_scored = in->n_val;
    int ht = H5Lexists(tf->file, "train_mask", H5P_DEFAULT) > 0, hv = H5Lexists(tf->file, "val_mask", H5P_DEFAULT) > 0;
    if (!ht && !hv) return GQ_OK;
    if (ht != hv) return gq_errf(GQ_EFORMAT, "%s: /%s without /%s", tf->path, ht ? "train_mask" : "val_mask",
                                 ht ? "val_mask" : "train_mask");
    uint64_t nt = 0, nv = 0;
    GQ_TRY(open_split(tf, "train_mask", &tf->train_mask, &nt, 1));
    GQ_TRY(open_split(tf, "val_mask", &tf->val_mask, &nv, 1));
    if (nt != in->n_train || nv != in->n_val)
        return gq_errf(GQ_ESHAPE, "%s: the loss masks hold %llu / %llu values for %llu / %llu tokens", tf->path,
                       (unsigned long long)nt, (unsigned long long)nv, (unsigned long long)in->n_train,
                       (unsigned long long)in->n_val);
    /* the kept targets, counted when the file was written (the values are checked as they are read) */
    if (read_attr(tf->train_mask, "n_scored", H5T_NATIVE_UINT64, &in->n_train_scored) || in->n_train_scored > nt ||
        read_attr(tf->val_mask, "n_scored", H5T_NATIVE_UINT64, &in->n_val_scored) || in->n_val_scored > nv)
        return gq_errf(GQ_EFORMAT, "%s: a loss mask without a valid n_scored attribute", tf->path);
    in->has_mask = 1;
    return GQ_OK;
}

int gq_tokfile_open(const char *path, gq_tokfile **out) {
    *out = NULL;
    gq_h5_quiet();
    if (!gq_file_exists(path)) return gq_errf(GQ_ENOENT, "%s: no such file", path);
    FILE *f = fopen(path, "rb");
    uint8_t head[8] = {0};
    size_t got = f ? fread(head, 1, 8, f) : 0;
    if (f) fclose(f);
    if (!f) return gq_errf(GQ_EIO, "%s: cannot open for reading", path);
    if (!gq_is_hdf5(head, got)) return gq_errf(GQ_EFORMAT, "%s: not an HDF5 file (no HDF5 signature)", path);
    gq_tokfile *tf = calloc(1, sizeof *tf);
    if (!tf) return gq_errf(GQ_ENOMEM, "out of memory");
    tf->path = strdup(path);
    tf->train = tf->val = tf->train_mask = tf->val_mask = -1;
    tf->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = GQ_OK;
    char format[64] = "";
    gq_tokfile_info *in = &tf->info;
    if (tf->file < 0)
        rc = gq_errf(GQ_ETRUNC, "%s: HDF5 signature present but the file cannot be opened (truncated or damaged)", path);
    else if (read_attr_str(tf->file, "format", format, sizeof format) || strcmp(format, GQ_TOKFILE_FORMAT))
        rc = gq_errf(GQ_EFORMAT, "%s: not a gpt2q token file (root attribute format is not \"%s\")", path,
                     GQ_TOKFILE_FORMAT);
    else if (read_attr(tf->file, "format_version", H5T_NATIVE_INT, &in->format_version) ||
             in->format_version != GQ_TOKFILE_VERSION)
        rc = gq_errf(GQ_EFORMAT, "%s: token file format_version must be %d", path, GQ_TOKFILE_VERSION);
    else if (read_attr(tf->file, "vocab_size", H5T_NATIVE_INT, &in->vocab_size) || in->vocab_size <= 0 ||
             in->vocab_size > 65536)
        rc = gq_errf(GQ_EFORMAT, "%s: attribute vocab_size missing or not in [1, 65536]", path);
    else if (read_attr(tf->file, "eot_id", H5T_NATIVE_INT, &in->eot_id) || in->eot_id < 0 ||
             in->eot_id >= in->vocab_size)
        rc = gq_errf(GQ_EFORMAT, "%s: attribute eot_id missing or outside the vocabulary", path);
    if (!rc) {
        if (read_attr(tf->file, "val_fraction", H5T_NATIVE_DOUBLE, &in->val_fraction)) in->val_fraction = 0;
        if (read_attr(tf->file, "val_block", H5T_NATIVE_UINT64, &in->val_block)) in->val_block = 0;
        if (read_attr_str(tf->file, "tokenizer", in->tokenizer, sizeof in->tokenizer)) strcpy(in->tokenizer, "?");
        int n_sha = 0, n_tok = 0;
        read_attr_strs(tf->file, "sources", &in->n_sources, &in->source_names);
        read_attr_strs(tf->file, "sources_sha256", &n_sha, &in->source_sha256);
        in->source_tokens = calloc((size_t)in->n_sources + 1, sizeof *in->source_tokens);
        if (in->n_sources && H5Aexists(tf->file, "sources_tokens") > 0) {
            hid_t a = H5Aopen(tf->file, "sources_tokens", H5P_DEFAULT);
            hid_t sp = H5Aget_space(a);
            n_tok = (int)H5Sget_simple_extent_npoints(sp);
            if (n_tok == in->n_sources) H5Aread(a, H5T_NATIVE_UINT64, in->source_tokens);
            H5Sclose(sp);
            H5Aclose(a);
        }
        if (n_sha != in->n_sources || (in->n_sources && n_tok != in->n_sources)) {
            for (int i = 0; i < n_sha; i++) free(in->source_sha256[i]);
            free(in->source_sha256);
            in->source_sha256 = NULL;
            rc = gq_errf(GQ_EFORMAT, "%s: attributes sources, sources_sha256, sources_tokens differ in length", path);
        }
    }
    if (!rc) rc = open_split(tf, "train", &tf->train, &in->n_train, 0);
    if (!rc) rc = open_split(tf, "val", &tf->val, &in->n_val, 0);
    if (!rc) rc = open_masks(tf);
    if (rc) {
        gq_tokfile_close(tf);
        return rc;
    }
    *out = tf;
    return GQ_OK;
}

const gq_tokfile_info *gq_tokfile_get_info(const gq_tokfile *tf) { return &tf->info; }
const char *gq_tokfile_path(const gq_tokfile *tf) { return tf->path; }

static int split_handle(const gq_tokfile *tf, const char *split, hid_t *dset, uint64_t *n) {
    if (strcmp(split, "train") == 0) {
        *dset = tf->train;
        *n = tf->info.n_train;
    } else if (strcmp(split, "val") == 0) {
        *dset = tf->val;
        *n = tf->info.n_val;
    } else {
        return gq_errf(GQ_EINVAL, "%s: no split \"%s\" (use train or val)", tf->path, split);
    }
    return GQ_OK;
}

int gq_tokfile_split_len(const gq_tokfile *tf, const char *split, uint64_t *n) {
    hid_t d = -1;
    return split_handle(tf, split, &d, n);
}

static int read_range(gq_tokfile *tf, hid_t dset, hid_t mtype, const char *name, uint64_t offset, size_t n, void *dst) {
    if (!n) return GQ_OK;
    gq_h5_quiet();
    hsize_t start = offset, count = n;
    hid_t fspace = H5Dget_space(dset);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    herr_t st = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (st >= 0) st = H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, dst);
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (st < 0)
        return gq_errf(GQ_ETRUNC, "%s: cannot read /%s [%llu, %llu) (truncated or damaged file)", tf->path, name,
                       (unsigned long long)offset, (unsigned long long)(offset + n));
    return GQ_OK;
}

static int check_range(const gq_tokfile *tf, const char *split, uint64_t offset, size_t n, uint64_t len) {
    if (offset > len || n > len - offset)
        return gq_errf(GQ_ERANGE, "%s: read of /%s [%llu, %llu) past its %llu tokens", tf->path, split,
                       (unsigned long long)offset, (unsigned long long)(offset + n), (unsigned long long)len);
    return GQ_OK;
}

int gq_tokfile_read(gq_tokfile *tf, const char *split, uint64_t offset, size_t n, uint16_t *dst) {
    hid_t dset = -1;
    uint64_t len = 0;
    GQ_TRY(split_handle(tf, split, &dset, &len));
    GQ_TRY(check_range(tf, split, offset, n, len));
    GQ_TRY(read_range(tf, dset, H5T_NATIVE_UINT16, split, offset, n, dst));
    char where[4200];
    snprintf(where, sizeof where, "%s: /%s", tf->path, split);
    return gq_shard_check_ids(dst, n, tf->info.vocab_size, where, offset);
}

int gq_tokfile_read_mask(gq_tokfile *tf, const char *split, uint64_t offset, size_t n, uint8_t *dst) {
    hid_t dset = -1;
    uint64_t len = 0;
    GQ_TRY(split_handle(tf, split, &dset, &len));
    if (!tf->info.has_mask) return gq_errf(GQ_EINVAL, "%s: no loss mask", tf->path);
    GQ_TRY(check_range(tf, split, offset, n, len));
    const int val = strcmp(split, "val") == 0;
    GQ_TRY(read_range(tf, val ? tf->val_mask : tf->train_mask, H5T_NATIVE_UINT8, val ? "val_mask" : "train_mask", offset,
                      n, dst));
    for (size_t i = 0; i < n; i++)
        if (dst[i] > 1)
            return gq_errf(GQ_EFORMAT, "%s: /%s_mask holds %d at %llu (a mask is 0 or 1)", tf->path, split, dst[i],
                           (unsigned long long)(offset + i));
    return GQ_OK;
}

void gq_tokfile_close(gq_tokfile *tf) {
    if (!tf) return;
    if (tf->train >= 0) H5Dclose(tf->train);
    if (tf->val >= 0) H5Dclose(tf->val);
    if (tf->train_mask >= 0) H5Dclose(tf->train_mask);
    if (tf->val_mask >= 0) H5Dclose(tf->val_mask);
    if (tf->file >= 0) H5Fclose(tf->file);
    for (int i = 0; i < tf->info.n_sources; i++) {
        if (tf->info.source_names) free(tf->info.source_names[i]);
        if (tf->info.source_sha256) free(tf->info.source_sha256[i]);
    }
    free(tf->info.source_names);
    free(tf->info.source_sha256);
    free(tf->info.source_tokens);
    free(tf->path);
    free(tf);
}
