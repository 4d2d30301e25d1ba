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

/* Directory holding the running executable (no trailing slash), or "" if unknown. */
void gq_exe_dir(char *out, size_t out_size);

int gq_file_exists(const char *path);

/* mkdir -p: create `path` and missing parents (0755). Errors name the path. */
int gq_mkdir_p(const char *path);

#endif
