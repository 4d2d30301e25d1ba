/* gq_file: whole-file reads with clear errors, and the temp-file + fsync + rename protocol
 * every output of the project goes through (no partial file ever replaces a good one). */
#ifndef GQ_FILE_H
#define GQ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Read a whole file ("-" = stdin) into a malloc'd buffer with one extra NUL byte.
 * Errors name the path. */
int gq_read_file(const char *path, uint8_t **data, size_t *len);

/* Temporary sibling of `final_path` in the same directory: "<final>.tmp.<pid>". */
void gq_temp_path(const char *final_path, char *out, size_t out_size);

/* fsync `tmp_path`, rename it over `final_path`, fsync the directory. On failure the
 * temp file is removed and the final path is untouched. */
int gq_commit_file(const char *tmp_path, const char *final_path);

/* Write len bytes to `path` through a temp file and gq_commit_file: the whole file or, on any
 * failure (disk full), nothing (the temp file removed, an older file at `path` untouched).
 * Errors name `path`. */
int gq_write_file(const char *path, const void *data, size_t len);
/* Its first half: len bytes into `tmp` (gq_temp_path of `path`), not yet renamed; on failure the
 * temp file is removed. For files that go into place together (gq_commit_file each, at the end). */
int gq_write_temp(const char *path, const char *tmp, const void *data, size_t len);

/* An SVG chart at `svg` drawn by gnuplot from `script` (gnuplot commands after the terminal and
 * output lines, e.g. "plot 'loss.dat' ..."; double quotes are not allowed in it), through a temp
 * file that is committed only when gnuplot succeeded and the SVG is whole (ends in </svg>).
 * GQ_EUNSUPPORTED: gnuplot failed or is missing (nothing written); GQ_EIO: the SVG could not be
 * written whole (disk full); an older file at `svg` stays as it was either way. */
int gq_gnuplot_svg(const char *svg, int width, int height, const char *script);

/* Directory holding the running executable (no trailing slash), or "" if unknown. */
void gq_exe_dir(char *out, size_t out_size);

int gq_file_exists(const char *path);

/* mkdir -p: create `path` and missing parents (0755). Errors name the path. */
int gq_mkdir_p(const char *path);

#endif
