/* h5io: small typed HDF5 reader/writer used by checkpoints and exports. The writer goes to a
 * temp file and renames it into place on commit (fsync'd); after the first failure every call
 * is a no-op and commit reports that failure, so callers check once. The reader validates
 * types and shapes and names the file and the object in every error. */
#ifndef GQ_H5IO_H
#define GQ_H5IO_H

#include <stddef.h>
#include <stdint.h>

typedef struct gq_h5w gq_h5w;

int gq_h5w_begin(gq_h5w **w, const char *final_path);
/* Create the groups of `path` that do not exist yet ("/optim/m"). */
int gq_h5w_group(gq_h5w *w, const char *path);
int gq_h5w_attr_i64(gq_h5w *w, const char *obj, const char *name, int64_t v);
int gq_h5w_attr_u64(gq_h5w *w, const char *obj, const char *name, uint64_t v);
int gq_h5w_attr_f64(gq_h5w *w, const char *obj, const char *name, double v);
int gq_h5w_attr_str(gq_h5w *w, const char *obj, const char *name, const char *v);
/* Dataset of float32 / uint8 with the given dims (creating parent groups). */
int gq_h5w_f32(gq_h5w *w, const char *path, const float *data, int ndim, const size_t *dims);
int gq_h5w_u8(gq_h5w *w, const char *path, const uint8_t *data, int ndim, const size_t *dims);
int gq_h5w_u16(gq_h5w *w, const char *path, const uint16_t *data, int ndim, const size_t *dims);
int gq_h5w_i8(gq_h5w *w, const char *path, const int8_t *data, int ndim, const size_t *dims);
/* Close, fsync and rename into place. Frees w. */
int gq_h5w_commit(gq_h5w *w);
/* Close and delete the temp file. Frees w. */
void gq_h5w_abort(gq_h5w *w);

typedef struct gq_h5r gq_h5r;

int gq_h5r_open(gq_h5r **r, const char *path);
void gq_h5r_close(gq_h5r *r);
const char *gq_h5r_path(const gq_h5r *r);
int gq_h5r_exists(gq_h5r *r, const char *path);
int gq_h5r_attr_i64(gq_h5r *r, const char *obj, const char *name, int64_t *v);
int gq_h5r_attr_u64(gq_h5r *r, const char *obj, const char *name, uint64_t *v);
int gq_h5r_attr_f64(gq_h5r *r, const char *obj, const char *name, double *v);
int gq_h5r_attr_str(gq_h5r *r, const char *obj, const char *name, char *buf, size_t size);
/* Names of the datasets directly in `group`, in name order (malloc'd; free each and the array). */
int gq_h5r_list(gq_h5r *r, const char *group, char ***names, int *n);
/* Dims of a dataset (up to 4). */
int gq_h5r_dims(gq_h5r *r, const char *path, int *ndim, size_t *dims);
/* Read a float32 dataset whose shape must equal dims exactly. */
int gq_h5r_f32(gq_h5r *r, const char *path, float *dst, int ndim, const size_t *dims);
int gq_h5r_u8(gq_h5r *r, const char *path, uint8_t *dst, int ndim, const size_t *dims);
int gq_h5r_u16(gq_h5r *r, const char *path, uint16_t *dst, int ndim, const size_t *dims);
int gq_h5r_i8(gq_h5r *r, const char *path, int8_t *dst, int ndim, const size_t *dims);

#endif
