/* weights: see weights.h. */
#include "weights.h"

#include "gq_error.h"

#include <stdlib.h>

int gq_weights_load(const char *path, gq_gpt2 *m) {
    float *host = malloc(m->n_params * sizeof *host);
    if (!host) return gq_errf(GQ_ENOMEM, "out of memory");
    int rc = gq_weights_read(path, &m->cfg, host);
    if (!rc) rc = m->be->upload(m->params_mem, host, m->n_params * sizeof *host);
    free(host);
    return rc;
}
