/* gpt2q-infer: run a model on the CPU with packed quantized kernels (infer/model.h).
 *   eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--seq T] [--json]
 *       mean loss and perplexity over non-overlapping full-context windows (stride = T: every
 *       target is scored once, with between 0 and T-1 tokens of context; T = block_size).
 *   generate MODEL --prompt TEXT [-n 50] [--temperature 0] [--top-k 0] [--top-p 1] [--seed 1]
 *       greedy unless a temperature is given; streams tokens; stops at <|endoftext|>.
 *   answer MODEL --data FILE.jsonl --prompt-key KEY [--ref-key KEY] [-n 32] [--out F] [--json]
 *       greedy answers to a JSON Lines file's prompts (each after <|endoftext|>, as prepare
 *       --jsonl-prompt lays them out); with references, the exact-match rate.
 *   bench MODEL [-n 50] [--prompt TEXT] [--prefill 128] [--json]
 *       load time, memory (weights, KV cache, buffers, peak RSS), prefill and decode tokens/s,
 *       the time to generate n tokens, and decode bandwidth as a share of the measured read
 *       bandwidth.
 *   compare MODEL... --data tokens.h5 [--names a,b,..] [--out DIR] [--max-tokens N]
 *       eval + bench of each model (each in a child process, so that peak RSS is its own):
 *       DIR/results.json, DIR/results.md and DIR/chart.svg. A gpt2q-train run folder stands for
 *       its newest checkpoint (the float reference) and its model-<format>.h5 exports.
 *   chart DIR
 *       DIR/chart.svg again from compare's DIR/chart.dat (a run where gnuplot was missing). */
#define _POSIX_C_SOURCE 200809L
#include "bpe.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gpt2_weights.h"
#include "gq_progress.h"
#include "loader.h"
#include "model.h"
#include "model_cuda.h"
#include "prepare.h"
#include "qmatmul.h"
#include "sample.h"
#include "simd.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROG "gpt2q-infer"
#define DEFAULT_PROMPT "Once upon a time"

static int fail(int rc) {
    fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
    return 1;
}

static int g_kv_f16 = 1;         /* --kv */
static int g_device = GQ_IM_CPU; /* --device */
static const char *g_device_name = "cpu";
static int g_dev_half = -1; /* --gpu-weights: -1 auto, 0 f32, 1 f16, 2 bf16 */
static const char *const g_half_names[] = {"f32", "f16", "bf16"};
static const char *half_name(int h) { return h < 0 ? "auto" : g_half_names[h]; }
static int g_act8 = 0; /* --act int8 */

/* Load a model with the global flags (--kv, --device, --gpu-weights) applied before its first plan.
 * --gpu-weights auto: a quantized export's unquantized matrices (the position embedding, and the
 * linears a selective export left in float) in fp16, as the packed formats' own scales are; a
 * float model's in fp32 (the fp32 baseline stays fp32). */
static int load_model(gq_im **m, const char *path) {
    char file[4096];
    int from_run = 0, rc = gq_weights_resolve(path, file, sizeof file, &from_run); /* (a folder: its model) */
    if (rc) return rc;
    if (from_run) fprintf(stderr, PROG ": %s: its newest checkpoint, %s\n", path, file);
    rc = gq_im_load(m, file);
    if (!rc)
        (*m)->kv_f16 = g_kv_f16, (*m)->device = g_device, (*m)->act8 = g_act8,
        (*m)->dev_half = g_dev_half >= 0 ? g_dev_half : (*m)->quantized ? 1 : 0;
    return rc;
}

/* argv[i] was not taken: an option with a value out of its range, one this command does not take,
 * or a stray argument */
static int usage_error(const char *cmd, char **argv, int i, int argc) {
    const char *a = argv[i];
    if (a[0] == '-' && i + 1 < argc && strncmp(argv[i + 1], "--", 2))
        fprintf(stderr, PROG ": %s: '%s %s': not a value %s takes here, or not an option of %s (see " PROG
                " --help)\n", cmd, a, argv[i + 1], a, cmd);
    else
        fprintf(stderr, PROG ": %s: unexpected or incomplete argument '%s' (see " PROG " --help)\n", cmd, a);
    return 2;
}

/* numeric option values: the whole string must parse */
static int num_i(const char *s, long *v) {
    char *e;
    *v = strtol(s, &e, 10);
    return *s && !*e;
}
static int num_f(const char *s, double *v) {
    char *e;
    *v = strtod(s, &e);
    return *s && !*e && isfinite(*v);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* ---- eval ---- */

static int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *split = "val";
    long max_tokens = 0, B = 0, T = 0;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--data") && more)
            data = argv[++i];
        else if (!strcmp(a, "--split") && more)
            split = argv[++i];
        else if (!strcmp(a, "--max-tokens") && more && num_i(argv[i + 1], &max_tokens))
            i++;
        else if (!strcmp(a, "--batch") && more && num_i(argv[i + 1], &B) && B > 0)
            i++;
        else if (!strcmp(a, "--seq") && more && num_i(argv[i + 1], &T) && T > 0)
            i++;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (a[0] != '-' && !model)
            model = a;
        else
            return usage_error("eval", argv, i, argc);
    }
    if (!model || !data) {
        fprintf(stderr, "usage: " PROG
                        " eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--seq T] [--json]\n");
        return 2;
    }
    gq_im *m = NULL;
    gq_loader *L = NULL;
    int rc = load_model(&m, model);
    if (!rc && !T) T = m->cfg.block_size;
    if (!rc && T > m->cfg.block_size)
        rc = gq_errf(GQ_EINVAL, "--seq %ld exceeds the model's block_size %d", T, m->cfg.block_size);
    if (!rc && T < GQ_QMM_PANEL_MIN)
        rc = gq_errf(GQ_EINVAL, "--seq %ld: eval needs windows of at least %d tokens", T, GQ_QMM_PANEL_MIN);
    if (!rc && !B) B = T >= 512 ? 1 : 1024 / T; /* about 1024 tokens per forward */
    if (!rc && g_device == GQ_IM_CUDA) B = 1;   /* the GPU runs one window at a time */
    gq_loader_config lc = {(int)B, (int)T, 0, 0, split, 0};
    if (!rc) rc = gq_loader_open(&L, &data, 1, &lc);
    if (!rc && gq_loader_vocab_size(L) > m->cfg.vocab_size)
        rc = gq_errf(GQ_EVOCAB, "%s: vocabulary of %d tokens, the model has %d", data, gq_loader_vocab_size(L),
                     m->cfg.vocab_size);
    uint64_t windows = rc ? 0 : gq_loader_windows(L);
    if (!rc && windows == 0)
        rc = gq_errf(GQ_EINVAL, "%s: the %s split has no window of %ld + 1 tokens", data, split, T);
    if (!rc && max_tokens > 0 && (uint64_t)(max_tokens / T) < windows)
        windows = (uint64_t)(max_tokens / T) ? (uint64_t)(max_tokens / T) : 1;
    if (!rc && (uint64_t)B > windows) B = (long)windows;
    if (!rc) rc = gq_im_plan(m, (int)B, (int)T, (int)T);
    if (rc) {
        gq_loader_close(L);
        gq_im_free(m);
        return fail(rc);
    }
    /* the loader hands out lc.B windows per call (B may have shrunk to the windows wanted since it
     * was opened): read whole batches into buffers of that size, score only the windows wanted */
    int32_t *in = malloc(sizeof(int32_t) * lc.B * T), *tg = malloc(sizeof(int32_t) * lc.B * T);
    double sum = 0, t0 = gq_now();
    long scored = 0;
    gq_progress prog;
    gq_progress_init(&prog, stderr);
    for (uint64_t w = 0; w < windows && !rc; w += (uint64_t)B) {
        int Bn = windows - w < (uint64_t)B ? (int)(windows - w) : (int)B;
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_im_forward(m, in, Bn, (int)T, 0, tg, &sum, &scored);
        gq_progress_update(&prog, "eval: tokens", (double)(w + Bn) * T, (double)windows * T, "tok");
    }
    gq_progress_finish(&prog);
    double secs = gq_now() - t0, loss = scored ? sum / scored : NAN;
    if (!rc && m->trained_act8 && !g_act8)
        fprintf(stderr, PROG ": note: %s was trained with int8 activations (--qat-act int8); --act int8 scores it as "
                        "trained (this loss multiplies float activations)\n",
                model);
    if (!rc && !(loss == loss)) rc = gq_errf(GQ_ENAN, "%s: the loss is not finite", model);
    if (!rc) {
        if (json)
            printf("{\"model\": \"%s\", \"kind\": \"%s\", \"formats\": \"%s\", \"act\": \"%s\", \"data\": \"%s\", "
                   "\"split\": \"%s\", \"loss\": %.6f, \"perplexity\": %.4f, \"tokens\": %ld, \"seq\": %ld, "
                   "\"stride\": %ld, \"weight_bytes\": %zu, \"seconds\": %.3f, \"tokens_per_s\": %.1f}\n",
                   model, m->kind, m->formats, g_act8 ? "int8" : "f32", data, split, loss, exp(loss), scored, T, T,
                   m->arena_bytes, secs, scored / secs);
        else
            printf("%s (%s%s): %s split of %s: loss %.4f, perplexity %.2f over %ld tokens (windows of %ld, stride %ld) "
                   "in %.1f s (%.0f tok/s)\n",
                   model, m->kind, g_act8 && m->quantized ? ", int8 activations" : "", split, data, loss, exp(loss),
                   scored, T, T, secs, scored / secs);
    }
    free(in), free(tg);
    gq_loader_close(L);
    gq_im_free(m);
    return rc ? fail(rc) : 0;
}

/* ---- generate / bench shared: prompt handling ---- */

typedef struct {
    gq_ids ids;
    int n_new;
} prompt_plan;

/* Tokenize the prompt and fit prompt + n_new into the context: an empty prompt starts from
 * <|endoftext|> (GPT-2's document start); a long one keeps its last tokens, with a message. */
static int prepare_prompt(const gq_bpe *bpe, const gq_im *m, const char *text, long n_new, prompt_plan *p) {
    memset(p, 0, sizeof *p);
    int rc = gq_bpe_encode(bpe, (const uint8_t *)text, strlen(text), GQ_BPE_ALLOW_SPECIAL, &p->ids);
    if (rc) return rc;
    const int T = m->cfg.block_size;
    if (p->ids.n == 0) {
        fprintf(stderr, PROG ": the prompt is empty: starting from <|endoftext|>\n");
        gq_ids_push(&p->ids, gq_bpe_eot(bpe));
    }
    if (n_new >= T) {
        fprintf(stderr, PROG ": -n %ld does not fit the context of %d: generating %d tokens\n", n_new, T, T - 1);
        n_new = T - 1;
    }
    if ((long)p->ids.n + n_new > T) {
        size_t keep = (size_t)(T - n_new), drop = p->ids.n - keep;
        fprintf(stderr, PROG ": the prompt has %zu tokens; with %ld new ones the context of %d keeps its last %zu\n",
                p->ids.n, n_new, T, keep);
        memmove(p->ids.ids, p->ids.ids + drop, keep * sizeof *p->ids.ids);
        p->ids.n = keep;
    }
    p->n_new = (int)n_new;
    return GQ_OK;
}

typedef struct {
    double prefill_s, decode_s;
    int n_prompt, n_generated;
    int hit_eot;
    int host_picks; /* GPU: sampled picks the device handed back (more than 2048 candidates) */
} gen_stats;

/* Prefill the prompt in one pass, then decode up to n_new tokens; out (may be NULL) receives
 * each token's bytes as soon as it exists, kept (may be NULL) the tokens (not the stopping
 * <|endoftext|>). */
static int run_generate(gq_im *m, const gq_bpe *bpe, const prompt_plan *p, gq_sampler *s, int stop_at_eot, FILE *out,
                        gen_stats *st, gq_ids *kept) {
    memset(st, 0, sizeof *st);
    const int n = (int)p->ids.n, V = m->cfg.vocab_size, eot = gq_bpe_eot(bpe);
    st->n_prompt = n;
    /* on the GPU the device picks each token (greedy or sampled from this sampler's stream of
     * draws, the same rule) and only the pick comes back */
    const int gpu = m->device == GQ_IM_CUDA;
    if (gpu) {
        m->temperature = s->temperature, m->top_k = s->top_k, m->top_p = s->top_p, m->skip_logits = 1;
        m->sample_seed = s->seed, m->sample_draw = s->draws;
    }
    double t0 = gq_now();
    int rc = gq_im_forward(m, p->ids.ids, 1, n, 0, NULL, NULL, NULL);
    st->prefill_s = gq_now() - t0;
    t0 = gq_now();
    for (int k = 0; k < p->n_new && !rc; k++) {
        /* on the GPU the device took the sampler's next draw: take it here too (the host's pick
         * when the device left it, and the next forward's index) */
        const float u = gpu && s->temperature > 0 ? gq_sampler_draw(s) : 0.0f;
        int32_t tok = !gpu                 ? gq_sample(s, gq_im_logits(m, 0), V)
                      : m->next_token >= 0 ? m->next_token
                                           : gq_sample_u(s, gq_im_logits(m, 0), V, u);
        st->host_picks += gpu && m->next_token < 0;
        if (gpu) m->sample_draw = s->draws;
        st->n_generated++;
        if (tok == eot && stop_at_eot) {
            st->hit_eot = 1;
            break;
        }
        if (kept && (rc = gq_ids_push(kept, tok))) break;
        if (out) {
            size_t len;
            const uint8_t *b = gq_bpe_token_bytes(bpe, tok, &len);
            fwrite(b, 1, len, out);
            fflush(out);
        }
        if (k + 1 < p->n_new) rc = gq_im_forward(m, &tok, 1, 1, n + k, NULL, NULL, NULL);
    }
    st->decode_s = gq_now() - t0;
    m->skip_logits = 0;
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *vocab = NULL;
    long n_new = 50, top_k = 0, seed = 1;
    double temperature = 0, top_p = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--prompt") && more)
            prompt = argv[++i];
        else if (!strcmp(a, "--vocab") && more)
            vocab = argv[++i];
        else if ((!strcmp(a, "-n") || !strcmp(a, "--tokens")) && more && num_i(argv[i + 1], &n_new) && n_new >= 0)
            i++;
        else if (!strcmp(a, "--temperature") && more && num_f(argv[i + 1], &temperature) && temperature >= 0)
            i++;
        else if (!strcmp(a, "--top-k") && more && num_i(argv[i + 1], &top_k) && top_k >= 0)
            i++;
        else if (!strcmp(a, "--top-p") && more && num_f(argv[i + 1], &top_p) && top_p > 0 && top_p <= 1)
            i++;
        else if (!strcmp(a, "--seed") && more && num_i(argv[i + 1], &seed))
            i++;
        else if (a[0] != '-' && !model)
            model = a;
        else
            return usage_error("generate", argv, i, argc);
    }
    if (!model || !prompt) {
        fprintf(stderr, "usage: " PROG
                        " generate MODEL --prompt TEXT [-n 50] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n");
        return 2;
    }
    gq_bpe *bpe = NULL;
    gq_im *m = NULL;
    prompt_plan p = {0};
    gq_sampler s = {0};
    gen_stats st;
    int rc = gq_bpe_load_dir(&bpe, vocab);
    if (!rc) rc = load_model(&m, model);
    if (!rc) rc = prepare_prompt(bpe, m, prompt, n_new, &p);
    if (!rc && p.n_new == 0) {
        fputs(prompt, stdout);
        fputc('\n', stdout);
        fprintf(stderr, PROG ": -n 0: nothing to generate\n");
    } else if (!rc) {
        rc = gq_im_plan(m, 1, (int)p.ids.n + p.n_new, (int)p.ids.n);
        if (!rc)
            rc = gq_sampler_init(&s, m->cfg.vocab_size, (float)temperature, (int)top_k, (float)top_p, (uint64_t)seed);
        if (!rc) {
            gq_bytes pb = {0};
            gq_bpe_decode(bpe, p.ids.ids, p.ids.n, &pb);
            fwrite(pb.data, 1, pb.n, stdout);
            gq_bytes_free(&pb);
            rc = run_generate(m, bpe, &p, &s, 1, stdout, &st, NULL);
            fputc('\n', stdout);
        }
        if (!rc)
            fprintf(stderr, PROG ": %s: %d prompt tokens in %.3f s, %d generated in %.3f s (%.1f tok/s)%s\n", m->kind,
                    st.n_prompt, st.prefill_s, st.n_generated, st.decode_s,
                    st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0,
                    st.hit_eot ? ", stopped at <|endoftext|>" : "");
        if (!rc && st.host_picks)
            fprintf(stderr, PROG ": %d of %d picks had more than 2048 candidates (top-k / top-p keep too many): the "
                            "GPU handed them to the host, which downloads the logits\n",
                    st.host_picks, st.n_generated);
    }
    gq_sampler_free(&s);
    gq_ids_free(&p.ids);
    gq_im_free(m);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* ---- answer: greedy completions of a JSON Lines file's prompts, exact match against references ---- */

/* s without the white space at either end, as [*b, *b + *n) */
static void trim(const char *s, const char **b, size_t *n) {
    size_t len = strlen(s), i = 0;
    while (i < len && strchr(" \t\r\n", s[i])) i++;
    while (len > i && strchr(" \t\r\n", s[len - 1])) len--;
    *b = s + i, *n = len - i;
}

static int cmd_answer(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *pkey = NULL, *rkey = NULL, *out = NULL, *vocab = NULL;
    long n_new = 0, max_lines = 0; /* n_new 0: 32, or half the context where that is less */
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--data") && more)
            data = argv[++i];
        else if (!strcmp(a, "--prompt-key") && more && argv[i + 1][0])
            pkey = argv[++i];
        else if (!strcmp(a, "--ref-key") && more && argv[i + 1][0])
            rkey = argv[++i];
        else if (!strcmp(a, "--out") && more)
            out = argv[++i];
        else if (!strcmp(a, "--vocab") && more)
            vocab = argv[++i];
        else if ((!strcmp(a, "-n") || !strcmp(a, "--tokens")) && more && num_i(argv[i + 1], &n_new) && n_new >= 1)
            i++;
        else if (!strcmp(a, "--max-lines") && more && num_i(argv[i + 1], &max_lines) && max_lines >= 1)
            i++;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (a[0] != '-' && !model)
            model = a;
        else
            return usage_error("answer", argv, i, argc);
    }
    if (!model || !data || !pkey) {
        fprintf(stderr, "usage: " PROG " answer MODEL --data FILE.jsonl --prompt-key KEY [--ref-key KEY] [-n 32] "
                        "[--max-lines N] [--out answers.jsonl] [--json]\n"
                        "  -n: most tokens an answer (default 32, or half the model's context where that is less)\n");
        return 2;
    }
    uint8_t *text = NULL;
    size_t len = 0;
    gq_bpe *bpe = NULL;
    gq_im *m = NULL;
    gq_sampler s = {0};
    int rc = gq_read_file(data, &text, &len);
    if (!rc) rc = gq_bpe_load_dir(&bpe, vocab);
    if (!rc) rc = load_model(&m, model);
    const int T = m ? m->cfg.block_size : 0;
    if (!rc && !n_new) n_new = T / 2 < 32 ? T / 2 : 32;
    if (!rc && n_new >= T) rc = gq_errf(GQ_EINVAL, "-n %ld does not fit the model's context of %d", n_new, T);
    if (!rc) rc = gq_im_plan(m, 1, T, T);
    if (!rc) rc = gq_sampler_init(&s, m->cfg.vocab_size, 0.0f, 0, 1.0f, 1); /* greedy */
    gq_bytes lines = {0}; /* the --out file's JSON lines */
    long line = 0, answered = 0, matched = 0, truncated = 0, generated = 0, hit_eot = 0;
    double t0 = gq_now(), decode_s = 0;
    gq_progress prog;
    gq_progress_init(&prog, stderr);
    for (size_t pos = 0; !rc && pos < len && !(max_lines && answered >= max_lines);) {
        const uint8_t *nl = memchr(text + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - text) : len, start = pos;
        line++;
        pos = nl ? end + 1 : len;
        int blank;
        cJSON *j = gq_jsonl_value(text + start, end - start, line == 1, &blank);
        if (blank) continue;
        const cJSON *pf = j ? cJSON_GetObjectItemCaseSensitive(j, pkey) : NULL;
        const cJSON *rf = j && rkey ? cJSON_GetObjectItemCaseSensitive(j, rkey) : NULL;
        if (!j || !cJSON_IsString(pf) || (rkey && !cJSON_IsString(rf))) {
            rc = gq_errf(GQ_EFORMAT, !j ? "%s:%ld: not a JSON value" : "%s:%ld: no string field \"%s\"", data, line,
                         !j || !cJSON_IsString(pf) ? pkey : rkey);
            cJSON_Delete(j);
            break;
        }
        /* the layout gpt2q-data prepare --jsonl-prompt trains on: <|endoftext|>, the prompt's ids */
        prompt_plan p = {0};
        gq_ids got = {0};
        gq_bytes outb = {0};
        gen_stats st;
        rc = gq_ids_push(&p.ids, gq_bpe_eot(bpe));
        const char *pt = pf->valuestring;
        if (!rc) rc = gq_bpe_encode(bpe, (const uint8_t *)pt, strlen(pt), 0, &p.ids);
        if (!rc && (long)p.ids.n + n_new > T) { /* keep the prompt's last tokens */
            size_t keep = (size_t)(T - n_new);
            memmove(p.ids.ids, p.ids.ids + (p.ids.n - keep), keep * sizeof *p.ids.ids);
            p.ids.n = keep;
            truncated++;
        }
        p.n_new = (int)n_new;
        if (!rc) rc = run_generate(m, bpe, &p, &s, 1, NULL, &st, &got);
        if (!rc) rc = gq_bpe_decode(bpe, got.ids, got.n, &outb);
        if (!rc) rc = gq_bytes_append(&outb, "", 1); /* a C string */
        if (!rc) {
            answered++, generated += st.n_generated, hit_eot += st.hit_eot, decode_s += st.prefill_s + st.decode_s;
            int match = -1;
            if (rkey) {
                const char *a, *b;
                size_t na, nb;
                trim((const char *)outb.data, &a, &na);
                trim(rf->valuestring, &b, &nb);
                match = na == nb && !memcmp(a, b, na);
                matched += match;
            }
            if (out) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "line", (double)line);
                cJSON_AddStringToObject(o, "output", (const char *)outb.data);
                if (rkey) cJSON_AddBoolToObject(o, "match", match);
                cJSON_AddNumberToObject(o, "prompt_tokens", st.n_prompt);
                cJSON_AddNumberToObject(o, "tokens", st.n_generated);
                cJSON_AddBoolToObject(o, "stopped", st.hit_eot);
                char *js = cJSON_PrintUnformatted(o);
                rc = js ? gq_bytes_append(&lines, js, strlen(js)) : gq_errf(GQ_ENOMEM, "out of memory");
                if (!rc) rc = gq_bytes_append(&lines, "\n", 1);
                free(js);
                cJSON_Delete(o);
            }
        }
        gq_ids_free(&p.ids);
        gq_ids_free(&got);
        gq_bytes_free(&outb);
        cJSON_Delete(j);
        gq_progress_update(&prog, "answer: bytes", (double)pos, (double)len, "B");
    }
    gq_progress_finish(&prog);
    const double secs = gq_now() - t0;
    if (!rc && !answered) rc = gq_errf(GQ_EINVAL, "%s: no prompt (every line blank)", data);
    if (!rc && out) rc = gq_write_file(out, lines.data ? (const void *)lines.data : "", lines.n);
    if (!rc) {
        const double rate = rkey ? (double)matched / (double)answered : NAN;
        if (json) {
            printf("{\"model\": \"%s\", \"kind\": \"%s\", \"data\": \"%s\", \"prompts\": %ld, \"tokens\": %ld, "
                   "\"stopped\": %ld, \"truncated\": %ld, \"seconds\": %.3f, \"tokens_per_s\": %.1f",
                   model, m->kind, data, answered, generated, hit_eot, truncated, secs,
                   decode_s > 0 ? generated / decode_s : 0.0);
            if (rkey) printf(", \"matched\": %ld, \"exact_match\": %.6f", matched, rate);
            printf("}\n");
        } else {
            printf("%s (%s): %ld prompts of %s answered, %ld tokens (%ld stopped at <|endoftext|>) in %.1f s "
                   "(%.0f tok/s)\n",
                   model, m->kind, answered, data, generated, hit_eot, secs, decode_s > 0 ? generated / decode_s : 0.0);
            if (rkey) printf("exact match: %ld of %ld (%.2f %%) against \"%s\"\n", matched, answered, 100 * rate, rkey);
        }
        if (truncated)
            fprintf(stderr, PROG ": note: %ld prompts kept only their last %ld tokens (the context is %d)\n", truncated,
                    (long)(T - n_new), T);
        if (out) fprintf(stderr, PROG ": answers: %s\n", out);
    }
    gq_bytes_free(&lines);
    gq_sampler_free(&s);
    gq_im_free(m);
    gq_bpe_free(bpe);
    free(text);
    return rc ? fail(rc) : 0;
}

/* ---- logits (for comparisons with other engines) ---- */

static int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *vocab = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
            prompt = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            vocab = argv[++i];
        else if (argv[i][0] != '-' && !model)
            model = argv[i];
        else
            return usage_error("logits", argv, i, argc);
    }
    if (!model || !prompt) {
        fprintf(stderr, "usage: " PROG
                        " logits MODEL --prompt TEXT   (JSON: the prompt's ids and the last position's logits)\n");
        return 2;
    }
    gq_bpe *bpe = NULL;
    gq_im *m = NULL;
    prompt_plan p = {0};
    int rc = gq_bpe_load_dir(&bpe, vocab);
    if (!rc) rc = load_model(&m, model);
    if (!rc) rc = prepare_prompt(bpe, m, prompt, 0, &p);
    if (!rc) rc = gq_im_plan(m, 1, (int)p.ids.n, (int)p.ids.n);
    if (!rc) rc = gq_im_forward(m, p.ids.ids, 1, (int)p.ids.n, 0, NULL, NULL, NULL);
    if (!rc) {
        printf("{\"model\": \"%s\", \"tokens\": [", model);
        for (size_t i = 0; i < p.ids.n; i++)
            printf("%s%d", i ? ", " : "", p.ids.ids[i]);
        printf("], \"logits\": [");
        const float *l = gq_im_logits(m, 0);
        for (int v = 0; v < m->cfg.vocab_size; v++)
            printf("%s%.6g", v ? ", " : "", l[v]);
        printf("]}\n");
    }
    gq_ids_free(&p.ids);
    gq_im_free(m);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* ---- bench ---- */

/* Streaming read bandwidth of this machine with all threads (best of several passes over a
 * buffer much larger than the caches), in bytes/s. Each thread reads its slice with the SIMD
 * variant the kernels run (simd.h's dot product of the slice with itself: the second operand
 * comes from L1): the plain 64-bit XOR loop of the baseline build read ~15 GB/s where the
 * AVX-512 decode kernels streamed ~18 on a 2-core Xeon (bandwidth shares of 115-140 %). */
static double read_bandwidth(void) {
    const size_t n = (size_t)256 << 20 >> 2;
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 1023);
    const gq_simd_ops *simd = gq_simd();
    double best = 0, sink = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = gq_now(), acc = 0;
#pragma omp parallel reduction(+ : acc)
        {
            const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
            const size_t a = n / nt * t, b = t + 1 == nt ? n : n / nt * (t + 1);
            acc += simd->dot(buf + a, buf + a, (int)(b - a));
        }
        double bw = (double)n * sizeof *buf / (gq_now() - t0);
        sink += acc;
        best = bw > best ? bw : best;
    }
    free(buf);
    return sink == 42 ? best * (1 + 1e-12) : best; /* the sums are used, so the reads stay */
}

static int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *prompt = DEFAULT_PROMPT, *vocab = NULL;
    long n_new = 50, n_prefill = 128;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--prompt") && more)
            prompt = argv[++i];
        else if (!strcmp(a, "--vocab") && more)
            vocab = argv[++i];
        else if (!strcmp(a, "-n") && more && num_i(argv[i + 1], &n_new) && n_new > 1) /* (the first from the prefill) */
            i++;
        else if (!strcmp(a, "--prefill") && more && num_i(argv[i + 1], &n_prefill) && n_prefill > 0)
            i++;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (a[0] != '-' && !model)
            model = a;
        else
            return usage_error("bench", argv, i, argc);
    }
    if (!model) {
        fprintf(stderr, "usage: " PROG " bench MODEL [-n 50] [--prompt TEXT] [--prefill 128] [--json]\n");
        return 2;
    }
    /* the device memory in use before the model (this also creates the CUDA context, which the
     * load time should not include: PyTorch's figures start from an initialised device too) */
    size_t gpu_before = 0;
    if (g_device == GQ_IM_CUDA) gq_imc_mem_used(&gpu_before);
    double t_start = gq_now();
    gq_bpe *bpe = NULL;
    gq_im *m = NULL;
    prompt_plan p = {0};
    gq_sampler s = {0};
    gen_stats st = {0};
    int rc = gq_bpe_load_dir(&bpe, vocab);
    double t_vocab = gq_now() - t_start;
    if (!rc) rc = load_model(&m, model);
    if (!rc) rc = prepare_prompt(bpe, m, prompt, n_new, &p);
    if (!rc) rc = gq_im_plan(m, 1, (int)p.ids.n + p.n_new, (int)p.ids.n);
    if (!rc) rc = gq_sampler_init(&s, m->cfg.vocab_size, 0, 0, 1, 1);
    /* warm-up: one untimed run (page faults of the weights, thread start-up) would hide the
     * cost a user pays, so the first run is the one reported; a second shows the steady state */
    if (!rc) rc = run_generate(m, bpe, &p, &s, 0, NULL, &st, NULL);
    double t_first = gq_now() - t_start;
    gen_stats st2 = {0}; /* steady state: the best of three more runs */
    for (int k = 0; k < 3 && !rc; k++) {
        gen_stats t;
        rc = run_generate(m, bpe, &p, &s, 0, NULL, &t, NULL);
        if (!k || t.decode_s < st2.decode_s) st2 = t;
    }
    const double rss_gen = peak_rss_mb();
    const int cuda = m && m->device == GQ_IM_CUDA;
    const size_t kv_gen = !m     ? 0
                          : cuda ? m->dev_kv_bytes
                                 : m->kv_bytes,
                 act_gen = !m     ? 0
                           : cuda ? m->dev_state_bytes - m->dev_kv_bytes
                                  : m->act_bytes;
    const size_t wbytes = !m ? 0 : cuda ? m->dev_weight_bytes : m->arena_bytes; /* the weights where they run */
    size_t gpu_used = 0; /* cudaMemGetInfo: the device memory in use now, against before the load */
    if (cuda) gq_imc_mem_used(&gpu_used);
    /* prefill throughput: one pass over n_prefill tokens of the prompt's text repeated */
    double prefill_tps = 0;
    if (!rc) {
        if (n_prefill > m->cfg.block_size) n_prefill = m->cfg.block_size;
        int32_t *toks = malloc(sizeof(int32_t) * (size_t)n_prefill);
        for (long i = 0; i < n_prefill; i++)
            toks[i] = p.ids.ids[i % (long)p.ids.n];
        rc = gq_im_plan(m, 1, (int)n_prefill, (int)n_prefill);
        double best = 1e30;
        for (int r = 0; r < 3 && !rc; r++) {
            double t0 = gq_now();
            rc = gq_im_forward(m, toks, 1, (int)n_prefill, 0, NULL, NULL, NULL);
            double dt = gq_now() - t0;
            best = dt < best ? dt : best;
        }
        prefill_tps = n_prefill / best;
        free(toks);
    }
    double bw = 0;
    if (!rc && cuda)
        rc = gq_imc_copy_bandwidth(&bw); /* device copy: bytes read + written per second */
    else if (!rc)
        bw = read_bandwidth();
    if (!rc) {
        const gq_gpt2_config *c = &m->cfg;
        const double decode_tps = (st2.n_generated - 1) / st2.decode_s; /* the first token comes from the prefill */
        /* bytes one decode step reads: every weight once, plus the KV cache up to the mean position */
        const double kv_read = 2.0 * c->n_layer * c->n_embd * (m->kv_f16 ? 2 : 4) * (p.ids.n + p.n_new / 2.0);
        const double bytes_tok = (double)(cuda ? m->dev_read_bytes : m->weight_bytes) + kv_read,
                     share = bytes_tok * decode_tps / bw;
        /* the first run (what a user's one call pays: on the GPU also the kernels' first loads and
         * the decode graph's capture) and the steady state (the best of the three later runs, as
         * transformers' figures are taken after a warm-up) */
        const double gen_s = st.prefill_s + st.decode_s, gen_steady = st2.prefill_s + st2.decode_s;
        if (json) {
            printf("{\"model\": \"%s\", \"kind\": \"%s\", \"formats\": \"%s\", \"threads\": %d, \"load_s\": %.4f, "
                   "\"weight_bytes\": %zu, \"kv_bytes\": %zu, \"buffer_bytes\": %zu, \"model_memory_bytes\": %zu, "
                   "\"peak_rss_mb\": %.1f, \"prompt_tokens\": %d, \"generated\": %d, \"generate_s\": %.4f, "
                   "\"generate_steady_s\": %.4f, \"generate_with_load_s\": %.4f, \"prefill_tok_s\": %.1f, \"prefill_tokens\": %ld, "
                   "\"decode_tok_s\": %.1f, \"bytes_per_token\": %.0f, \"read_bandwidth_gbs\": %.2f, "
                   "\"bandwidth_share\": %.3f, \"kv\": \"%s\", \"device\": \"%s\", \"gpu_used_bytes\": %zu, "
                   "\"gpu_used_before_bytes\": %zu, \"gpu_weights\": \"%s\", \"cuda_graph\": %d, \"cuda_fused\": %d, \"cpu_kernels\": \"%s\"}\n",
                   model, m->kind, m->formats, omp_get_max_threads(), m->load_seconds, wbytes, kv_gen, act_gen,
                   wbytes + kv_gen + act_gen, rss_gen, st.n_prompt, st.n_generated, gen_s, gen_steady, t_first - t_vocab,
                   prefill_tps, n_prefill, decode_tps, bytes_tok, bw / 1e9, share, m->kv_f16 ? "f16" : "f32",
                   g_device_name, gpu_used, gpu_before, g_half_names[cuda ? m->dev_half : 0], m->dev_graph, m->dev_fused, gq_qdot()->name);
        } else {
            printf("%s: %s (%s), %d threads, %s kernels\n", model, m->kind, m->formats, omp_get_max_threads(),
                   gq_qdot()->name);
            printf("  load                 %8.3f s\n", m->load_seconds);
            printf("  model memory         %8.1f MB  (weights %.1f MB packed, KV cache %.2f MB %s for %d positions, "
                   "buffers %.2f MB)\n",
                   (wbytes + kv_gen + act_gen) / 1e6, wbytes / 1e6, kv_gen / 1e6, m->kv_f16 ? "fp16" : "fp32",
                   st.n_prompt + p.n_new, act_gen / 1e6);
            printf("  peak RSS             %8.1f MB\n", rss_gen);
            if (cuda)
                printf("  GPU memory           %8.1f MB in use (cudaMemGetInfo), %.1f MB before the model; weights, KV "
                       "cache and buffers above are device memory\n",
                       gpu_used / 1e6, gpu_before / 1e6);
            printf("  %d tokens from \"%s\": %.4f s first run (%.3f s with load and vocabulary), %.4f s steady (best "
                   "of 3)\n",
                   st.n_generated, prompt, gen_s, t_first - t_vocab, gen_steady);
            printf("  prefill              %8.1f tok/s (%ld tokens in one pass)\n", prefill_tps, n_prefill);
            printf("  decode               %8.1f tok/s (steady state, best of 3)\n", decode_tps);
            printf("  decode bandwidth     %8.2f GB/s = %.1f MB/token x %.1f tok/s, %.0f%% of the measured %.1f GB/s "
                   "%s bandwidth\n",
                   bytes_tok * decode_tps / 1e9, bytes_tok / 1e6, decode_tps, 100 * share, bw / 1e9,
                   cuda ? "device copy (read + write)" : "read");
        }
    }
    gq_sampler_free(&s);
    gq_ids_free(&p.ids);
    gq_im_free(m);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* ---- compare ---- */

/* Run `self args` and parse the one JSON object it prints. */
static cJSON *run_json(const char *self, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s --kv %s --device %s --gpu-weights %s --act %s", self, args,
             g_kv_f16 ? "f16" : "f32", g_device_name, half_name(g_dev_half), g_act8 ? "int8" : "f32");
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    gq_bytes out = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        gq_bytes_append(&out, buf, n);
    int status = pclose(f);
    cJSON *j = status == 0 && out.n ? cJSON_ParseWithLength((const char *)out.data, out.n) : NULL;
    gq_bytes_free(&out);
    return j;
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* DIR/chart.svg from DIR/chart.dat (compare's data: index, name, model MB, peak RSS MB, seconds
 * for the tokens, loss) with gnuplot (gq_gnuplot_svg: GQ_EUNSUPPORTED when gnuplot is missing) */
static int draw_chart(const char *dir) {
    char dat[4400], svg[4400], script[12000];
    snprintf(dat, sizeof dat, "%s/chart.dat", dir);
    snprintf(svg, sizeof svg, "%s/chart.svg", dir);
    snprintf(script, sizeof script,
             "set title 'gpt2q-infer compare: memory (bars) and time for 50 tokens (line)';"
             " set style data histogram; set style histogram clustered gap 1; set style fill solid 0.8 border -1;"
             " set boxwidth 0.9; set ylabel 'MB'; set y2label 'seconds'; set ytics nomirror; set y2tics;"
             " set yrange [0:*]; set y2range [0:*]; set grid ytics; set xtics rotate by -20; set key below horizontal;"
             " plot '%s' using 3:xtic(2) title 'model memory MB' lc rgb '#4271ae',"
             " '' using 4 title 'peak RSS MB' lc rgb '#8abeb7',"
             " '' using 1:5 axes x1y2 with linespoints lw 2 pt 7 lc rgb '#c82829' title '50 tokens (s)'",
             dat);
    return gq_gnuplot_svg(svg, 900, 500, script);
}

/* chart DIR: draw DIR/chart.svg again from DIR/chart.dat (a compare run where gnuplot was missing,
 * such as the GPU machine) */
static int cmd_chart(int argc, char **argv) {
    if (argc != 3 || argv[2][0] == '-') {
        fprintf(stderr, "usage: " PROG " chart DIR   (DIR: a compare --out folder holding chart.dat)\n");
        return 2;
    }
    char dat[4400];
    snprintf(dat, sizeof dat, "%s/chart.dat", argv[2]);
    FILE *f = fopen(dat, "r");
    if (!f) return fail(gq_errf(GQ_EIO, "%s: cannot open: no such file or not readable", dat));
    fclose(f);
    const int rc = draw_chart(argv[2]);
    if (rc) return fail(rc);
    fprintf(stderr, PROG ": wrote %s/chart.svg\n", argv[2]);
    return 0;
}

/* A gpt2q-train run folder among compare's models: its newest checkpoint (the float model, the
 * reference) and then every model-<format>.h5 in it (a QAT run's export, --export's), by name.
 * Returns how many were added at models + n (0: `dir` is not a run folder: no ckpt-<step>.h5). */
static int expand_run(const char *arg, int n, char pool[][4400], const char *models[], char label[][64], int cap) {
    char dir[4096], newest[4400];
    int64_t step;
    snprintf(dir, sizeof dir, "%s", arg);
    for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/';) dir[--l] = '\0'; /* runs/x/ is runs/x */
    if (gq_run_newest(dir, newest, sizeof newest, &step)) {
        gq_err_clear(); /* not a run folder */
        return 0;
    }
    char found[32][256];
    int nf = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) { /* model-<format>.h5 exactly (not a temp file) */
        size_t len = strlen(e->d_name);
        if (len > 9 && len < sizeof found[0] && !strncmp(e->d_name, "model-", 6) && !strcmp(e->d_name + len - 3, ".h5") &&
            nf < 32)
            snprintf(found[nf++], sizeof found[0], "%s", e->d_name);
    }
    if (d) closedir(d);
    qsort(found, (size_t)nf, sizeof found[0], (int (*)(const void *, const void *))strcmp);
    int k = 0;
    for (int i = -1; i < nf && n + k < cap; i++, k++) {
        if (i < 0) snprintf(pool[n + k], sizeof pool[0], "%s", newest);
        else snprintf(pool[n + k], sizeof pool[0], "%s/%s", dir, found[i]);
        models[n + k] = pool[n + k];
        if (i < 0) snprintf(label[n + k], sizeof label[0], "float");
        else snprintf(label[n + k], sizeof label[0], "%.*s", (int)(strlen(found[i]) - 9), found[i] + 6); /* model-X.h5 */
    }
    return k;
}

static int cmd_compare(int argc, char **argv) {
    const char *models[32], *data = NULL, *names = NULL, *outdir = ".";
    const char *answers = NULL, *pkey = NULL, *rkey = NULL; /* a task score beside the loss (answer) */
    long answer_lines = 0;
    static char pool[32][4400]; /* the paths of run folders' models */
    char label[32][64] = {{0}};
    int n_models = 0, n_runs = 0;
    long max_tokens = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--data") && more)
            data = argv[++i];
        else if (!strcmp(a, "--names") && more)
            names = argv[++i];
        else if (!strcmp(a, "--out") && more)
            outdir = argv[++i];
        else if (!strcmp(a, "--max-tokens") && more && num_i(argv[i + 1], &max_tokens) && max_tokens > 0)
            i++;
        else if (!strcmp(a, "--answers") && more)
            answers = argv[++i];
        else if (!strcmp(a, "--prompt-key") && more && argv[i + 1][0])
            pkey = argv[++i];
        else if (!strcmp(a, "--ref-key") && more && argv[i + 1][0])
            rkey = argv[++i];
        else if (!strcmp(a, "--answer-lines") && more && num_i(argv[i + 1], &answer_lines) && answer_lines > 0)
            i++;
        else if (a[0] != '-' && n_models < 32) {
            int k = expand_run(a, n_models, pool, models, label, 32);
            if (k) n_runs++;
            else models[n_models] = a, label[n_models][0] = 0, k = 1;
            n_models += k;
        } else
            return usage_error("compare", argv, i, argc);
    }
    if (!n_models || !data || (answers && (!pkey || !rkey)) || (!answers && (pkey || rkey || answer_lines))) {
        fprintf(stderr, "usage: " PROG " compare MODEL... --data tokens.h5 [--names a,b,..] [--out DIR] [--max-tokens N] "
                        "[--answers FILE.jsonl --prompt-key KEY --ref-key KEY [--answer-lines N]]\n");
        return 2;
    }
    /* every input first: a missing one fails now, not after minutes of the others' runs */
    for (int k = 0; k <= n_models + (answers != NULL); k++) {
        const char *in = k < n_models ? models[k] : k == n_models ? data : answers;
        FILE *f = fopen(in, "rb");
        if (!f) return fail(gq_errf(gq_from_errno(errno), "%s: cannot open: %s", in, strerror(errno)));
        fclose(f);
    }
    char self[4200], exe[4096];
    gq_exe_dir(exe, sizeof exe);
    snprintf(self, sizeof self, "%s/" PROG, exe);
    int rc = gq_mkdir_p(outdir);
    if (rc) return fail(rc);
    for (int k = 0; k < n_models; k++) {
        if (label[k][0] && n_runs == 1) continue; /* one run folder: float, int8, ... */
        if (label[k][0]) { /* several: run:float, run:int8, ... */
            const char *m = models[k], *slash = strrchr(m, '/'), *run = slash;
            while (run > m && run[-1] != '/') run--;
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*s:%.32s", (int)(slash - run > 30 ? 30 : slash - run), run, label[k]);
            snprintf(label[k], sizeof label[k], "%s", tmp);
            continue;
        }
        const char *base = strrchr(models[k], '/');
        snprintf(label[k], sizeof label[k], "%s", base ? base + 1 : models[k]);
        char *dot = strrchr(label[k], '.');
        if (dot) *dot = 0;
    }
    if (names) {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", names);
        int k = 0;
        for (char *t = strtok(buf, ","); t && k < n_models; t = strtok(NULL, ","), k++)
            snprintf(label[k], sizeof label[k], "%s", t);
    }
    cJSON *all = cJSON_CreateArray();
    for (int k = 0; k < n_models; k++) {
        char args[6000];
        fprintf(stderr, PROG ": compare: %s (%d/%d): eval\n", label[k], k + 1, n_models);
        snprintf(args, sizeof args, "eval '%s' --data '%s' --json", models[k], data);
        if (max_tokens) snprintf(args + strlen(args), sizeof args - strlen(args), " --max-tokens %ld", max_tokens);
        cJSON *ev = run_json(self, args);
        fprintf(stderr, PROG ": compare: %s (%d/%d): bench\n", label[k], k + 1, n_models);
        snprintf(args, sizeof args, "bench '%s' --json", models[k]);
        cJSON *be = run_json(self, args), *an = NULL;
        if (answers && ev && be) {
            fprintf(stderr, PROG ": compare: %s (%d/%d): answer\n", label[k], k + 1, n_models);
            snprintf(args, sizeof args, "answer '%s' --data '%s' --prompt-key '%s' --ref-key '%s' --json", models[k],
                     answers, pkey, rkey);
            if (answer_lines)
                snprintf(args + strlen(args), sizeof args - strlen(args), " --max-lines %ld", answer_lines);
            an = run_json(self, args);
        }
        if (!ev || !be || (answers && !an)) {
            cJSON_Delete(ev), cJSON_Delete(be), cJSON_Delete(an), cJSON_Delete(all);
            return fail(gq_errf(GQ_EINVAL, "%s: eval, bench or answer failed (its error is above)", models[k]));
        }
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "name", label[k]);
        cJSON_AddItemToObject(row, "eval", ev);
        cJSON_AddItemToObject(row, "bench", be);
        if (an) cJSON_AddItemToObject(row, "answer", an);
        cJSON_AddItemToArray(all, row);
    }
    /* table: loss and its delta to the first model (the reference), memory, speed; each output
     * written whole or not at all (gq_write_file) */
    char path[4400], *md = NULL, *dat_text = NULL;
    size_t md_len = 0, dat_len = 0;
    FILE *mf = open_memstream(&md, &md_len), *df = open_memstream(&dat_text, &dat_len);
    if (!mf || !df) {
        if (mf) fclose(mf);
        if (df) fclose(df);
        free(md), free(dat_text), cJSON_Delete(all);
        return fail(gq_errf(GQ_ENOMEM, "out of memory"));
    }
    double ref = jnum(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 0), "eval"), "loss");
    fprintf(mf, "| model | weights | val loss | delta | perplexity |%s weights MB | model memory MB | peak RSS MB | "
                "load s | 50 tokens s | prefill tok/s | decode tok/s | bandwidth share |\n"
                "|---|---|---:|---:|---:|%s---:|---:|---:|---:|---:|---:|---:|---:|\n",
            answers ? " exact match |" : "", answers ? "---:|" : "");
    for (int k = 0; k < n_models; k++) {
        const cJSON *r = cJSON_GetArrayItem(all, k), *ev = cJSON_GetObjectItem(r, "eval"),
                    *be = cJSON_GetObjectItem(r, "bench");
        double loss = jnum(ev, "loss");
        const char *kind = cJSON_GetObjectItem(be, "kind")->valuestring;
        char em[64] = "";
        if (answers) {
            const cJSON *an = cJSON_GetObjectItem(r, "answer");
            snprintf(em, sizeof em, " %.2f %% (%.0f of %.0f) |", 100 * jnum(an, "exact_match"), jnum(an, "matched"),
                     jnum(an, "prompts"));
        }
        fprintf(mf, "| %s | %s%s | %.4f | %+.4f | %.2f |%s %.1f | %.1f | %.1f | %.3f | %.3f | %.0f | %.1f | %.0f%% |\n",
                label[k], kind, g_act8 && strcmp(kind, "fp32") ? " + int8 act." : "", loss, loss - ref, jnum(ev, "perplexity"),
                em, jnum(be, "weight_bytes") / 1e6, jnum(be, "model_memory_bytes") / 1e6, jnum(be, "peak_rss_mb"),
                jnum(be, "load_s"), jnum(be, "generate_s"), jnum(be, "prefill_tok_s"), jnum(be, "decode_tok_s"),
                100 * jnum(be, "bandwidth_share"));
        /* chart data: memory as bars (left axis), the 50-token time as a line (right axis) */
        fprintf(df, "%d \"%s\" %.2f %.2f %.4f %.4f\n", k, label[k], jnum(be, "model_memory_bytes") / 1e6,
                jnum(be, "peak_rss_mb"), jnum(be, "generate_s"), jnum(ev, "loss"));
    }
    fclose(mf), fclose(df);
    char *js = cJSON_Print(all);
    snprintf(path, sizeof path, "%s/results.md", outdir);
    rc = gq_write_file(path, md, md_len);
    if (!rc) fwrite(md, 1, md_len, stdout);
    snprintf(path, sizeof path, "%s/results.json", outdir);
    if (!rc) rc = js ? gq_write_file(path, js, strlen(js)) : gq_errf(GQ_ENOMEM, "out of memory");
    char dat[4400];
    snprintf(dat, sizeof dat, "%s/chart.dat", outdir);
    if (!rc) rc = gq_write_file(dat, dat_text, dat_len);
    free(md), free(dat_text), free(js);
    const int chart = rc ? rc : draw_chart(outdir);
    if (chart == GQ_EUNSUPPORTED)
        fprintf(stderr, PROG ": warning: gnuplot failed; no %s/chart.svg (the data is in %s; `" PROG
                        " chart %s` draws it where gnuplot is installed)\n",
                outdir, dat, outdir);
    else if (chart)
        rc = chart;
    if (!rc)
        fprintf(stderr, PROG ": wrote %s/results.md, %s/results.json%s%s%s\n", outdir, outdir, chart ? "" : ", ",
                chart ? "" : outdir, chart ? "" : "/chart.svg");
    cJSON_Delete(all);
    return rc ? fail(rc) : 0;
}

int main(int argc, char **argv) {
    /* --kv f16|f32, --device cpu|cuda|auto, --gpu-weights auto|f32|f16|bf16 and --act f32|int8 apply
     * to every command: take them out before the command's own options */
    for (int i = 2; i < argc;) {
        const int kv = !strcmp(argv[i], "--kv"), devopt = !strcmp(argv[i], "--device"),
                  half = !strcmp(argv[i], "--gpu-weights"), act = !strcmp(argv[i], "--act");
        if (!kv && !devopt && !half && !act) {
            i++;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (kv && strcmp(v, "f16") && strcmp(v, "f32")) {
            fprintf(stderr, PROG ": --kv takes f16 or f32\n");
            return 2;
        }
        if (devopt && strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
            fprintf(stderr, PROG ": --device takes cpu, cuda or auto\n");
            return 2;
        }
        if (half && strcmp(v, "auto") && strcmp(v, "f32") && strcmp(v, "f16") && strcmp(v, "bf16")) {
            fprintf(stderr, PROG ": --gpu-weights takes auto, f32, f16 or bf16\n");
            return 2;
        }
        if (act && strcmp(v, "f32") && strcmp(v, "int8")) {
            fprintf(stderr, PROG ": --act takes f32 or int8\n");
            return 2;
        }
        if (act) g_act8 = !strcmp(v, "int8");
        if (half) g_dev_half = !strcmp(v, "auto") ? -1 : !strcmp(v, "f16") ? 1 : !strcmp(v, "bf16") ? 2 : 0;
        if (kv) g_kv_f16 = !strcmp(v, "f16");
        if (devopt) {
            g_device = !strcmp(v, "cuda") || (!strcmp(v, "auto") && gq_imc_available()) ? GQ_IM_CUDA : GQ_IM_CPU;
            g_device_name = g_device == GQ_IM_CUDA ? "cuda" : "cpu";
        }
        for (int j = i; j + 2 <= argc; j++)
            argv[j] = argv[j + 2];
        argc -= 2;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: " PROG " COMMAND MODEL [options]\n"
              "  eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--seq T] [--json]\n"
              "      mean loss / perplexity over non-overlapping windows of T tokens (stride T)\n"
              "  generate MODEL --prompt TEXT [-n 50] [--temperature 0] [--top-k 0] [--top-p 1] [--seed 1]\n"
              "      greedy by default; streams the text; stops at <|endoftext|>\n"
              "  answer MODEL --data FILE.jsonl --prompt-key KEY [--ref-key KEY] [-n 32] [--max-lines N]\n"
              "         [--out answers.jsonl] [--json]\n"
              "      each line's prompt after <|endoftext|> (the layout gpt2q-data prepare --jsonl-prompt\n"
              "      trains on), greedy to <|endoftext|> or n tokens; with --ref-key, the exact-match rate\n"
              "      of the answers (white space at either end ignored); --out: one JSON line each\n"
              "  bench MODEL [-n 50] [--prompt \"" DEFAULT_PROMPT "\"] [--prefill 128] [--json]\n"
              "      load time, memory, prefill and decode speed, decode bandwidth share (-n 2 or more: the\n"
              "      first token comes from the prefill)\n"
              "  compare MODEL... --data tokens.h5 [--names a,b,..] [--out DIR] [--max-tokens N]\n"
              "         [--answers FILE.jsonl --prompt-key KEY --ref-key KEY [--answer-lines N]]\n"
              "      eval + bench of each: DIR/results.md, results.json, chart.svg; a gpt2q-train run\n"
              "      folder stands for its newest checkpoint (the reference) and its model-<format>.h5;\n"
              "      --answers adds each model's exact-match rate (answer) to the table\n"
              "  chart DIR\n"
              "      draw DIR/chart.svg again from compare's DIR/chart.dat (where gnuplot was missing)\n"
              "  logits MODEL --prompt TEXT\n"
              "      JSON: the prompt's token ids and the logits after its last token\n"
              "  MODEL: a quantized export (gpt2q-export; kept packed), a gpt2q checkpoint, an HF\n"
              "  model.safetensors (config.json beside it), an llm.c .bin, or a folder: transformers' (its\n"
              "  model.safetensors) or a gpt2q-train run (its newest checkpoint). GQ_CPU_SIMD=scalar forces\n"
              "  the scalar kernels; OMP_NUM_THREADS sets the threads. --kv f16 (default) or f32: the\n"
              "  KV cache's precision for generate, bench and logits (eval windows never read it).\n"
              "  --device cpu (default), cuda or auto (cuda when a GPU is present): where the model runs;\n"
              "  on the GPU the packed weights are uploaded as they are, one sequence at a time.\n"
              "  --gpu-weights auto (default), f32, f16 or bf16: how the GPU holds the unquantized weight\n"
              "  matrices (the linears and the embedding of a float model or a selective export, the\n"
              "  position embedding); auto: fp16 for a quantized export, fp32 for a float model.\n"
              "  --act f32 (default) or int8: the activations of products on quantized weights. On the CPU,\n"
              "  decode (fewer than 16 tokens a call) always takes int8 activations there; int8 makes eval\n"
              "  and long prompts take them too (blocks of 32, as W8A8 QAT trains: --qat-act int8). On the\n"
              "  GPU, int8 quantizes each such product's input the same way (default: float activations).\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc, argv);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    if (!strcmp(argv[1], "compare")) return cmd_compare(argc, argv);
    if (!strcmp(argv[1], "logits")) return cmd_logits(argc, argv);
    if (!strcmp(argv[1], "answer")) return cmd_answer(argc, argv);
    if (!strcmp(argv[1], "chart")) return cmd_chart(argc, argv);
    fprintf(stderr, PROG ": unknown command '%s' (eval, generate, answer, bench, compare, logits, chart)\n", argv[1]);
    return 2;
}
