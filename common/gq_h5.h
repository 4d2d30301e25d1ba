/* gq_h5: what every HDF5 user of the project (ckpt/h5io.c, data/tokfile.c) sets up; include it
 * after <hdf5.h>. */
#ifndef GQ_H5_H
#define GQ_H5_H

#include <hdf5.h>

/* HDF5's own error stack stays quiet: our callers report each failure in one line. */
static inline void gq_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* No HDF5 clean-up at exit (set before main, before any HDF5 call). Every file is closed
 * explicitly; the one HDF5 still holds at exit is one whose close failed because a write failed
 * (disk full), and HDF5 1.10's exit-time close of that file crashes (SIGSEGV in H5F__close_cb)
 * after our error line, turning exit 1 into a segfault. */
__attribute__((constructor)) static void gq_h5_no_atexit(void) { H5dont_atexit(); }

#endif
