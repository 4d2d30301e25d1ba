/* gpt2q-data: corpus -> token file, text <-> ids, and a look inside token files.
 *   gpt2q-data prepare --input FILE... --out tokens.h5 [--val-fraction 0.05]
 *   gpt2q-data encode [--json]      (all of stdin -> one line of ids)
 *   gpt2q-data decode               (ids on stdin -> exact bytes on stdout)
 *   gpt2q-data info FILE [--json] [--check]
 *   gpt2q-data export FILE --out PREFIX   (-> PREFIX_train.bin, PREFIX_val.bin: llm.c shards) */
#define _GNU_SOURCE
#include "bpe.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_progress.h"
#include "prepare.h"
#include "shard.h"
#include "tokfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PROG "gpt2q-data"

static int fail(int rc) {
    fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
    return 1;
}

static int usage_error(const char *msg) {
    fprintf(stderr, PROG ": %s (see '" PROG " --help')\n", msg);
    return 2;
}

static void print_help(FILE *out) {
    fputs("usage:\n"
          "  " PROG " prepare --input FILE... --out tokens.h5 [--val-fraction F] [--val-block N] [--threads N]\n"
          "                     [--jsonl KEY [--jsonl-prompt PKEY]] [--allow-special] [--vocab DIR] [--json]\n"
          "      Tokenize text files (each one document, preceded by <|endoftext|>) or append llm.c\n"
          "      token shards, and write an HDF5 token file with /train and /val. Validation split:\n"
          "      the token stream is cut into blocks of --val-block tokens (default 4096) and block b\n"
          "      goes to val when floor((b+1)*F) > floor(b*F), F = --val-fraction (default 0.05):\n"
          "      every 20th block, so val samples the whole corpus rather than its end.\n"
          "      --jsonl KEY: the text files are JSON Lines; each line's string field KEY (e.g. text)\n"
          "      is one document (blank lines skipped; a line without it is an error naming the line).\n"
          "      --jsonl-prompt PKEY: each line's field PKEY is the document's prompt and KEY its\n"
          "      completion (e.g. --jsonl response --jsonl-prompt prompt): the prompt's tokens come\n"
          "      first and are left out of the loss (a loss mask in the file; the trainer and\n"
          "      gpt2q-infer eval score only the completions and their <|endoftext|>).\n"
          "  " PROG " encode [--json] [--allow-special] [--vocab DIR]\n"
          "      All of stdin, bytes as they are, to one line of space-separated ids (--json: an array).\n"
          "  " PROG " decode [--vocab DIR]\n"
          "      Ids on stdin (whitespace/comma separated, or a JSON array) to the exact bytes.\n"
          "  " PROG " info FILE [--json] [--check]\n"
          "      What a token file or llm.c shard holds; --check verifies every id.\n"
          "  " PROG " export FILE --out PREFIX\n"
          "      A token file's splits as llm.c token shards PREFIX_train.bin and PREFIX_val.bin (to\n"
          "      train llm.c, or any tool that reads them, on the same tokens).\n"
          "\n"
          "The GPT-2 vocabulary is found via --vocab DIR, $GPT2Q_VOCAB_DIR, or next to the program.\n",
          out);
}

typedef struct {
    const char **inputs;
    int n_inputs;
    const char *out, *vocab, *jsonl, *jsonl_prompt;
    double val_fraction;
    long val_block;
    int threads, allow_special, json, check;
} options;

static int parse(int argc, char **argv, options *o) {
    static const struct option longs[] = {
        {"input", required_argument, 0, 'i'},   {"out", required_argument, 0, 'o'},
        {"val-fraction", required_argument, 0, 'v'}, {"val-block", required_argument, 0, 'b'},
        {"vocab", required_argument, 0, 'V'},   {"jsonl", required_argument, 0, 'J'},
        {"jsonl-prompt", required_argument, 0, 'P'},
        {"threads", required_argument, 0, 't'}, {"allow-special", no_argument, 0, 's'},
        {"json", no_argument, 0, 'j'},          {"check", no_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    o->inputs = calloc((size_t)argc + 1, sizeof *o->inputs);
    o->val_fraction = 0.05;
    o->val_block = 4096;
    int c;
    optind = 2; /* after the subcommand */
    while ((c = getopt_long(argc, argv, "i:o:h", longs, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'i':
            o->inputs[o->n_inputs++] = optarg;
            while (optind < argc && argv[optind][0] != '-') o->inputs[o->n_inputs++] = argv[optind++];
            break;
        case 'o': o->out = optarg; break;
        case 'v':
            o->val_fraction = strtod(optarg, &end);
            if (*end || !(o->val_fraction >= 0 && o->val_fraction < 1))
                return usage_error("--val-fraction must be a number in [0, 1)");
            break;
        case 'b':
            o->val_block = strtol(optarg, &end, 10);
            if (*end || o->val_block < 1) return usage_error("--val-block must be a positive integer");
            break;
        case 'V': o->vocab = optarg; break;
        case 'J':
            if (!optarg[0]) return usage_error("--jsonl needs the field that holds each document (e.g. text)");
            o->jsonl = optarg;
            break;
        case 'P':
            if (!optarg[0]) return usage_error("--jsonl-prompt needs the field that holds each prompt (e.g. prompt)");
            o->jsonl_prompt = optarg;
            break;
        case 't':
            o->threads = (int)strtol(optarg, &end, 10);
            if (*end || o->threads < 1) return usage_error("--threads must be a positive integer");
            break;
        case 's': o->allow_special = 1; break;
        case 'j': o->json = 1; break;
        case 'c': o->check = 1; break;
        case 'h': print_help(stdout); exit(0);
        default: return 2;
        }
    }
    return 0;
}

/* ---- prepare ---- */

static int cmd_prepare(int argc, char **argv) {
    options o = {0};
    int urc = parse(argc, argv, &o);
    while (!urc && optind < argc) o.inputs[o.n_inputs++] = argv[optind++];
    if (!urc && !o.n_inputs) urc = usage_error("prepare needs --input FILE...");
    if (!urc && !o.out) urc = usage_error("prepare needs --out tokens.h5");
    if (!urc && o.jsonl_prompt && !o.jsonl) urc = usage_error("--jsonl-prompt needs --jsonl KEY (the completion's field)");
    if (!urc && o.jsonl_prompt && !strcmp(o.jsonl_prompt, o.jsonl))
        urc = usage_error("--jsonl-prompt and --jsonl name the same field");
    gq_bpe *bpe = NULL;
    int rc = urc ? GQ_OK : gq_bpe_load_dir(&bpe, o.vocab);
    if (urc || rc) {
        free(o.inputs);
        return urc ? urc : fail(rc);
    }
    gq_prepare_opts po = {(const char *const *)o.inputs, o.n_inputs, o.out, o.val_fraction, (size_t)o.val_block,
                          o.threads, o.allow_special, o.jsonl, o.jsonl_prompt};
    gq_prepare_report rep;
    rc = gq_prepare(bpe, &po, &rep);
    gq_token_source *src = rep.sources;
    size_t total_bytes = rep.bytes, n_train = rep.n_train, n_val = rep.n_val;
    double t_encode = rep.seconds;
    if (!rc) {
        double mbps = t_encode > 0 ? (double)total_bytes / t_encode / 1e6 : 0;
        if (o.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "out", o.out);
            cJSON_AddNumberToObject(j, "bytes", (double)total_bytes);
            cJSON_AddNumberToObject(j, "tokens", (double)rep.tokens);
            cJSON_AddNumberToObject(j, "train_tokens", (double)n_train);
            cJSON_AddNumberToObject(j, "val_tokens", (double)n_val);
            if (rep.masked) {
                cJSON_AddNumberToObject(j, "train_scored", (double)rep.n_train_scored);
                cJSON_AddNumberToObject(j, "val_scored", (double)rep.n_val_scored);
            }
            cJSON_AddNumberToObject(j, "seconds", t_encode);
            cJSON *arr = cJSON_AddArrayToObject(j, "sources");
            for (int i = 0; i < o.n_inputs; i++) {
                cJSON *s = cJSON_CreateObject();
                cJSON_AddStringToObject(s, "name", src[i].name);
                cJSON_AddStringToObject(s, "sha256", src[i].sha256);
                cJSON_AddNumberToObject(s, "tokens", (double)src[i].n_tokens);
                cJSON_AddItemToArray(arr, s);
            }
            char *txt = cJSON_Print(j);
            puts(txt);
            free(txt);
            cJSON_Delete(j);
        } else {
            printf("%-40s %12s  %s\n", "source", "tokens", "sha256");
            for (int i = 0; i < o.n_inputs; i++)
                printf("%-40s %12llu  %.16s...\n", src[i].name, (unsigned long long)src[i].n_tokens, src[i].sha256);
            printf("wrote %s: %zu train + %zu val = %zu tokens from %zu bytes (%.2f bytes/token) in %.2f s (%.1f MB/s)\n",
                   o.out, n_train, n_val, rep.tokens, total_bytes, rep.tokens ? (double)total_bytes / (double)rep.tokens : 0.0,
                   t_encode, mbps);
            if (rep.masked)
                printf("loss mask: %zu of %zu train and %zu of %zu val targets scored (prompts left out)\n",
                       rep.n_train_scored, n_train, rep.n_val_scored, n_val);
        }
    }
    free(src);
    free(o.inputs);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* ---- encode / decode ---- */

static int cmd_encode(int argc, char **argv) {
    options o = {0};
    int urc = parse(argc, argv, &o);
    free(o.inputs);
    if (urc) return urc;
    if (optind < argc) return usage_error("encode reads stdin and takes no file arguments");
    gq_bpe *bpe;
    int rc = gq_bpe_load_dir(&bpe, o.vocab);
    if (rc) return fail(rc);
    uint8_t *text;
    size_t len;
    rc = gq_read_file("-", &text, &len);
    gq_ids ids = {0};
    if (!rc) rc = gq_bpe_encode_parallel(bpe, text, len, o.allow_special ? GQ_BPE_ALLOW_SPECIAL : 0, o.threads, &ids);
    if (!rc) {
        if (o.json) fputc('[', stdout);
        for (size_t i = 0; i < ids.n; i++) fprintf(stdout, i ? (o.json ? ",%d" : " %d") : "%d", ids.ids[i]);
        fputs(o.json ? "]\n" : "\n", stdout);
        if (fflush(stdout)) rc = gq_errf(GQ_EIO, "stdout: write failed: %s", strerror(errno));
    }
    free(text);
    gq_ids_free(&ids);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* Ids separated by whitespace or commas, optionally inside [ ]. */
static int parse_ids(const uint8_t *s, size_t len, gq_ids *out) {
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    int bracket = i < len && s[i] == '[';
    if (bracket) i++;
    int closed = 0;
    for (;;) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ',')) i++;
        if (i == len) break;
        if (bracket && s[i] == ']') {
            closed = 1;
            i++;
            while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
            if (i != len) return gq_errf(GQ_EFORMAT, "stdin: unexpected '%c' after ']' at byte %zu", s[i], i);
            break;
        }
        if (s[i] < '0' || s[i] > '9')
            return gq_errf(GQ_EFORMAT, "stdin: expected a token id (decimal integer) at byte %zu, found '%c'", i,
                           s[i] >= 32 && s[i] < 127 ? s[i] : '?');
        long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (s[i++] - '0');
            if (v > 1000000000) return gq_errf(GQ_ERANGE, "stdin: token id too large near byte %zu", i);
        }
        if (i < len && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ',' || s[i] == ']'))
            return gq_errf(GQ_EFORMAT, "stdin: malformed token id at byte %zu", i);
        int rc = gq_ids_push(out, (int32_t)v);
        if (rc) return rc;
    }
    if (bracket && !closed) return gq_errf(GQ_EFORMAT, "stdin: JSON array without closing ']'");
    return GQ_OK;
}

static int cmd_decode(int argc, char **argv) {
    options o = {0};
    int urc = parse(argc, argv, &o);
    free(o.inputs);
    if (urc) return urc;
    if (optind < argc) return usage_error("decode reads stdin and takes no file arguments");
    gq_bpe *bpe;
    int rc = gq_bpe_load_dir(&bpe, o.vocab);
    if (rc) return fail(rc);
    uint8_t *text;
    size_t len;
    gq_ids ids = {0};
    gq_bytes bytes = {0};
    rc = gq_read_file("-", &text, &len);
    if (!rc) rc = parse_ids(text, len, &ids);
    if (!rc) rc = gq_bpe_decode(bpe, ids.ids, ids.n, &bytes);
    if (rc && rc == GQ_ERANGE) rc = gq_errf(rc, "stdin: %s", gq_errmsg(rc));
    if (!rc && bytes.n && fwrite(bytes.data, 1, bytes.n, stdout) != bytes.n)
        rc = gq_errf(GQ_EIO, "stdout: write failed: %s", strerror(errno));
    if (!rc && fflush(stdout)) rc = gq_errf(GQ_EIO, "stdout: write failed: %s", strerror(errno));
    free(text);
    gq_ids_free(&ids);
    gq_bytes_free(&bytes);
    gq_bpe_free(bpe);
    return rc ? fail(rc) : 0;
}

/* ---- info ---- */

static int info_shard(const char *path, const options *o) {
    uint16_t *tok;
    size_t n;
    int rc = gq_shard_read_all(path, GQ_GPT2_VOCAB_SIZE, &tok, &n);
    if (rc) return fail(rc);
    if (o->json) printf("{\"file\": \"%s\", \"kind\": \"llm.c shard\", \"version\": 1, \"tokens\": %zu}\n", path, n);
    else printf("%s: llm.c token shard, version 1, %zu tokens (all ids < %d)\n", path, n, GQ_GPT2_VOCAB_SIZE);
    free(tok);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    options o = {0};
    int urc = parse(argc, argv, &o);
    free(o.inputs);
    if (urc) return urc;
    if (optind + 1 != argc) return usage_error("info takes exactly one FILE");
    const char *path = argv[optind];
    FILE *f = fopen(path, "rb");
    if (!f) return fail(gq_errf(gq_from_errno(errno), "%s: cannot open: %s", path, strerror(errno)));
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (gq_shard_has_magic(head, got)) return info_shard(path, &o);
    gq_tokfile *tf;
    int rc = gq_tokfile_open(path, &tf);
    if (rc) return fail(rc);
    const gq_tokfile_info *in = gq_tokfile_get_info(tf);
    if (o.check) {
        const char *splits[2] = {"train", "val"};
        uint16_t *buf = malloc((1 << 20) * sizeof *buf);
        for (int s = 0; s < 2 && !rc; s++) {
            uint64_t n;
            gq_tokfile_split_len(tf, splits[s], &n);
            for (uint64_t off = 0; off < n && !rc; off += 1 << 20) {
                size_t take = n - off < (1 << 20) ? (size_t)(n - off) : (1 << 20);
                rc = gq_tokfile_read(tf, splits[s], off, take, buf);
            }
        }
        free(buf);
        if (rc) {
            gq_tokfile_close(tf);
            return fail(rc);
        }
    }
    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", path);
        cJSON_AddStringToObject(j, "kind", GQ_TOKFILE_FORMAT);
        cJSON_AddNumberToObject(j, "format_version", in->format_version);
        cJSON_AddStringToObject(j, "tokenizer", in->tokenizer);
        cJSON_AddNumberToObject(j, "vocab_size", in->vocab_size);
        cJSON_AddNumberToObject(j, "eot_id", in->eot_id);
        cJSON_AddNumberToObject(j, "train_tokens", (double)in->n_train);
        cJSON_AddNumberToObject(j, "val_tokens", (double)in->n_val);
        cJSON_AddNumberToObject(j, "val_fraction", in->val_fraction);
        cJSON_AddNumberToObject(j, "val_block", (double)in->val_block);
        cJSON_AddBoolToObject(j, "loss_mask", in->has_mask);
        if (in->has_mask) {
            cJSON_AddNumberToObject(j, "train_scored", (double)in->n_train_scored);
            cJSON_AddNumberToObject(j, "val_scored", (double)in->n_val_scored);
        }
        if (o.check) cJSON_AddBoolToObject(j, "ids_checked", 1);
        cJSON *arr = cJSON_AddArrayToObject(j, "sources");
        for (int i = 0; i < in->n_sources; i++) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "name", in->source_names[i]);
            cJSON_AddStringToObject(s, "sha256", in->source_sha256[i]);
            cJSON_AddNumberToObject(s, "tokens", (double)in->source_tokens[i]);
            cJSON_AddItemToArray(arr, s);
        }
        char *txt = cJSON_Print(j);
        puts(txt);
        free(txt);
        cJSON_Delete(j);
    } else {
        printf("%s: gpt2q token file v%d, tokenizer %s, vocab %d, eot %d\n", path, in->format_version, in->tokenizer,
               in->vocab_size, in->eot_id);
        printf("  train %llu tokens, val %llu tokens (val fraction %.3f, blocks of %llu)%s\n",
               (unsigned long long)in->n_train, (unsigned long long)in->n_val, in->val_fraction,
               (unsigned long long)in->val_block, o.check ? ", all ids checked" : "");
        if (in->has_mask)
            printf("  loss mask: %llu of %llu train and %llu of %llu val targets scored (prompts left out)\n",
                   (unsigned long long)in->n_train_scored, (unsigned long long)in->n_train,
                   (unsigned long long)in->n_val_scored, (unsigned long long)in->n_val);
        for (int i = 0; i < in->n_sources; i++)
            printf("  source %s: %llu tokens, sha256 %s\n", in->source_names[i],
                   (unsigned long long)in->source_tokens[i], in->source_sha256[i]);
    }
    gq_tokfile_close(tf);
    return 0;
}

/* ---- export ---- */

static int cmd_export(int argc, char **argv) {
    options o = {0};
    int urc = parse(argc, argv, &o);
    free(o.inputs);
    if (urc) return urc;
    if (optind + 1 != argc) return usage_error("export takes exactly one FILE");
    if (!o.out) return usage_error("export needs --out PREFIX");
    const char *path = argv[optind];
    gq_tokfile *tf;
    int rc = gq_tokfile_open(path, &tf);
    if (rc) return fail(rc);
    const char *splits[2] = {"train", "val"};
    char names[2][4200];
    uint64_t counts[2] = {0, 0};
    for (int s = 0; s < 2 && !rc; s++) {
        snprintf(names[s], sizeof names[s], "%s_%s.bin", o.out, splits[s]);
        uint16_t *tok = NULL;
        rc = gq_tokfile_split_len(tf, splits[s], &counts[s]);
        if (!rc && !(tok = malloc(counts[s] ? counts[s] * sizeof *tok : 1)))
            rc = gq_errf(GQ_ENOMEM, "%s: out of memory for %llu tokens", path, (unsigned long long)counts[s]);
        if (!rc) rc = gq_tokfile_read(tf, splits[s], 0, (size_t)counts[s], tok);
        if (!rc) rc = gq_shard_write(names[s], tok, (size_t)counts[s]);
        free(tok);
    }
    const int masked = gq_tokfile_get_info(tf)->has_mask;
    gq_tokfile_close(tf);
    if (rc) return fail(rc);
    if (masked)
        fprintf(stderr, PROG ": note: %s has a loss mask; llm.c shards hold tokens only, so it is not in them\n", path);
    if (o.json)
        printf("{\"train\": {\"file\": \"%s\", \"tokens\": %llu}, \"val\": {\"file\": \"%s\", \"tokens\": %llu}}\n",
               names[0], (unsigned long long)counts[0], names[1], (unsigned long long)counts[1]);
    else
        printf("%s: %llu train tokens -> %s, %llu val tokens -> %s (llm.c shards)\n", path,
               (unsigned long long)counts[0], names[0], (unsigned long long)counts[1], names[1]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "prepare")) return cmd_prepare(argc, argv);
    if (!strcmp(cmd, "encode")) return cmd_encode(argc, argv);
    if (!strcmp(cmd, "decode")) return cmd_decode(argc, argv);
    if (!strcmp(cmd, "info")) return cmd_info(argc, argv);
    if (!strcmp(cmd, "export")) return cmd_export(argc, argv);
    fprintf(stderr, PROG ": unknown command '%s' (prepare, encode, decode, info, export)\n", cmd);
    return 2;
}
