/*
 * cli_verify.c — `qforge perplexity` and `qforge verify`: argument parsing, progress lines in
 * llama-perplexity's style, and the JSON / JUnit reports. The numbers come from qf_perplexity and
 * qf_verify (qforge.h).
 */
#include "convert/cli.h"
#include "qforge.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options both commands share. */
typedef struct common_opts {
    const char *text;
    uint32_t ctx, chunks, batch;
    int threads;
    bool no_escape, act_q8;
} common_opts;

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_nonneg(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 0) || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* Returns 0 when `c` was one of the shared options, 2 on a bad value, -1 when not shared. */
static int parse_common(const char *cmd, int c, const char *arg, common_opts *o) {
    uint32_t v;
    switch (c) {
    case 'f': o->text = arg; return 0;
    case 'c': return parse_u32(arg, 4, 1u << 20, &o->ctx) ? 0 : qf_cli_usage(cmd, "--ctx takes an integer in 4..1048576");
    case 'n': return parse_u32(arg, 1, UINT32_MAX, &o->chunks) ? 0 : qf_cli_usage(cmd, "--chunks takes a positive integer");
    case 'b': return parse_u32(arg, 1, 1u << 20, &o->batch) ? 0 : qf_cli_usage(cmd, "--batch takes a positive integer");
    case 'j':
        if (!parse_u32(arg, 0, 1024, &v)) return qf_cli_usage(cmd, "--threads takes an integer in 0..1024");
        o->threads = (int)v;
        return 0;
    case 'E': o->no_escape = true; return 0;
    case 'A':
        if (strcmp(arg, "q8") == 0) o->act_q8 = true;
        else if (strcmp(arg, "f32") == 0) o->act_q8 = false;
        else return qf_cli_usage(cmd, "--act takes f32 or q8");
        return 0;
    default: return -1;
    }
}

#define COMMON_LONG_OPTS \
    {"text", required_argument, 0, 'f'}, {"file", required_argument, 0, 'f'}, {"ctx", required_argument, 0, 'c'}, \
    {"chunks", required_argument, 0, 'n'}, {"batch", required_argument, 0, 'b'}, \
    {"threads", required_argument, 0, 'j'}, {"no-escape", no_argument, 0, 'E'}, {"act", required_argument, 0, 'A'}, \
    {"help", no_argument, 0, 'h'}

#define COMMON_HELP \
    "  -f, --text FILE     evaluation text (llama-perplexity -f rules: one trailing newline dropped,\n" \
    "                      backslash escapes \\n \\t \\xNN ... processed unless --no-escape)\n" \
    "  -c, --ctx N         tokens per chunk (default 512); positions N/2 .. N-2 are scored\n" \
    "      --chunks N      score the first N chunks (default: all)\n" \
    "  -b, --batch N       tokens per forward call, as llama-perplexity -b: N >= ctx evaluates N/ctx\n" \
    "                      chunks per call, N < ctx splits a chunk; results do not depend on it.\n" \
    "                      Layers run in passes of max(ctx, 1024) tokens.\n" \
    "                      Memory per model: 4 x N x n_vocab bytes of logits, plus KV cache and\n" \
    "                      activations for one pass. Default: max(ctx, 1024), less where the logits\n" \
    "                      would pass 64 MiB (qf-llama-a, ctx 256: 512, 66 MB of logits)\n" \
    "  -j, --threads N     threads (default: all CPUs; results do not depend on it)\n" \
    "      --act f32|q8    f32 (default): exact F32 arithmetic. q8: faster, inexact: activations\n" \
    "                      quantized to 8 bits per 32-block, as llama.cpp does, and integer products\n" \
    "                      with Q8_0/Q4_K/Q6_K weights (other weights stay F32)\n"

/* ---- perplexity ----------------------------------------------------------------------------------- */

static const char ppl_help[] =
    "usage: qforge perplexity MODEL --text FILE [--ctx N] [--chunks N] [--batch N] [--threads N] [--json]\n"
    "\n"
    "Perplexity of a model (GGUF file, or HF directory / shard index / archive read in place) with\n"
    "llama-perplexity's protocol: the text tokenized whole with BOS, cut into chunks of N tokens whose\n"
    "first token becomes BOS, the second half of each chunk scored. Prints the running PPL per chunk\n"
    "and the final estimate with its +/- like llama-perplexity.\n"
    "\n" COMMON_HELP
    "      --json          print one JSON object on stdout instead\n";

static void ppl_progress(void *user, uint32_t chunk, uint32_t n_chunks, double ppl) {
    FILE *out = user;
    fprintf(out, "[%u]%.4f,", chunk, ppl);
    if (chunk == n_chunks) fputc('\n', out);
    fflush(out);
}

static void print_ppl_json(const char *model, const char *text, const qf_perplexity_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddNumberToObject(o, "ctx", r->ctx);
    cJSON_AddNumberToObject(o, "chunks", r->n_chunks);
    cJSON_AddNumberToObject(o, "tokens_total", (double)r->n_tokens);
    cJSON_AddNumberToObject(o, "scored_tokens", (double)r->n_scored);
    cJSON_AddNumberToObject(o, "ppl", r->ppl);
    cJSON_AddNumberToObject(o, "ppl_pm", r->ppl_err);
    cJSON_AddNumberToObject(o, "mean_nll", r->mean_nll);
    cJSON_AddNumberToObject(o, "eval_seconds", r->eval_seconds);
    cJSON_AddNumberToObject(o, "tokens_per_second", r->tokens_per_second);
    char *s = cJSON_Print(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

int qf_cli_perplexity(int argc, char **argv) {
    static const struct option opts[] = {COMMON_LONG_OPTS, {"json", no_argument, 0, 'J'}, {0, 0, 0, 0}};
    common_opts co = {0};
    bool json = false;
    int c, rc;
    while ((c = getopt_long(argc, argv, "f:c:b:j:h", opts, NULL)) != -1) {
        if (c == 'h') { fputs(ppl_help, stdout); return 0; }
        if (c == 'J') { json = true; continue; }
        if ((rc = parse_common("perplexity", c, optarg, &co)) != 0)
            return rc > 0 ? rc : qf_cli_usage("perplexity", "unknown option");
    }
    if (optind + 1 != argc) return qf_cli_usage("perplexity", "expected exactly one MODEL");
    if (!co.text) return qf_cli_usage("perplexity", "--text FILE is required");
    qf_perplexity_opts o = {.model = argv[optind], .text_path = co.text, .ctx = co.ctx, .chunks = co.chunks,
                            .batch = co.batch, .threads = co.threads, .no_escape = co.no_escape,
                            .act_q8 = co.act_q8, .on_chunk = ppl_progress, .user = json ? stderr : stdout};
    qf_perplexity_result r;
    qf_error err;
    if (qf_perplexity(&o, &r, &err) != QF_OK) return qf_cli_fail("perplexity", &err);
    fprintf(stderr, "qforge perplexity: %u chunks of %u tokens (%llu scored) in %.2f s, %.1f tokens/s\n", r.n_chunks,
            r.ctx, (unsigned long long)r.n_scored, r.eval_seconds, r.tokens_per_second);
    if (json) print_ppl_json(o.model, o.text_path, &r);
    else printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    return 0;
}

/* ---- verify --------------------------------------------------------------------------------------- */

static const char verify_help[] =
    "usage: qforge verify MODEL --base BASE --text FILE [--ctx N] [--chunks N] [--max-kld X]\n"
    "                     [--max-ppl-increase P] [--min-top1 P] [--json FILE] [--junit FILE]\n"
    "\n"
    "Run MODEL and BASE side by side on the same chunks of text and compare their next-token\n"
    "distributions: PPL of each and their ratio, KL(base || model) per token (mean, median, p99, max),\n"
    "how often the most likely token agrees, RMS change in the probability of the correct token.\n"
    "Exit 0 when every threshold given holds, 1 when one fails, 2 on bad input (e.g. vocabularies\n"
    "that differ). 'qforge verify FILE --integrity' checks a file's digests instead (see --integrity --help).\n"
    "\n"
    "  -m, --base BASE          the reference model (GGUF or HF checkpoint)\n" COMMON_HELP
    "      --max-kld X          fail when the mean KLD exceeds X (nats)\n"
    "      --max-ppl-increase P fail when PPL(model) exceeds PPL(base) by more than P percent\n"
    "      --min-top1 P         fail when fewer than P percent of top-1 tokens agree\n"
    "      --json FILE          write the report as JSON ('-' = stdout)\n"
    "      --junit FILE         write a JUnit XML file with one testcase per threshold given\n"
    "      --save-base FILE     also save the base's next-token distributions, compactly (the K most\n"
    "                           likely tokens and the tail mass per position), with digests of the\n"
    "                           base, vocabulary, text and tokens\n"
    "      --base-logits FILE   compare with such a file instead of running the base (--base then\n"
    "                           optional, and checked to be the file's base); KLD over the K tokens\n"
    "                           plus the rest as one: a lower bound of the full KLD (0.93-0.96 of it on\n"
    "                           qf-llama-a at K = 1024, README); ctx and chunks default to the file's;\n"
    "                           a file made for another text or setting is refused\n"
    "      --base-topk K        tokens kept per position by --save-base (default 1024; 8 + 8K bytes)\n";

typedef struct verify_cli {
    qf_verify_opts o;
    const char *json, *junit;
} verify_cli;

static cJSON *verify_json(const verify_cli *v, const qf_verify_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", v->o.model);
    cJSON_AddStringToObject(o, "base", v->o.base);
    cJSON_AddStringToObject(o, "text", v->o.text_path);
    cJSON_AddNumberToObject(o, "ctx", r->ctx);
    cJSON_AddNumberToObject(o, "chunks", r->n_chunks);
    cJSON_AddNumberToObject(o, "tokens_total", (double)r->n_tokens);
    cJSON_AddNumberToObject(o, "scored_tokens", (double)r->n_scored);
    cJSON_AddNumberToObject(o, "ppl_model", r->ppl_model);
    cJSON_AddNumberToObject(o, "ppl_model_pm", r->ppl_model_err);
    cJSON_AddNumberToObject(o, "ppl_base", r->ppl_base);
    cJSON_AddNumberToObject(o, "ppl_base_pm", r->ppl_base_err);
    cJSON_AddNumberToObject(o, "ppl_ratio", r->ppl_ratio);
    cJSON_AddNumberToObject(o, "kld_mean", r->kld_mean);
    cJSON_AddNumberToObject(o, "kld_median", r->kld_median);
    cJSON_AddNumberToObject(o, "kld_p99", r->kld_p99);
    cJSON_AddNumberToObject(o, "kld_max", r->kld_max);
    cJSON_AddNumberToObject(o, "kld_topk", r->kld_topk);
    if (r->kld_topk) cJSON_AddNumberToObject(o, "base_tail_mean", r->base_tail_mean);
    if (v->o.base_logits) cJSON_AddStringToObject(o, "base_logits", v->o.base_logits);
    cJSON_AddNumberToObject(o, "same_top1_pct", r->top1_pct);
    cJSON_AddNumberToObject(o, "rms_dp_pct", r->dp_rms_pct);
    cJSON *checks = cJSON_AddArrayToObject(o, "checks");
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        const qf_verify_check *c = &r->checks[i];
        if (!c->given) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", c->name);
        cJSON_AddNumberToObject(e, "limit", c->limit);
        cJSON_AddNumberToObject(e, "value", c->value);
        cJSON_AddBoolToObject(e, "pass", c->pass);
        cJSON_AddItemToArray(checks, e);
    }
    cJSON_AddBoolToObject(o, "pass", r->pass);
    return o;
}

static bool write_text(const char *path, const char *text) {
    if (strcmp(path, "-") == 0) return fputs(text, stdout) >= 0 && fputc('\n', stdout) != EOF;
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    return fclose(f) == 0 && ok;
}

static void xml_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static bool write_junit(const verify_cli *v, const qf_verify_result *r) {
    FILE *f = fopen(v->junit, "w");
    if (!f) return false;
    int tests = 0, failures = 0;
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        tests += r->checks[i].given;
        failures += r->checks[i].given && !r->checks[i].pass;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    fprintf(f, "  <testsuite name=\"qforge.verify\" tests=\"%d\" failures=\"%d\" errors=\"0\" time=\"%.3f\">\n", tests,
            failures, r->eval_seconds);
    fprintf(f, "    <properties>\n      <property name=\"model\" value=\"");
    xml_escaped(f, v->o.model);
    fprintf(f, "\"/>\n      <property name=\"base\" value=\"");
    xml_escaped(f, v->o.base);
    fprintf(f, "\"/>\n      <property name=\"text\" value=\"");
    xml_escaped(f, v->o.text_path);
    fprintf(f, "\"/>\n      <property name=\"ppl_model\" value=\"%.6f\"/>\n", r->ppl_model);
    fprintf(f, "      <property name=\"ppl_base\" value=\"%.6f\"/>\n    </properties>\n", r->ppl_base);
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        const qf_verify_check *c = &r->checks[i];
        if (!c->given) continue;
        fprintf(f, "    <testcase classname=\"qforge.verify\" name=\"%s\">", c->name);
        if (!c->pass)
            fprintf(f, "\n      <failure message=\"%s = %.6g, limit %.6g\"/>\n    ", c->name, c->value, c->limit);
        fprintf(f, "</testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f) == 0;
}

static void print_verify(const qf_verify_result *r) {
    printf("chunks %u x ctx %u, %llu scored tokens\n", r->n_chunks, r->ctx, (unsigned long long)r->n_scored);
    printf("PPL(model)  = %.4f +/- %.5f\n", r->ppl_model, r->ppl_model_err);
    printf("PPL(base)   = %.4f +/- %.5f\n", r->ppl_base, r->ppl_base_err);
    printf("PPL ratio   = %.6f (%+.4f%%)\n", r->ppl_ratio, 100.0 * (r->ppl_ratio - 1.0));
    printf("KLD mean    = %.6f   median %.6f   p99 %.6f   max %.6f\n", r->kld_mean, r->kld_median, r->kld_p99,
           r->kld_max);
    if (r->kld_topk)
        printf("KLD from base logits: top %u tokens + the rest as one (a lower bound); mean mass of the rest %.4f\n",
               r->kld_topk, r->base_tail_mean);
    printf("same top-1  = %.3f%%\n", r->top1_pct);
    printf("RMS dp      = %.4f%%\n", r->dp_rms_pct);
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        const qf_verify_check *c = &r->checks[i];
        if (c->given) printf("check %-17s %s (%.6g, limit %.6g)\n", c->name, c->pass ? "PASS" : "FAIL", c->value, c->limit);
    }
}

static int verify_report(const verify_cli *v, const qf_verify_result *r) {
    print_verify(r);
    if (v->json) {
        cJSON *j = verify_json(v, r);
        char *s = j ? cJSON_Print(j) : NULL;
        bool ok = s && write_text(v->json, s);
        free(s);
        cJSON_Delete(j);
        if (!ok) { fprintf(stderr, "qforge verify: error: could not write %s\n", v->json); return 3; }
    }
    if (v->junit && !write_junit(v, r)) {
        fprintf(stderr, "qforge verify: error: could not write %s\n", v->junit);
        return 3;
    }
    return 0;
}

static void verify_progress(void *user, uint32_t chunk, uint32_t n_chunks, double ppl) {
    fprintf(stderr, "[%u]%.4f,", chunk, ppl);
    if (chunk == n_chunks) fputc('\n', stderr);
}

static int parse_verify(int argc, char **argv, verify_cli *v) {
    static const struct option opts[] = {
        COMMON_LONG_OPTS, {"base", required_argument, 0, 'm'}, {"max-kld", required_argument, 0, 'K'},
        {"max-ppl-increase", required_argument, 0, 'P'}, {"min-top1", required_argument, 0, 'T'},
        {"json", required_argument, 0, 'J'}, {"junit", required_argument, 0, 'U'},
        {"save-base", required_argument, 0, 'S'}, {"base-logits", required_argument, 0, 'L'},
        {"base-topk", required_argument, 0, 'k'}, {0, 0, 0, 0}};
    common_opts co = {0};
    v->o.max_kld = v->o.max_ppl_increase = v->o.min_top1 = -1;
    int c, rc;
    while ((c = getopt_long(argc, argv, "f:c:b:j:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(verify_help, stdout); return -1;
        case 'm': v->o.base = optarg; continue;
        case 'J': v->json = optarg; continue;
        case 'U': v->junit = optarg; continue;
        case 'S': v->o.save_base = optarg; continue;
        case 'L': v->o.base_logits = optarg; continue;
        case 'k':
            if (!parse_u32(optarg, 1, 4096, &v->o.base_topk))
                return qf_cli_usage("verify", "--base-topk takes an integer in 1..4096");
            continue;
        case 'K': if (!parse_nonneg(optarg, &v->o.max_kld)) return qf_cli_usage("verify", "--max-kld takes a number >= 0"); continue;
        case 'P': if (!parse_nonneg(optarg, &v->o.max_ppl_increase)) return qf_cli_usage("verify", "--max-ppl-increase takes a percentage >= 0"); continue;
        case 'T':
            if (!parse_nonneg(optarg, &v->o.min_top1) || v->o.min_top1 > 100) return qf_cli_usage("verify", "--min-top1 takes a percentage in 0..100");
            continue;
        }
        if ((rc = parse_common("verify", c, optarg, &co)) != 0) return rc > 0 ? rc : qf_cli_usage("verify", "unknown option");
    }
    if (optind + 1 != argc) return qf_cli_usage("verify", "expected exactly one MODEL");
    if (!v->o.base && !v->o.base_logits)
        return qf_cli_usage("verify", "--base BASE (or --base-logits FILE) is required");
    if (!co.text) return qf_cli_usage("verify", "--text FILE is required");
    v->o.model = argv[optind];
    v->o.text_path = co.text;
    v->o.ctx = co.ctx;
    v->o.chunks = co.chunks;
    v->o.batch = co.batch;
    v->o.threads = co.threads;
    v->o.no_escape = co.no_escape;
    v->o.act_q8 = co.act_q8;
    v->o.on_chunk = verify_progress;
    return 0;
}

int qf_cli_verify(int argc, char **argv) {
    /* `verify FILE --integrity` is the file-integrity check (cli_integrity.c), which parses its own options */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--integrity") == 0) return qf_cli_integrity(argc, argv);
    verify_cli v = {0};
    int rc = parse_verify(argc, argv, &v);
    if (rc) return rc < 0 ? 0 : rc;
    qf_verify_result r;
    qf_error err;
    qf_status st = qf_verify(&v.o, &r, &err);
    if (st != QF_OK && st != QF_E_CHECK) return qf_cli_fail("verify", &err);
    if ((rc = verify_report(&v, &r)) != 0) return rc;
    return st == QF_E_CHECK ? qf_cli_fail("verify", &err) : 0;
}
