/* qplan: see qplan.h. */
#define _POSIX_C_SOURCE 200809L
#include "qplan.h"

#include "gq_error.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *names[GQ_QF_COUNT] = {"f32", "int8", "q8_0", "int4", "int4a", "int3", "int2", "nf4", "fp4"};

const char *gq_qformat_name(gq_qformat f) { return f >= 0 && f < GQ_QF_COUNT ? names[f] : "?"; }

int gq_qformat_parse(const char *name, int group, gq_qspec *out) {
    char base[64];
    snprintf(base, sizeof base, "%s", name);
    int g = 0, dq = 0, mse = 0, lsq = 0, gptq = 0;
    char *dash = strchr(base, '-');
    for (char *suf = dash; suf;) { /* suffixes, in any order: -gN, -dq, -mse, -lsq, -gptq */
        *suf++ = '\0';
        char *next = strchr(suf, '-');
        if (next) *next = '\0';
        if (!strcmp(suf, "dq")) dq = 1;
        else if (!strcmp(suf, "mse")) mse = 1;
        else if (!strcmp(suf, "lsq")) lsq = 1;
        else if (!strcmp(suf, "gptq")) gptq = 1;
        else if (suf[0] == 'g' && atoi(suf + 1) > 0) g = atoi(suf + 1);
        else
            return gq_errf(GQ_EINVAL, "format '%s': unknown suffix '-%s' (use -gN for a group size, -dq for nf4, -mse for searched scales, -lsq for learned ones, -gptq for GPTQ)",
                           name, suf);
        suf = next;
    }
    for (int f = 1; f < GQ_QF_COUNT; f++) {
        if (strcmp(base, names[f])) continue;
        if (dq && f != GQ_QF_NF4) return gq_errf(GQ_EINVAL, "format '%s': -dq applies to nf4 only", name);
        if (mse && !gq_qsearchable((gq_qformat)f))
            return gq_errf(GQ_EINVAL, "format '%s': -mse applies to int4, int4a, int3, int2, nf4 and fp4 (int8's absmax scales are kept)", name);
        out->format = (gq_qformat)f;
        out->group = group > 0 ? group : g > 0 ? g : f == GQ_QF_Q8_0 ? 32 : 64;
        out->double_quant = dq;
        out->search = mse ? GQ_QSEARCH_MSE : 0;
        out->lsq = lsq;
        out->gptq = gptq;
        if (gptq && (mse || lsq))
            return gq_errf(GQ_EINVAL, "format '%s': -gptq takes the format's absmax rule (not -mse or -lsq)", name);
        if (lsq && !gq_lsq_applies((gq_qformat)f))
            return gq_errf(GQ_EINVAL, "format '%s': -lsq (learned scales) applies to int4, int3, int2, nf4 and fp4", name);
        if (lsq && dq) return gq_errf(GQ_EINVAL, "format '%s': -lsq does not take nf4's double quantization (-dq)", name);
        if (f == GQ_QF_Q8_0 && out->group != 32) return gq_errf(GQ_EINVAL, "format q8_0 has groups of 32");
        return GQ_OK;
    }
    return gq_errf(GQ_EINVAL, "unknown format '%s' (int8, q8_0, int4[-gN], int4a, int3, int2, nf4[-dq], fp4; -mse: searched scales; -lsq: learned ones; -gptq: GPTQ)", name);
}

static int add(gq_qplan *p, const char *pattern, const gq_qspec *s) {
    if (p->n == GQ_QPLAN_MAX) return gq_errf(GQ_EINVAL, "too many quantization rules (max %d)", GQ_QPLAN_MAX);
    /* layer range h.A-B.rest -> one rule per layer */
    int a, b, used = 0;
    if (sscanf(pattern, "h.%d-%d.%n", &a, &b, &used) == 2 && used > 0) {
        if (a > b || b >= p->n_layer || a < 0)
            return gq_errf(GQ_EINVAL, "layer range %d-%d outside the model's layers 0-%d", a, b, p->n_layer - 1);
        for (int l = a; l <= b; l++) {
            char one[160];
            snprintf(one, sizeof one, "h.%d.%s", l, pattern + used);
            int rc = add(p, one, s);
            if (rc) return rc;
        }
        return GQ_OK;
    }
    snprintf(p->pattern[p->n], sizeof p->pattern[p->n], "%s", !strcmp(pattern, "lm_head") ? "wte.weight" : pattern);
    p->spec[p->n++] = *s;
    return GQ_OK;
}

static int add_preset(gq_qplan *p, const char *name, const gq_qspec *s, int *known) {
    *known = 1;
    if (!strcmp(name, "all")) {
        int rc = add(p, "wte.weight", s);
        return rc ? rc : add(p, "h.*.weight", s);
    }
    if (!strcmp(name, "all-but-lm_head")) return add(p, "h.*.weight", s);
    if (!strcmp(name, "lm_head")) return add(p, "wte.weight", s);
    if (!strcmp(name, "qkv")) return add(p, "h.*.attn.c_attn.weight", s);
    if (!strcmp(name, "last4-attn")) {
        char r[64];
        int lo = p->n_layer >= 4 ? p->n_layer - 4 : 0;
        snprintf(r, sizeof r, "h.%d-%d.attn.*", lo, p->n_layer - 1);
        return add(p, r, s);
    }
    *known = 0;
    return GQ_OK;
}

int gq_qplan_build(gq_qplan *p, const char *format, const char *layers, int group, int n_layer) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    if (!format || !*format) return gq_errf(GQ_EINVAL, "no quantization format given");
    char *copy = strdup(format), *save = NULL;
    int rc = GQ_OK;
    if (strchr(format, '=')) { /* pattern=format rules */
        if (layers && *layers) rc = gq_errf(GQ_EINVAL, "per-pattern formats ('%s') and a layer selection cannot be combined", format);
        for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(tok, '=');
            gq_qspec s;
            if (!eq) {
                rc = gq_errf(GQ_EINVAL, "'%s': expected PATTERN=FORMAT", tok);
                break;
            }
            *eq = '\0';
            rc = gq_qformat_parse(eq + 1, group, &s);
            int known = 0;
            if (!rc) rc = add_preset(p, tok, &s, &known);
            if (!rc && !known) rc = add(p, tok, &s);
        }
    } else {
        gq_qspec s;
        rc = gq_qformat_parse(format, group, &s);
        const char *sel = layers && *layers ? layers : "all-but-lm_head";
        char *lcopy = strdup(sel), *lsave = NULL;
        for (char *tok = strtok_r(lcopy, ",", &lsave); tok && !rc; tok = strtok_r(NULL, ",", &lsave)) {
            int known = 0;
            rc = add_preset(p, tok, &s, &known);
            if (!rc && !known) rc = add(p, tok, &s);
        }
        free(lcopy);
    }
    free(copy);
    return rc;
}

static int matches(const char *pattern, const char *name) {
    char buf[300];
    if (!fnmatch(pattern, name, 0)) return 1;
    snprintf(buf, sizeof buf, "*.%s", pattern);
    if (!fnmatch(buf, name, 0)) return 1;
    snprintf(buf, sizeof buf, "%s.weight", pattern);
    if (!fnmatch(buf, name, 0)) return 1;
    snprintf(buf, sizeof buf, "*.%s.weight", pattern);
    return !fnmatch(buf, name, 0);
}

int gq_qplan_lookup(const gq_qplan *p, const char *name, int rows, int cols, gq_qspec *spec) {
    size_t len = strlen(name);
    if (rows < 2 || cols < 2 || len < 7 || strcmp(name + len - 7, ".weight") || !strcmp(name, "wpe.weight") ||
        strstr(name, "ln_"))
        return 0; /* vectors, layernorms and positions stay fp32 */
    for (int i = 0; i < p->n; i++)
        if (matches(p->pattern[i], name)) {
            *spec = p->spec[i];
            return 1;
        }
    return 0;
}
