/*
 * cli_verify.c — `qforge perplexity` and `qforge verify`: argument parsing, progress, the text report
 * in llama-perplexity's terms and the JSON / JUnit reports. The numbers come from qf_perplexity and
 * qf_verify (qforge.h).
 */
#include "convert/cli.h"
#include "convert/report.h"
#include "formats/outfile.h"
#include "qforge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Options both commands share. */
typedef struct eval_opts {
    const char *text;
    uint32_t ctx, chunks, batch;
    bool no_escape, act_q8;
    qf_cli_common co;
    qf_layer_major_opts lm;
    qf_cli_backend bk;
} eval_opts;

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

enum {
    OPT_CHUNKS = QF_OPT_FIRST_FREE, OPT_NO_ESCAPE, OPT_ACT, OPT_JSON, OPT_BASE, OPT_MAX_KLD, OPT_MAX_PPL,
    OPT_MIN_TOP1, OPT_JUNIT, OPT_SAVE_BASE, OPT_BASE_LOGITS, OPT_BASE_TOPK, OPT_MIN_ROUTE,
};

/* 0 when `c` was one of the shared options, 2 on a bad value, -1 when not shared. */
static int parse_eval_opt(const char *cmd, int c, const char *arg, eval_opts *o) {
    int rc = qf_cli_common_opt(cmd, c, arg, &o->co);
    if (rc < 0) rc = qf_cli_layer_major_opt(cmd, c, arg, &o->lm);
    if (rc < 0) rc = qf_cli_backend_opt(c, arg, &o->bk);
    if (rc >= 0) return rc;
    switch (c) {
    case 'f': o->text = arg; return 0;
    case 'c': return parse_u32(arg, 4, 1u << 20, &o->ctx) ? 0 : qf_cli_usage(cmd, "-c/--ctx-size takes an integer in 4..1048576");
    case OPT_CHUNKS: return parse_u32(arg, 1, UINT32_MAX, &o->chunks) ? 0 : qf_cli_usage(cmd, "--chunks takes a positive integer");
    case 'b': return parse_u32(arg, 1, 1u << 20, &o->batch) ? 0 : qf_cli_usage(cmd, "-b/--batch-size takes a positive integer");
    case OPT_NO_ESCAPE: o->no_escape = true; return 0;
    case OPT_ACT:
        if (strcmp(arg, "q8") == 0) o->act_q8 = true;
        else if (strcmp(arg, "f32") == 0) o->act_q8 = false;
        else return qf_cli_usage(cmd, "--act takes f32 or q8");
        return 0;
    default: return -1;
    }
}

#define EVAL_SHORT "f:c:b:t:j:m:qh"
#define EVAL_LONG_OPTS \
    {"text", required_argument, 0, 'f'}, {"file", required_argument, 0, 'f'}, {"ctx", required_argument, 0, 'c'}, \
    {"ctx-size", required_argument, 0, 'c'}, {"chunks", required_argument, 0, OPT_CHUNKS}, \
    {"batch", required_argument, 0, 'b'}, {"batch-size", required_argument, 0, 'b'}, \
    {"no-escape", no_argument, 0, OPT_NO_ESCAPE}, {"act", required_argument, 0, OPT_ACT}, \
    QF_CLI_THREADS_OPTS, QF_CLI_MODEL_OPTS, QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, QF_CLI_LAYER_MAJOR_OPTS, \
    QF_CLI_BACKEND_OPTS

#define EVAL_HELP \
    "  -m, --model MODEL      the model, instead of the MODEL argument\n" \
    "  -f, --file, --text F   evaluation text (llama-perplexity -f rules: one trailing newline dropped,\n" \
    "                         backslash escapes \\n \\t \\xNN ... processed unless --no-escape)\n" \
    "  -c, --ctx-size, --ctx N\n" \
    "                         tokens per chunk (default 512); positions N/2 .. N-2 are scored\n" \
    "      --chunks N         score the first N chunks (default: all)\n" \
    "  -b, --batch-size, --batch N\n" \
    "                         tokens per forward call, as llama-perplexity -b: N >= ctx evaluates\n" \
    "                         N/ctx chunks per call, N < ctx splits a chunk; results do not depend\n" \
    "                         on it. Layers run in passes of max(ctx, 1024) tokens. Memory per model:\n" \
    "                         4 x N x n_vocab bytes of logits, plus KV cache and activations for one\n" \
    "                         pass. Default: max(ctx, 1024), less where the logits would pass 64 MiB\n" \
    "                         (qf-llama-a, ctx 256: 512, 66 MB of logits)\n" \
    "      --act f32|q8       f32 (default): exact F32 arithmetic. q8: faster, inexact: activations\n" \
    "                         quantized to 8 bits per 32-block, as llama.cpp does, and integer products\n" \
    "                         with Q8_0/Q4_K/Q6_K weights (other weights stay F32)\n" \
    QF_CLI_LAYER_MAJOR_HELP QF_CLI_BACKEND_HELP QF_CLI_THREADS_HELP QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP

/* ---- perplexity ----------------------------------------------------------------------------------- */

static const char ppl_help[] =
    "usage: qforge perplexity MODEL -f TEXT [--ctx-size N] [--chunks N] [--batch-size N] [--threads N]\n"
    "                         [--layer-major] [--max-memory SIZE] [--backend auto|cpu|cuda] [--json]\n"
    "\n"
    "Perplexity of a model (GGUF file, or HF directory / shard index / archive read in place) with\n"
    "llama-perplexity's protocol: the text tokenized whole with BOS, cut into chunks of N tokens whose\n"
    "first token becomes BOS, the second half of each chunk scored. Progress (with the running PPL) goes\n"
    "to stderr; stdout gets the final estimate with its +/- like llama-perplexity, or the JSON object.\n"
    "\n" EVAL_HELP
    "      --json             print one JSON object on stdout instead (schema qforge.perplexity/1)\n";

static qf_status print_ppl_json(const qf_perplexity_opts *po, const qf_perplexity_result *r, qf_error *err) {
    cJSON *o = qf_report_new("qforge.perplexity/1");
    if (!o) return qf_fail(err, QF_E_NOMEM, "out of memory for the report");
    qf_status st = qf_report_add_model(o, "model", po->model, r->model_sha256, err);
    if (!st) st = qf_report_add_file(o, "text", po->text_path, err);
    if (st) { cJSON_Delete(o); return st; }
    qf_json_add_text(o, "model", po->model);
    qf_json_add_text(o, "text", po->text_path);
    cJSON_AddNumberToObject(o, "ctx", r->ctx);
    cJSON_AddNumberToObject(o, "chunks", r->n_chunks);
    cJSON_AddNumberToObject(o, "tokens_total", (double)r->n_tokens);
    cJSON_AddNumberToObject(o, "scored_tokens", (double)r->n_scored);
    cJSON_AddNumberToObject(o, "ppl", r->ppl);
    cJSON_AddNumberToObject(o, "ppl_pm", r->ppl_err);
    cJSON_AddNumberToObject(o, "mean_nll", r->mean_nll);
    cJSON_AddNumberToObject(o, "eval_seconds", r->eval_seconds);
    cJSON_AddNumberToObject(o, "tokens_per_second", r->tokens_per_second);
    return qf_report_print(o, stdout) ? QF_OK : qf_fail(err, QF_E_IO, "could not write the report to stdout");
}

int qf_cli_perplexity(int argc, char **argv) {
    static const struct option opts[] = {EVAL_LONG_OPTS, {"json", no_argument, 0, OPT_JSON}, {0, 0, 0, 0}};
    eval_opts eo = {0};
    bool json = false;
    int c, rc;
    while ((c = qf_cli_getopt("perplexity", argc, argv, EVAL_SHORT, opts)) != -1) {
        if (c == 'h') { fputs(ppl_help, stdout); return 0; }
        if (c == OPT_JSON) { json = true; continue; }
        if ((rc = parse_eval_opt("perplexity", c, optarg, &eo)) != 0) return rc > 0 ? rc : 2;
    }
    const char *model = qf_cli_positional("perplexity", argc, argv, &eo.co, "MODEL");
    if (!model) return 2;
    if (!eo.text) return qf_cli_usage("perplexity", "-f/--text FILE is required");
    eo.bk.cmd = "perplexity";
    eo.bk.quiet = eo.co.quiet;
    qf_backend_opts bo;
    if (qf_cli_backend_opts(&eo.bk, &bo)) return 2;
    qf_cli_progress p;
    qf_cli_progress_start(&p, "perplexity", &eo.co);
    qf_cli_lm lmu = {"perplexity", eo.co.quiet};
    qf_perplexity_opts o = {.model = model, .text_path = eo.text, .ctx = eo.ctx, .chunks = eo.chunks,
                            .batch = eo.batch, .threads = eo.co.threads, .no_escape = eo.no_escape,
                            .act_q8 = eo.act_q8, .on_chunk = qf_cli_progress_chunks, .user = &p, .layer_major = eo.lm,
                            .backend = bo};
    o.layer_major.on_plan = qf_cli_layer_major_plan;
    o.layer_major.user = &lmu;
    o.file_sha256 = json;
    qf_perplexity_result r;
    qf_error err;
    qf_status st = qf_perplexity(&o, &r, &err);
    qf_cli_progress_end(&p);
    if (st != QF_OK) return qf_cli_fail("perplexity", &err);
    if (!eo.co.quiet)
        fprintf(stderr, "qforge perplexity: %u chunks of %u tokens (%llu scored) in %.2f s, %.1f tokens/s\n", r.n_chunks,
                r.ctx, (unsigned long long)r.n_scored, r.eval_seconds, r.tokens_per_second);
    if (json) return print_ppl_json(&o, &r, &err) ? qf_cli_fail("perplexity", &err) : 0;
    printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    return 0;
}

/* ---- verify --------------------------------------------------------------------------------------- */

static const char verify_help[] =
    "usage: qforge verify MODEL (--base BASE | --base-logits FILE) -f TEXT [--ctx-size N] [--chunks N]\n"
    "                     [--max-kld X] [--max-ppl-increase P] [--min-top1 P] [--min-route-agree A]\n"
    "                     [--json FILE] [--junit FILE] [--save-base FILE] [--base-topk K]\n"
    "                     [--layer-major] [--max-memory SIZE] [--backend auto|cpu|cuda]\n"
    "\n"
    "Run MODEL and BASE side by side on the same chunks of text and compare their next-token\n"
    "distributions: PPL of each and their ratio, KL(base || model) per token (mean with its +/- as\n"
    "llama-perplexity prints it, median, p99, max), how often the most likely token agrees, RMS change in\n"
    "the probability of the correct token. Exit 0 when every threshold given holds, 1 when one fails,\n"
    "2 on bad input (e.g. vocabularies that differ). 'qforge verify FILE --integrity' checks a file's\n"
    "digests instead (see --integrity --help).\n"
    "\n"
    "      --base BASE        the reference model (GGUF or HF checkpoint)\n" EVAL_HELP
    "      --max-kld X        fail when the mean KLD exceeds X (nats)\n"
    "      --max-ppl-increase P\n"
    "                         fail when PPL(model) exceeds PPL(base) by more than P percent\n"
    "      --min-top1 P       fail when fewer than P percent of top-1 tokens agree\n"
    "      --min-route-agree A\n"
    "                         mixture-of-experts models: fail when, in some MoE layer, the mean share\n"
    "                         of a token's k experts that are the base's falls below A (0 < A <= 1).\n"
    "                         Routing agreement per layer is reported for every MoE model without it\n"
    "      --json FILE        write the report as JSON (schema qforge.verify/1; '-' = stdout, and the\n"
    "                         text report then goes to stderr)\n"
    "      --junit FILE       write a JUnit XML file with one testcase per metric; a metric with a\n"
    "                         threshold fails its testcase when the threshold does not hold ('-' =\n"
    "                         stdout, as for --json)\n"
    "      --save-base FILE   also save the base's next-token distributions, compactly (the K most\n"
    "                         likely tokens and the tail mass per position, and a MoE base's experts\n"
    "                         per token and layer), with digests of the base, vocabulary, text and tokens\n"
    "      --base-logits FILE compare with such a file instead of running the base (--base then\n"
    "                         optional, and checked to be the file's base); KLD over the K tokens\n"
    "                         plus the rest as one: a lower bound of the full KLD (0.93-0.96 of it on\n"
    "                         qf-llama-a at K = 1024, README); ctx and chunks default to the file's;\n"
    "                         a file made for another text or setting is refused\n"
    "      --base-topk K      tokens kept per position by --save-base (default 1024, or the whole vocabulary\n"
    "                         if smaller; 8 + 8K bytes)\n";

typedef struct verify_cli {
    qf_verify_opts o;
    const char *json, *junit;
    qf_cli_common co;
    qf_cli_backend bk;
} verify_cli;

/* The metrics a report carries, in order, the threshold (check) that gates each, if any, and whether
 * it fails (a MoE layer fails on its own when below the routing gate). */
typedef struct metric {
    char name[40];
    double value;
    int check; /* qf_verify_check_id, or -1 */
    bool fail;
} metric;

#define N_METRICS 10      /* every model's */
#define N_ROUTE_SUMMARY 3 /* a MoE model's, before two per MoE layer */

/* Every metric of r: a malloc'd array of *n, NULL when out of memory. */
static metric *metrics(const qf_verify_result *r, size_t *n) {
    const metric all[N_METRICS + N_ROUTE_SUMMARY] = {
        {"ppl_model", r->ppl_model, -1, false}, {"ppl_base", r->ppl_base, -1, false},
        {"ppl_ratio", r->ppl_ratio, -1, false}, {"ppl_increase_pct", 100.0 * (r->ppl_ratio - 1.0), QF_CHECK_PPL, false},
        {"kld_mean", r->kld_mean, QF_CHECK_KLD, false}, {"kld_median", r->kld_median, -1, false},
        {"kld_p99", r->kld_p99, -1, false}, {"kld_max", r->kld_max, -1, false},
        {"same_top1_pct", r->top1_pct, QF_CHECK_TOP1, false}, {"rms_dp_pct", r->dp_rms_pct, -1, false},
        {"route_agree_min", r->route_agree_min, QF_CHECK_ROUTE, false},
        {"route_agree_mean", r->route_agree_mean, -1, false}, {"route_same_mean", r->route_same_mean, -1, false}};
    size_t routed = r->route_n_layers ? N_ROUTE_SUMMARY + 2 * (size_t)r->route_n_layers : 0;
    metric *m = calloc(N_METRICS + routed, sizeof *m);
    if (!m) return NULL;
    *n = N_METRICS + (routed ? N_ROUTE_SUMMARY : 0);
    memcpy(m, all, *n * sizeof *m);
    for (size_t i = 0; i < *n; i++) m[i].fail = m[i].check >= 0 && !r->checks[m[i].check].pass;
    for (uint32_t i = 0; i < r->route_n_layers; i++) {
        const qf_verify_route *e = &r->route[i];
        m[*n] = (metric){.value = e->agree, .check = QF_CHECK_ROUTE, .fail = e->below};
        snprintf(m[(*n)++].name, sizeof m->name, "route_agree.blk.%u", e->layer);
        m[*n] = (metric){.value = e->same, .check = -1};
        snprintf(m[(*n)++].name, sizeof m->name, "route_same.blk.%u", e->layer);
    }
    return m;
}

/* The routing section of a MoE model's JSON report (dense models have none). */
static void routing_json(cJSON *o, const qf_verify_result *r) {
    if (!r->route_n_layers && !r->route_none[0]) return;
    cJSON *rt = cJSON_AddObjectToObject(o, "routing");
    cJSON_AddBoolToObject(rt, "available", r->route_n_layers > 0);
    if (!r->route_n_layers) { cJSON_AddStringToObject(rt, "reason", r->route_none); return; }
    cJSON_AddNumberToObject(rt, "experts", r->route_n_expert);
    cJSON_AddNumberToObject(rt, "experts_used", r->route_k);
    cJSON_AddNumberToObject(rt, "agree_mean", r->route_agree_mean);
    cJSON_AddNumberToObject(rt, "agree_min", r->route_agree_min);
    cJSON_AddNumberToObject(rt, "agree_min_layer", r->route_agree_min_layer);
    cJSON_AddNumberToObject(rt, "same_mean", r->route_same_mean);
    cJSON *layers = cJSON_AddArrayToObject(rt, "layers");
    for (uint32_t i = 0; i < r->route_n_layers; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "layer", r->route[i].layer);
        cJSON_AddNumberToObject(e, "agree", r->route[i].agree);
        cJSON_AddNumberToObject(e, "same", r->route[i].same);
        if (r->checks[QF_CHECK_ROUTE].given) cJSON_AddBoolToObject(e, "pass", !r->route[i].below);
        cJSON_AddItemToArray(layers, e);
    }
}

/* The routing gate's check names the worst layer and every layer below the limit. */
static void route_check_json(cJSON *e, const qf_verify_result *r) {
    cJSON_AddNumberToObject(e, "layer", r->route_agree_min_layer);
    cJSON *below = cJSON_AddArrayToObject(e, "layers_failed");
    for (uint32_t i = 0; i < r->route_n_layers; i++)
        if (r->route[i].below) cJSON_AddItemToArray(below, cJSON_CreateNumber(r->route[i].layer));
}

static qf_status verify_json(const verify_cli *v, const qf_verify_result *r, cJSON **out, qf_error *err) {
    cJSON *o = qf_report_new("qforge.verify/1");
    if (!o) return qf_fail(err, QF_E_NOMEM, "out of memory for the report");
    qf_status st = qf_report_add_model(o, "model", v->o.model, r->model_sha256, err);
    if (!st && v->o.base) st = qf_report_add_model(o, "base", v->o.base, r->base_sha256, err);
    if (!st && v->o.base_logits) st = qf_report_add_file(o, "base_logits", v->o.base_logits, err);
    if (!st) st = qf_report_add_file(o, "text", v->o.text_path, err);
    if (st) { cJSON_Delete(o); return st; }
    qf_json_add_text(o, "model", v->o.model);
    if (v->o.base) qf_json_add_text(o, "base", v->o.base);
    qf_json_add_text(o, "text", v->o.text_path);
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
    cJSON_AddNumberToObject(o, "kld_mean_pm", r->kld_mean_err);
    cJSON_AddNumberToObject(o, "kld_median", r->kld_median);
    cJSON_AddNumberToObject(o, "kld_p99", r->kld_p99);
    cJSON_AddNumberToObject(o, "kld_max", r->kld_max);
    cJSON_AddNumberToObject(o, "kld_topk", r->kld_topk);
    if (r->kld_topk) cJSON_AddNumberToObject(o, "base_tail_mean", r->base_tail_mean);
    if (v->o.base_logits) qf_json_add_text(o, "base_logits", v->o.base_logits);
    cJSON_AddNumberToObject(o, "same_top1_pct", r->top1_pct);
    cJSON_AddNumberToObject(o, "rms_dp_pct", r->dp_rms_pct);
    routing_json(o, r);
    cJSON *checks = cJSON_AddArrayToObject(o, "checks");
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        const qf_verify_check *c = &r->checks[i];
        if (!c->given) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", c->name);
        cJSON_AddNumberToObject(e, "limit", c->limit);
        cJSON_AddNumberToObject(e, "value", c->value);
        cJSON_AddBoolToObject(e, "pass", c->pass);
        if (i == QF_CHECK_ROUTE) route_check_json(e, r);
        cJSON_AddItemToArray(checks, e);
    }
    cJSON_AddBoolToObject(o, "pass", r->pass);
    *out = o;
    return QF_OK;
}

/* An XML attribute value: markup escaped, and text made safe first (XML 1.0 allows no C0 controls). */
static void xml_escaped(FILE *f, const char *s) {
    char *safe = qf_text_escaped(s, QF_TEXT_TERMINAL);
    for (const char *p = safe ? safe : ""; *p; p++) {
        switch (*p) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p, f);
        }
    }
    free(safe);
}

static void junit_property(FILE *f, const char *name, const char *text) {
    fprintf(f, "      <property name=\"%s\" value=\"", name);
    xml_escaped(f, text);
    fprintf(f, "\"/>\n");
}

static bool write_junit(const verify_cli *v, const qf_verify_result *r, qf_error *err) {
    char *xml = NULL;
    size_t len = 0;
    size_t n_m = 0;
    metric *m = metrics(r, &n_m);
    FILE *f = m ? open_memstream(&xml, &len) : NULL;
    if (!f) { free(m); return false; }
    int failures = 0;
    bool skipped = r->route_none[0] != '\0';
    for (size_t i = 0; i < n_m; i++) failures += m[i].fail;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    fprintf(f, "  <testsuite name=\"qforge.verify\" tests=\"%zu\" failures=\"%d\" errors=\"0\" skipped=\"%d\" "
            "time=\"%.3f\">\n", n_m + skipped, failures, skipped, r->eval_seconds);
    fprintf(f, "    <properties>\n");
    junit_property(f, "model", v->o.model);
    if (v->o.base) junit_property(f, "base", v->o.base);
    if (v->o.base_logits) junit_property(f, "base_logits", v->o.base_logits);
    junit_property(f, "text", v->o.text_path);
    fprintf(f, "      <property name=\"qforge_version\" value=\"%s\"/>\n    </properties>\n", QF_VERSION_STRING);
    for (size_t i = 0; i < n_m; i++) {
        const qf_verify_check *c = m[i].check >= 0 && r->checks[m[i].check].given ? &r->checks[m[i].check] : NULL;
        fprintf(f, "    <testcase classname=\"qforge.verify\" name=\"%s\">\n", m[i].name);
        if (m[i].fail)
            fprintf(f, "      <failure message=\"%s = %.6g, %s %.6g\"/>\n", m[i].name, m[i].value, c->name, c->limit);
        if (c) fprintf(f, "      <system-out>%s = %.6g (%s %.6g)</system-out>\n", m[i].name, m[i].value, c->name, c->limit);
        else fprintf(f, "      <system-out>%s = %.6g (no threshold)</system-out>\n", m[i].name, m[i].value);
        fprintf(f, "    </testcase>\n");
    }
    if (skipped) {
        /* a MoE model whose routing could not be compared: said, never a number */
        fprintf(f, "    <testcase classname=\"qforge.verify\" name=\"route_agree_min\">\n      <skipped message=\"");
        xml_escaped(f, r->route_none);
        fprintf(f, "\"/>\n    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    bool ok = fclose(f) == 0 && qf_cli_write_file(v->junit, xml, len, err);
    free(xml);
    free(m);
    return ok;
}

/* MoE models: per layer, the mean share of a token's experts that are the base's, and how often all are. */
static void print_routes(FILE *out, const qf_verify_result *r) {
    if (r->route_none[0]) fprintf(out, "route agree = not available: %s\n", r->route_none);
    if (!r->route_n_layers) return;
    fprintf(out, "route agree = %.6f mean, %.6f min (layer %u)   same experts %.3f%%   (%u of %u experts, %u layers)\n",
            r->route_agree_mean, r->route_agree_min, r->route_agree_min_layer, 100.0 * r->route_same_mean, r->route_k,
            r->route_n_expert, r->route_n_layers);
    fprintf(out, "  layer     agree      same\n");
    for (uint32_t i = 0; i < r->route_n_layers; i++)
        fprintf(out, "  %5u  %.6f  %7.3f%%%s\n", r->route[i].layer, r->route[i].agree, 100.0 * r->route[i].same,
                r->route[i].below ? "   below min_route_agree" : "");
}

static void print_verify(FILE *out, const qf_verify_result *r) {
    fprintf(out, "chunks %u x ctx %u, %llu scored tokens\n", r->n_chunks, r->ctx, (unsigned long long)r->n_scored);
    fprintf(out, "PPL(model)  = %.4f +/- %.5f\n", r->ppl_model, r->ppl_model_err);
    fprintf(out, "PPL(base)   = %.4f +/- %.5f\n", r->ppl_base, r->ppl_base_err);
    fprintf(out, "PPL ratio   = %.6f (%+.4f%%)\n", r->ppl_ratio, 100.0 * (r->ppl_ratio - 1.0));
    fprintf(out, "Mean KLD    = %.6f +/- %.6f\n", r->kld_mean, r->kld_mean_err);
    fprintf(out, "KLD median  = %.6f   p99 %.6f   max %.6f\n", r->kld_median, r->kld_p99, r->kld_max);
    if (r->kld_topk)
        fprintf(out, "KLD from base logits: top %u tokens + the rest as one (a lower bound); mean mass of the rest %.4f\n",
                r->kld_topk, r->base_tail_mean);
    fprintf(out, "same top-1  = %.3f%%\n", r->top1_pct);
    fprintf(out, "RMS dp      = %.4f%%\n", r->dp_rms_pct);
    print_routes(out, r);
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        const qf_verify_check *c = &r->checks[i];
        if (c->given) fprintf(out, "check %-17s %s (%.6g, limit %.6g)\n", c->name, c->pass ? "PASS" : "FAIL", c->value, c->limit);
    }
}

static int verify_report(const verify_cli *v, const qf_verify_result *r) {
    bool report_stdout = (v->json && strcmp(v->json, "-") == 0) || (v->junit && strcmp(v->junit, "-") == 0);
    print_verify(report_stdout ? stderr : stdout, r);
    if (v->json) {
        cJSON *j = NULL;
        qf_error err = {QF_E_IO, ""};
        if (verify_json(v, r, &j, &err)) return qf_cli_fail("verify", &err);
        char *s = cJSON_Print(j);
        bool ok = s && qf_cli_write_text(v->json, s, &err);
        free(s);
        cJSON_Delete(j);
        if (!ok) { fprintf(stderr, "qforge verify: error: could not write %s: %s\n", v->json, err.msg); return 3; }
    }
    qf_error err = {QF_E_IO, ""};
    if (v->junit && !write_junit(v, r, &err)) {
        fprintf(stderr, "qforge verify: error: could not write %s: %s\n", v->junit, err.msg);
        return 3;
    }
    return 0;
}

static int parse_verify(int argc, char **argv, verify_cli *v) {
    static const struct option opts[] = {
        EVAL_LONG_OPTS, {"base", required_argument, 0, OPT_BASE}, {"max-kld", required_argument, 0, OPT_MAX_KLD},
        {"max-ppl-increase", required_argument, 0, OPT_MAX_PPL}, {"min-top1", required_argument, 0, OPT_MIN_TOP1},
        {"json", required_argument, 0, OPT_JSON}, {"junit", required_argument, 0, OPT_JUNIT},
        {"save-base", required_argument, 0, OPT_SAVE_BASE}, {"base-logits", required_argument, 0, OPT_BASE_LOGITS},
        {"base-topk", required_argument, 0, OPT_BASE_TOPK}, {"min-route-agree", required_argument, 0, OPT_MIN_ROUTE},
        {0, 0, 0, 0}};
    eval_opts eo = {0};
    v->o.max_kld = v->o.max_ppl_increase = v->o.min_top1 = -1;
    int c, rc;
    while ((c = qf_cli_getopt("verify", argc, argv, EVAL_SHORT, opts)) != -1) {
        switch (c) {
        case 'h': fputs(verify_help, stdout); return -1;
        case OPT_BASE: v->o.base = optarg; continue;
        case OPT_JSON: v->json = optarg; continue;
        case OPT_JUNIT: v->junit = optarg; continue;
        case OPT_SAVE_BASE: v->o.save_base = optarg; continue;
        case OPT_BASE_LOGITS: v->o.base_logits = optarg; continue;
        case OPT_BASE_TOPK:
            if (!parse_u32(optarg, 1, 4096, &v->o.base_topk))
                return qf_cli_usage("verify", "--base-topk takes an integer in 1..4096");
            continue;
        case OPT_MAX_KLD: if (!parse_nonneg(optarg, &v->o.max_kld)) return qf_cli_usage("verify", "--max-kld takes a number >= 0"); continue;
        case OPT_MAX_PPL: if (!parse_nonneg(optarg, &v->o.max_ppl_increase)) return qf_cli_usage("verify", "--max-ppl-increase takes a percentage >= 0"); continue;
        case OPT_MIN_ROUTE:
            if (!parse_nonneg(optarg, &v->o.min_route_agree) || !(v->o.min_route_agree > 0) || v->o.min_route_agree > 1)
                return qf_cli_usage("verify", "--min-route-agree takes a fraction in (0, 1] (1: every expert the base's)");
            continue;
        case OPT_MIN_TOP1:
            if (!parse_nonneg(optarg, &v->o.min_top1) || v->o.min_top1 > 100) return qf_cli_usage("verify", "--min-top1 takes a percentage in 0..100");
            continue;
        }
        if ((rc = parse_eval_opt("verify", c, optarg, &eo)) != 0) return rc > 0 ? rc : 2;
    }
    if (!(v->o.model = qf_cli_positional("verify", argc, argv, &eo.co, "MODEL"))) return 2;
    if (v->json && v->junit && !strcmp(v->json, "-") && !strcmp(v->junit, "-"))
        return qf_cli_usage("verify", "--json - and --junit - would both write to stdout: name a file for one");
    if (!v->o.base && !v->o.base_logits)
        return qf_cli_usage("verify", "--base BASE (or --base-logits FILE) is required");
    if (!eo.text) return qf_cli_usage("verify", "-f/--text FILE is required");
    v->o.text_path = eo.text;
    v->o.ctx = eo.ctx;
    v->o.chunks = eo.chunks;
    v->o.batch = eo.batch;
    v->o.threads = eo.co.threads;
    v->o.layer_major = eo.lm;
    v->o.no_escape = eo.no_escape;
    v->o.act_q8 = eo.act_q8;
    v->co = eo.co;
    v->bk = eo.bk;
    return 0;
}

/* The report files are checked like every output before the models run (formats/outfile.h). */
static qf_status check_reports(const verify_cli *v, qf_error *err) {
    const char *outs[] = {v->json && strcmp(v->json, "-") ? v->json : NULL,
                          v->junit && strcmp(v->junit, "-") ? v->junit : NULL, v->o.save_base};
    for (size_t i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        const char *others[] = {v->o.model, v->o.base, v->o.base_logits, v->o.text_path,
                                outs[(i + 1) % 3], outs[(i + 2) % 3]};
        qf_status st = qf_outfile_check(outs[i], others, 6, err);
        if (st) return st;
    }
    return QF_OK;
}

int qf_cli_verify(int argc, char **argv) {
    /* `verify FILE --integrity` is the file-integrity check (cli_integrity.c), which parses its own options */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--integrity") == 0) return qf_cli_integrity(argc, argv);
    verify_cli v = {0};
    int rc = parse_verify(argc, argv, &v);
    if (rc) return rc < 0 ? 0 : rc;
    v.bk.cmd = "verify";
    v.bk.quiet = v.co.quiet;
    if (qf_cli_backend_opts(&v.bk, &v.o.backend)) return 2;
    qf_cli_progress p;
    qf_cli_progress_start(&p, "verify", &v.co);
    v.o.on_chunk = qf_cli_progress_chunks;
    v.o.user = &p;
    qf_cli_lm lmu = {"verify", v.co.quiet};
    v.o.layer_major.on_plan = qf_cli_layer_major_plan;
    v.o.layer_major.user = &lmu;
    v.o.file_sha256 = v.json != NULL;
    qf_verify_result r;
    qf_error err;
    if (check_reports(&v, &err) != QF_OK) return qf_cli_fail("verify", &err);
    qf_status st = qf_verify(&v.o, &r, &err);
    qf_cli_progress_end(&p);
    /* a run that stopped (a non-finite value: QF_E_CHECK too) has no figures: no report says otherwise */
    bool complete = st == QF_OK || (st == QF_E_CHECK && r.n_scored > 0);
    if (!complete) { qf_verify_result_free(&r); return qf_cli_fail("verify", &err); }
    rc = verify_report(&v, &r);
    qf_verify_result_free(&r);
    if (rc) return rc;
    return st == QF_E_CHECK ? qf_cli_fail("verify", &err) : 0;
}
