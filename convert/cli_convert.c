/*
 * cli_convert.c — `qforge convert`, `qforge quantize` and `qforge calibrate`: argument parsing, progress
 * and the summary line. The work is qf_convert and qf_calibrate (qforge.h).
 */
#include "convert/cli.h"
#include "convert/report.h"
#include "formats/gguf_split.h"
#include "formats/imatrix.h"
#include "formats/outfile.h"
#include "qforge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CONVERT_SHARED_HELP \
    "  -m, --model SRC        the source, instead of the SRC argument\n" \
    "  -o, --output FILE      output GGUF (written to a temp file, fsynced, renamed when complete)\n" \
    "  -n, --dry-run          print the plan (tensor, shape, type, bytes, reason) and totals; write nothing\n" \
    "      --json             with --dry-run: the plan as one JSON object on stdout\n" \
    "      --name NAME        general.name of the output (default: the model directory's name; NAME for\n" \
    "                         an HF cache's models--ORG--NAME)\n" \
    "      --override-kv KEY=TYPE:VALUE\n" \
    "                         set a metadata key as llama-quantize does (TYPE int, float, bool or str;\n" \
    "                         int is written as u32, or as the key's own integer type in a GGUF source);\n" \
    "                         repeatable. qforge.* keys (provenance, digests) cannot be overridden\n" \
    "      --allow-requantize accept a GGUF whose tensors are already quantized: they are dequantized and\n" \
    "                         quantized again, adding a second rounding error (refused without it, as\n" \
    "                         llama-quantize does)\n" \
    "      --clamp-overflow   clamp weights beyond a type's range (its F16 scales would be Inf: q8_0\n" \
    "                         |x| > 8.3e6, q4_0 > 5.2e5, f16 > 65504, ...) instead of refusing (exit 2);\n" \
    "                         the file records it (qforge.clamp_overflow, qforge.clamped)\n" \
    "      --split-max-size S write llama.cpp's split layout (as llama-gguf-split): OUT-00001-of-0000N.gguf\n" \
    "                         ... (OUT = -o without .gguf), each part at most S tensor bytes (500M, 50G:\n" \
    "                         10^6, 10^9 bytes), whole tensors only; llama.cpp loads the first part\n" \
    "      --split-max-tensors N  the same, at most N tensors per part\n" \
    "      --only-split K     write part K alone, byte for byte as the whole run writes it (one job of a\n" \
    "                         batch array per part; --dry-run lists the parts)\n" \
    QF_CLI_THREADS_HELP QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP

static const char convert_help[] =
    "usage: qforge convert SRC -o OUT.gguf [--type f32|f16|bf16|q8_0] [--threads N] [--dry-run [--json]]\n"
    "\n"
    "Convert a Hugging Face checkpoint to GGUF, streaming tensor by tensor.\n"
    "SRC is a model directory, an HF cache entry (~/.cache/huggingface/hub/models--ORG--NAME: the snapshot\n"
    "refs/main names), a .safetensors file, a model.safetensors.index.json, an archive (.tar, .tar.gz,\n"
    ".tar.zst, .zip) holding one model directory (read without unpacking it), or a GGUF file.\n"
    "FP8 checkpoints (E4M3 + weight_scale_inv blocks, or compressed-tensors weight_scale) are\n"
    "dequantized on the fly.\n"
    "\n"
    "      --type T           type of 2-D weights (default f16); 1-D tensors stay F32; rows that do not\n"
    "                         fit a type's blocks fall back (K-quants -> Q5_0/Q5_1/Q8_0, then F16)\n"
    CONVERT_SHARED_HELP
    "\n"
    "Short flags mean the same in every qforge command and follow llama.cpp: -t is --threads (-j too);\n"
    "--type has no short form.\n";

static const char quantize_help[] =
    "usage: qforge quantize SRC -o OUT.gguf (--type T | --recipe R [--sensitivity F] | --sensitivity F --target-size S)\n"
    "                       [--tensor-type REGEX=T]...\n"
    "                       [--imatrix F] [--method rtn|weighted|gptq] [--dry-run [--json]] [--threads N]\n"
    "\n"
    "Quantize a checkpoint (as for convert: HF directory, cache entry or archive, BF16 or FP8\n"
    "block-scaled, or an F32/F16/BF16 GGUF) to GGUF in one streaming pass. 1-D tensors (norms, biases)\n"
    "stay F32. Rows that do not fit a type's blocks fall back (Q2_K/Q3_K/Q4_K -> Q5_0, Q5_K -> Q5_1,\n"
    "Q6_K -> Q8_0, then F16); --dry-run shows each reason.\n"
    "\n"
    "      --type T           one type for every 2-D weight (a recipe name gets a hint)\n"
    "  -r, --recipe R         a named mix (below; Q4_K_M = q4_k_m)\n"
    "  -T, --tensor-type RE=T PCRE2 regex searched in the GGUF tensor name; first match wins and beats\n"
    "                         the recipe (repeatable), e.g. 'attn_v=q8_0' or 'blk\\.\\d\\.=q6_K'. One that\n"
    "                         decides no tensor is a warning (an error with --strict)\n"
    "      --strict           a --tensor-type that decides no tensor is an error\n"
    "  -i, --imatrix F        importance matrix: llama.cpp's GGUF layout (qforge calibrate,\n"
    "                         llama-imatrix) or its legacy imatrix.dat; tensors it lacks are quantized\n"
    "                         as with rtn\n"
    "      --method M         rtn (no calibration: plain error, or magnitude-weighted below 4 bpw)\n"
    "                         | weighted (imatrix-weighted scale search, hedged by magnitude below\n"
    "                         4 bpw; default with --imatrix)\n"
    "                         | gptq (Hessian error feedback; default with --hessian)\n"
    "  -H, --hessian F        GPTQ Hessians from 'qforge calibrate --hessian'; GPTQ holds one weight\n"
    "                         matrix as F32 plus its n x n Hessian twice in doubles\n"
    "      --gptq-damp X      diagonal damping as a fraction of mean diag(H) (default 0.01)\n"
    "      --gptq-order O     natural | energy (blocks by descending input energy; default natural)\n"
    "      --expert-min-tokens N\n"
    "                         a routed expert the imatrix gives fewer tokens is under-covered (default\n"
    "                         64); --dry-run lists them per layer\n"
    "      --sparse-experts P blend (default: its sums completed to N tokens at its layer's pooled\n"
    "                         expert mean) | pooled (the pooled mean alone) | own (its own mean; all\n"
    "                         ones with no token, as llama-quantize)\n"
    "\n"
    "Automatic mix (instead of --type): every quantized tensor gets the candidate type that minimizes\n"
    "the predicted KLD within the budget, from a table made by 'qforge measure' (give the same\n"
    "--imatrix); --dry-run shows each tensor's type and predicted KLD. --tensor-type pins still win;\n"
    "norms and routers stay F32. The budget is one of the targets below, or a recipe's size:\n"
    "--recipe q4_k_m --sensitivity F is a file no larger than q4_k_m's whose bytes go where the table\n"
    "predicts they buy the most (llama.cpp loads it; qforge.recipe 'auto:q4_k_m').\n"
    "      --sensitivity F    the table (qforge measure -o F)\n"
    "      --target-size S    the file at most S bytes (K/M/G/T = 10^3/10^6/10^9/10^12: 20M, 4.5G)\n"
    "      --target-bpw X     at most X bits per weight over all tensors\n"
    "      --max-kld K        the smallest mix whose predicted mean KLD is at most K (with a size\n"
    "                         target too: within it)\n"
    "      --allow-extension-types\n"
    "                         the solver may choose qforge's own types (FP8 ...), which llama.cpp cannot\n"
    "                         load; default: ggml types only\n"
    CONVERT_SHARED_HELP;

static void print_quantize_help(void) {
    fputs(quantize_help, stdout);
    printf("\nrecipes:\n");
    const char *summary;
    for (size_t i = 0; qf_recipe_name(i, &summary); i++) printf("  %-10s %s\n", qf_recipe_name(i, &summary), summary);
    printf("\ntypes:");
    for (size_t i = 0; qf_writable_type_name(i); i++) printf(" %s", qf_writable_type_name(i));
    printf("\n\nShort flags mean the same in every qforge command and follow llama.cpp: -m is --model, -t is\n"
           "--threads (-j too); --type and --method have no short form.\n");
}

enum {
    OPT_TYPE = QF_OPT_FIRST_FREE, OPT_METHOD, OPT_DAMP, OPT_ORDER, OPT_JSON, OPT_NAME, OPT_OVERRIDE_KV,
    OPT_REQUANT, OPT_STRICT, OPT_CLAMP, OPT_MIN_TOKENS, OPT_SPARSE, OPT_SPLIT_SIZE, OPT_SPLIT_TENSORS, OPT_ONLY_SPLIT,
    OPT_SENS, OPT_TARGET_SIZE, OPT_TARGET_BPW, OPT_MAX_KLD, OPT_ALLOW_EXT,
};

static int parse_u32(const char *cmd, const char *opt, const char *s, uint32_t *out);

#define QF_MAX_LIST 256

typedef struct convert_cli {
    qf_convert_opts o;
    qf_cli_common co;
    const char *tensor_types[QF_MAX_LIST], *kv[QF_MAX_LIST];
} convert_cli;

static int add_listed(const char *cmd, const char **list, size_t *n, const char *v, const char *opt) {
    if (*n == QF_MAX_LIST) {
        char msg[96];
        snprintf(msg, sizeof msg, "more than %d %s options", QF_MAX_LIST, opt);
        return qf_cli_usage(cmd, msg);
    }
    list[(*n)++] = v;
    return 0;
}

/* A number in (0, max] for option opt. */
static int parse_positive(const char *cmd, const char *opt, const char *s, double max, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v > 0 && v <= max)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes a number above 0 and at most %g", opt, max);
        return qf_cli_usage(cmd, msg);
    }
    *out = v;
    return 0;
}

/* Bytes with an optional decimal K/M/G/T suffix (10^3 ..), as the split sizes. */
static int parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    double unit = !*end ? 1 : !strcmp(end, "K") ? 1e3 : !strcmp(end, "M") ? 1e6 : !strcmp(end, "G") ? 1e9
                : !strcmp(end, "T") ? 1e12 : 0;
    if (!*s || unit == 0 || !(v > 0) || v * unit >= 1e18) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s takes a size in bytes, optionally with K, M, G or T (10^3 ..): '%s'", opt, s);
        return qf_cli_usage(cmd, msg);
    }
    *out = (uint64_t)(v * unit);
    return 0;
}

/* The options only quantize has: 0 taken, 2 bad value, -1 not one of them. */
static int quantize_opt(const char *cmd, int c, const char *arg, convert_cli *v) {
    char *end;
    switch (c) {
    case 'r': v->o.recipe = arg; return 0;
    case 'T': return add_listed(cmd, v->tensor_types, &v->o.n_tensor_types, arg, "--tensor-type");
    case 'i': v->o.imatrix = arg; return 0;
    case 'H': v->o.hessian = arg; return 0;
    case OPT_METHOD: v->o.method = arg; return 0;
    case OPT_STRICT: v->o.strict = true; return 0;
    case OPT_MIN_TOKENS: return parse_u32(cmd, "--expert-min-tokens", arg, &v->o.expert_min_tokens) ? 2 : 0;
    case OPT_SPARSE: v->o.sparse_experts = arg; return 0;
    case OPT_SENS: v->o.sensitivity = arg; return 0;
    case OPT_ALLOW_EXT: v->o.allow_extension_types = true; return 0;
    case OPT_TARGET_SIZE: return parse_size(cmd, "--target-size", arg, &v->o.target_size);
    case OPT_TARGET_BPW: return parse_positive(cmd, "--target-bpw", arg, 64, &v->o.target_bpw);
    case OPT_MAX_KLD: return parse_positive(cmd, "--max-kld", arg, 100, &v->o.max_kld);
    case OPT_DAMP:
        v->o.gptq_damp = strtod(arg, &end);
        if (*end || !(v->o.gptq_damp > 0 && v->o.gptq_damp < 10)) return qf_cli_usage(cmd, "--gptq-damp takes a number in (0, 10)");
        return 0;
    case OPT_ORDER:
        if (strcmp(arg, "natural") && strcmp(arg, "energy")) return qf_cli_usage(cmd, "--gptq-order is natural or energy");
        v->o.gptq_block_order = !strcmp(arg, "energy");
        return 0;
    default: return -1;
    }
}

/* A count in 1..max for option opt. */
static int parse_count(const char *cmd, const char *opt, const char *s, uint32_t max, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v == 0 || v > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes a whole number from 1 to %u", opt, max);
        return qf_cli_usage(cmd, msg);
    }
    *out = (uint32_t)v;
    return 0;
}

/* The split options convert and quantize share: 0 taken, 2 bad value, -1 not one of them. */
static int split_opt(const char *cmd, int c, const char *arg, convert_cli *v) {
    qf_error err;
    switch (c) {
    case OPT_SPLIT_SIZE:
        if (qf_split_parse_size(arg, &v->o.split_max_bytes, &err) == QF_OK) return 0;
        return qf_cli_fail(cmd, &err);
    case OPT_SPLIT_TENSORS: return parse_count(cmd, "--split-max-tensors", arg, UINT32_MAX, &v->o.split_max_tensors);
    case OPT_ONLY_SPLIT: return parse_count(cmd, "--only-split", arg, QF_SPLIT_MAX_PARTS, &v->o.only_split);
    default: return -1;
    }
}

static int parse_convert(int argc, char **argv, bool quantize, convert_cli *v) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"type", required_argument, 0, OPT_TYPE},
        {"dry-run", no_argument, 0, 'n'}, {"json", no_argument, 0, OPT_JSON}, {"name", required_argument, 0, OPT_NAME},
        {"override-kv", required_argument, 0, OPT_OVERRIDE_KV}, {"allow-requantize", no_argument, 0, OPT_REQUANT},
        {"clamp-overflow", no_argument, 0, OPT_CLAMP}, {"split-max-size", required_argument, 0, OPT_SPLIT_SIZE},
        {"split-max-tensors", required_argument, 0, OPT_SPLIT_TENSORS}, {"only-split", required_argument, 0, OPT_ONLY_SPLIT},
        {"recipe", required_argument, 0, 'r'}, {"tensor-type", required_argument, 0, 'T'},
        {"imatrix", required_argument, 0, 'i'}, {"method", required_argument, 0, OPT_METHOD},
        {"hessian", required_argument, 0, 'H'}, {"gptq-damp", required_argument, 0, OPT_DAMP},
        {"gptq-order", required_argument, 0, OPT_ORDER}, {"strict", no_argument, 0, OPT_STRICT},
        {"expert-min-tokens", required_argument, 0, OPT_MIN_TOKENS}, {"sparse-experts", required_argument, 0, OPT_SPARSE},
        {"sensitivity", required_argument, 0, OPT_SENS}, {"target-size", required_argument, 0, OPT_TARGET_SIZE},
        {"target-bpw", required_argument, 0, OPT_TARGET_BPW}, {"max-kld", required_argument, 0, OPT_MAX_KLD},
        {"allow-extension-types", no_argument, 0, OPT_ALLOW_EXT},
        QF_CLI_THREADS_OPTS, QF_CLI_MODEL_OPTS, QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, {0, 0, 0, 0}};
    const char *cmd = argv[0];
    int c, rc;
    while ((c = qf_cli_getopt(cmd, argc, argv, quantize ? "o:t:j:m:r:T:i:H:nqh" : "o:t:j:m:nqh", opts)) != -1) {
        if ((rc = qf_cli_common_opt(cmd, c, optarg, &v->co)) >= 0) { if (rc) return rc; continue; }
        if (quantize && (rc = quantize_opt(cmd, c, optarg, v)) >= 0) { if (rc) return rc; continue; }
        if ((rc = split_opt(cmd, c, optarg, v)) >= 0) { if (rc) return rc; continue; }
        switch (c) {
        case 'o': v->o.out = optarg; break;
        case OPT_TYPE: v->o.type = optarg; break;
        case 'n': v->o.dry_run = true; break;
        case OPT_JSON: v->o.json = true; break;
        case OPT_NAME: v->o.name = optarg; break;
        case OPT_REQUANT: v->o.allow_requantize = true; break;
        case OPT_CLAMP: v->o.clamp_overflow = true; break;
        case OPT_OVERRIDE_KV:
            if ((rc = add_listed(cmd, v->kv, &v->o.n_override_kv, optarg, "--override-kv"))) return rc;
            break;
        case 'h': if (quantize) print_quantize_help(); else fputs(convert_help, stdout); return -1;
        case '?': return 2;
        default: return qf_cli_usage(cmd, "that option belongs to 'qforge quantize'");
        }
    }
    if (quantize && v->co.model && (!strcmp(v->co.model, "rtn") || !strcmp(v->co.model, "weighted") || !strcmp(v->co.model, "gptq")))
        return qf_cli_usage(cmd, "-m is --model, as in llama.cpp; the quantization method is --method");
    if (!(v->o.src = qf_cli_positional(cmd, argc, argv, &v->co, "SRC"))) return 2;
    bool automatic = v->o.sensitivity || v->o.target_size || v->o.target_bpw > 0 || v->o.max_kld > 0;
    if (quantize && !automatic && !v->o.type == !v->o.recipe)
        return qf_cli_usage(cmd, "give exactly one of --type, --recipe or --sensitivity with a budget");
    if (v->o.json && !v->o.dry_run) return qf_cli_usage(cmd, "--json describes the plan: use it with --dry-run");
    if (!quantize && !v->o.type) v->o.type = "f16";
    v->o.tensor_types = v->tensor_types;
    v->o.override_kv = v->kv;
    v->o.threads = v->co.threads;
    return 0;
}

static int run_convert(int argc, char **argv, bool quantize) {
    convert_cli v = {0};
    int rc = parse_convert(argc, argv, quantize, &v);
    if (rc) return rc < 0 ? 0 : rc;
    qf_cli_progress p;
    qf_cli_progress_start(&p, argv[0], &v.co);
    if (!v.o.dry_run) { v.o.progress = qf_cli_progress_bytes; v.o.progress_user = &p; }
    v.o.warn = qf_cli_warn;
    v.o.warn_user = argv[0];
    qf_error err;
    uint32_t parts = 0;
    v.o.split_parts = &parts;
    double predicted = 0, recipe_kld = 0;
    v.o.predicted_kld = &predicted;
    v.o.recipe_kld = &recipe_kld;
    qf_status st = qf_convert(&v.o, &err);
    qf_cli_progress_end(&p);
    if (st != QF_OK) return qf_cli_fail(argv[0], &err);
    if (v.o.sensitivity && !v.co.quiet && v.o.recipe)
        fprintf(stderr, "qforge %s: %s's size, types from %s: predicted KLD %.6g (%s's own types: %.6g%s)\n", argv[0],
                v.o.recipe, v.o.sensitivity, predicted, v.o.recipe, recipe_kld,
                isnan(recipe_kld) ? ", a type of the recipe is no candidate of the table" : "");
    else if (v.o.sensitivity && !v.co.quiet)
        fprintf(stderr, "qforge %s: automatic mix from %s: predicted KLD %.6g\n", argv[0], v.o.sensitivity, predicted);
    if (v.o.dry_run || v.co.quiet) return 0;
    if (!parts) fprintf(stderr, "qforge: wrote %s in %.2fs\n", v.o.out, qf_cli_seconds_since(&p.start));
    else if (v.o.only_split) fprintf(stderr, "qforge: wrote part %u of %u of %s in %.2fs\n", v.o.only_split, parts, v.o.out,
                                     qf_cli_seconds_since(&p.start));
    else fprintf(stderr, "qforge: wrote %s as %u part%s in %.2fs\n", v.o.out, parts, parts == 1 ? "" : "s",
                 qf_cli_seconds_since(&p.start));
    return 0;
}

int qf_cli_convert(int argc, char **argv) { return run_convert(argc, argv, false); }
int qf_cli_quantize(int argc, char **argv) { return run_convert(argc, argv, true); }

/* ---- calibrate --------------------------------------------------------------------------------- */

static const char calibrate_help[] =
    "usage: qforge calibrate MODEL -f TEXT -o IMATRIX.gguf [--ctx-size N] [--chunks N] [--hessian H.gguf]\n"
    "                        [--json FILE] [--expert-min-tokens N] [--threads N] [--layer-major]\n"
    "                        [--max-memory SIZE] [--backend auto|cpu|cuda]\n"
    "\n"
    "Run MODEL (GGUF or HF checkpoint, FP8 included) over calibration text and record, for every linear\n"
    "layer input, the per-column sum of squared activations and the token count, in llama.cpp's GGUF\n"
    "imatrix layout (llama-quantize --imatrix reads it; qforge quantize --imatrix reads llama-imatrix's).\n"
    "Chunks of ctx tokens start with BOS, as llama-imatrix does. Do not calibrate on the text you\n"
    "evaluate on. A routed expert's statistics cover exactly the tokens routed to it (its count in the\n"
    "file is its layer's router statistics); for a Mixture-of-Experts model, calibrate says per layer\n"
    "how many experts saw fewer than N tokens.\n"
    "\n"
    "  -m, --model MODEL      the model, instead of the MODEL argument\n"
    "  -f, --file, --text F   calibration text (UTF-8)\n"
    "  -o, --output F         importance matrix to write\n"
    "  -c, --ctx-size, --ctx N\n"
    "                         tokens per chunk (default 512)\n"
    "      --chunks N         chunks to run (default: all that fit)\n"
    "  -H, --hessian F        also write GPTQ Hessians (sum of x x^T per layer input) to F. Memory and file\n"
    "                         size: 8 n^2 bytes while collecting and 4 n^2 in the file per distinct input,\n"
    "                         i.e. per layer 3 d^2 + f^2 floats for width d and FFN width f\n"
    "      --json FILE        a report (schema qforge.calibrate/1): inputs, chunks, and per MoE layer the\n"
    "                         tokens each routed expert saw and those under N ('-' = stdout)\n"
    "      --expert-min-tokens N\n"
    "                         the floor for that count (default 64; quantize weights such experts as\n"
    "                         its --sparse-experts says)\n"
    QF_CLI_LAYER_MAJOR_HELP QF_CLI_BACKEND_HELP
    QF_CLI_THREADS_HELP QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP;

static int parse_u32(const char *cmd, const char *opt, const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v == 0 || v > 1u << 24) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes a positive integer", opt);
        return qf_cli_usage(cmd, msg);
    }
    *out = (uint32_t)v;
    return 0;
}

enum { OPT_CHUNKS = QF_OPT_FIRST_FREE, OPT_CAL_JSON, OPT_CAL_MIN };

/* The --json report: what was run, and the routed experts' coverage. */
static int calibrate_report(const char *path, const qf_calibrate_opts *o, const qf_expert_coverage *cov) {
    qf_error err = {QF_E_IO, ""};
    cJSON *r = qf_report_new("qforge.calibrate/1");
    if (!r) return qf_cli_fail("calibrate", &(qf_error){QF_E_NOMEM, "out of memory for the report"});
    qf_status st = qf_report_add_model(r, "model", o->model, NULL, &err);
    if (!st) st = qf_report_add_file(r, "text", o->text_path, &err);
    if (!st) st = qf_report_add_file(r, "imatrix", o->out, &err);
    qf_imatrix im = {0};
    if (!st) st = qf_imatrix_load(o->out, &im, &err);
    if (!st) {
        cJSON_AddNumberToObject(r, "chunks", im.chunk_count);
        cJSON_AddNumberToObject(r, "ctx", im.chunk_size);
        cJSON_AddNumberToObject(r, "entries", (double)im.n);
        qf_json_add_item(r, "experts", cov->n ? qf_expert_coverage_json(cov, NULL) : cJSON_CreateNull());
    }
    qf_imatrix_free(&im);
    char *s = st ? NULL : cJSON_Print(r);
    cJSON_Delete(r);
    if (st) return qf_cli_fail("calibrate", &err);
    bool ok = s && qf_cli_write_text(path, s, &err);
    free(s);
    if (!ok) { fprintf(stderr, "qforge calibrate: error: could not write %s: %s\n", path, err.msg); return 3; }
    return 0;
}

int qf_cli_calibrate(int argc, char **argv) {
    static const struct option opts[] = {
        {"text", required_argument, 0, 'f'}, {"file", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"ctx", required_argument, 0, 'c'}, {"ctx-size", required_argument, 0, 'c'},
        {"chunks", required_argument, 0, OPT_CHUNKS}, {"hessian", required_argument, 0, 'H'},
        {"json", required_argument, 0, OPT_CAL_JSON}, {"expert-min-tokens", required_argument, 0, OPT_CAL_MIN},
        QF_CLI_THREADS_OPTS, QF_CLI_MODEL_OPTS, QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, QF_CLI_LAYER_MAJOR_OPTS,
        QF_CLI_BACKEND_OPTS, {0, 0, 0, 0}};
    qf_calibrate_opts o = {0};
    qf_cli_backend bk = {.cmd = "calibrate"};
    qf_expert_coverage cov = {0};
    const char *json = NULL;
    qf_cli_common co = {0};
    int c, rc;
    while ((c = qf_cli_getopt("calibrate", argc, argv, "f:o:c:H:t:j:m:qh", opts)) != -1) {
        if ((rc = qf_cli_common_opt("calibrate", c, optarg, &co)) >= 0) { if (rc) return rc; continue; }
        if ((rc = qf_cli_layer_major_opt("calibrate", c, optarg, &o.layer_major)) >= 0) { if (rc) return rc; continue; }
        if (qf_cli_backend_opt(c, optarg, &bk) == 0) continue;
        switch (c) {
        case 'f': o.text_path = optarg; break;
        case 'o': o.out = optarg; break;
        case 'c': if (parse_u32("calibrate", "--ctx-size", optarg, &o.ctx)) return 2; break;
        case OPT_CHUNKS: if (parse_u32("calibrate", "--chunks", optarg, &o.chunks)) return 2; break;
        case 'H': o.hessian_out = optarg; break;
        case OPT_CAL_JSON: json = optarg; break;
        case OPT_CAL_MIN: if (parse_u32("calibrate", "--expert-min-tokens", optarg, &o.expert_min_tokens)) return 2; break;
        case 'h': fputs(calibrate_help, stdout); return 0;
        default: return 2;
        }
    }
    if (!(o.model = qf_cli_positional("calibrate", argc, argv, &co, "MODEL"))) return 2;
    if (!o.text_path || !o.out) return qf_cli_usage("calibrate", "-f/--text and -o are required");
    if (json && strcmp(json, "-")) {
        const char *inputs[] = {o.model, o.text_path, o.out, o.hessian_out};
        qf_error err;
        if (qf_outfile_check(json, inputs, 4, &err)) return qf_cli_fail("calibrate", &err);
    }
    bk.quiet = co.quiet;
    if (qf_cli_backend_opts(&bk, &o.backend)) return 2;
    o.threads = co.threads;
    o.coverage = &cov;
    qf_cli_lm lmu = {"calibrate", co.quiet};
    o.layer_major.on_plan = qf_cli_layer_major_plan;
    o.layer_major.user = &lmu;
    qf_cli_progress p;
    qf_cli_progress_start(&p, "calibrate", &co);
    o.progress = qf_cli_progress_count;
    o.progress_user = &p;
    qf_error err;
    qf_status st = qf_calibrate(&o, &err);
    qf_cli_progress_end(&p);
    if (st != QF_OK) return qf_cli_fail("calibrate", &err);
    if (!co.quiet) fprintf(stderr, "qforge: wrote %s%s%s in %.2fs\n", o.out, o.hessian_out ? " and " : "",
                           o.hessian_out ? o.hessian_out : "", qf_cli_seconds_since(&p.start));
    if (!co.quiet && cov.n) qf_expert_coverage_print(&cov, NULL, stderr);
    int rc2 = json ? calibrate_report(json, &o, &cov) : 0;
    qf_expert_coverage_free(&cov);
    return rc2;
}
