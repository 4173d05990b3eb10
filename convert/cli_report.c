/*
 * `qforge report`: verify reports (qforge.verify/1) in, one SVG picture out (verify/report_svg.h draws
 * it). This file reads the reports and the GGUFs they name, decides each file's series and label, and
 * writes the document atomically.
 */
#include "convert/cli.h"
#include "formats/gguf.h"
#include "formats/infile.h"
#include "formats/integrity.h"
#include "formats/json.h"
#include "formats/outfile.h"
#include "verify/report_svg.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char report_help[] =
    "usage: qforge report -o OUT.svg [--title T] [--map FILE.gguf] [[--series NAME | --curve NAME] REPORT.json...]...\n"
    "\n"
    "One self-contained SVG (SVG 1.1, inline text) of quantized files, from their verify reports\n"
    "(`qforge verify MODEL --base BASE -f TEXT --json REPORT.json`): bits per weight of each file against\n"
    "its mean KLD to the base (log scale, with its +/-), and the map of one file's quant types per layer\n"
    "and tensor role. Each report's model is read for its size and provenance: the path as the report\n"
    "names it, else relative to the report's folder.\n"
    "\n"
    "Series: a file goes to the series named by the last --series/--curve before it; without one, by who\n"
    "made it:\n"
    "  'qforge auto mixes'   qforge.recipe 'auto:...' (the size-targeting solver): joined as a curve\n"
    "  'qforge recipes'      other files qforge wrote (its integrity digests match the header): points\n"
    "                        labelled with the recipe\n"
    "  'llama.cpp'           files another tool wrote or rewrote (llama-quantize keeps qforge's keys of its\n"
    "                        input, but its header no longer matches them): hollow squares labelled\n"
    "                        with general.file_type (Q4_K_M)\n"
    "A --series is drawn as a curve when it holds an auto mix, as hollow squares when every file in it\n"
    "came from another tool, else as labelled points; --curve NAME always joins its files by a line.\n"
    "\n"
    "  -o, --output FILE      the SVG ('-' = stdout)\n"
    "      --title T          the heading (default: the map file's model name and the evaluation text)\n"
    "      --map FILE.gguf    the file whose quant types the second panel maps (default: the first\n"
    "                         report's model; a split set by its first part)\n"
    "      --series NAME      the following reports form the series NAME\n"
    "      --curve NAME       the same, joined by a line in order of bits per weight\n"
    QF_CLI_QUIET_HELP
    "  -h, --help             this text\n";

/* llama.cpp's LLAMA_FTYPE_* names (general.file_type), for labelling its files. */
static const char *ftype_name(uint32_t ft) {
    static const char *const names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
        [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
        [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
        [37] = "TQ2_0", [38] = "MXFP4_MOE",
    };
    return ft < sizeof names / sizeof names[0] ? names[ft] : NULL;
}

typedef enum made_by { MADE_AUTO, MADE_RECIPE, MADE_OTHER } made_by;

/* One input: its report, the file it describes, and where it goes. */
typedef struct entry {
    const char *json;       /* the report's path (argv) */
    const char *series;     /* --series/--curve NAME, or NULL */
    bool curve;             /* --curve */
    char *gguf;             /* the model file, as found */
    double kld, kld_pm, bpw;
    made_by made;
    char label[128];
    char text_sha[65];      /* the evaluation text's digest and the protocol, to warn on mixed reports */
    char text[256];
    int ctx, chunks;
} entry;

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_num(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The model as the report names it, else beside the report (reports moved with their files). */
static qf_status find_model(entry *e, const char *model, qf_error *err) {
    char *p = NULL;
    if (is_file(model) || model[0] == '/') p = strdup(model);
    else {
        const char *slash = strrchr(e->json, '/');
        size_t dl = slash ? (size_t)(slash - e->json) + 1 : 0;
        p = malloc(dl + strlen(model) + 1);
        if (p) { memcpy(p, e->json, dl); strcpy(p + dl, model); }
        if (p && !is_file(p)) { free(p); p = strdup(model); }
    }
    if (!p) return qf_fail(err, QF_E_NOMEM, "out of memory");
    e->gguf = p;
    return QF_OK;
}

static qf_status read_report(entry *e, qf_error *err) {
    char *text;
    size_t len;
    qf_status st = qf_infile_read(e->json, QF_JSON_MAX_BYTES, "verify report", &text, &len, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, st, "%s: no such file (a verify --json report)", e->json);
    if (st) return st;
    cJSON *o;
    st = qf_json_parse_object(e->json, text, len, &o, err);
    free(text);
    if (st) return qf_fail_prefix(err, st, "not a qforge verify report");
    const char *schema = json_str(o, "schema"), *model = json_str(o, "model");
    if (!schema || strcmp(schema, "qforge.verify/1")) {
        qf_fail(err, QF_E_INPUT, "%s: not a qforge verify report (schema '%.40s'; want 'qforge.verify/1')", e->json,
                schema ? schema : "none");
        cJSON_Delete(o);
        return QF_E_INPUT;
    }
    double ctx = 0, chunks = 0;
    e->kld_pm = 0;
    if (!model || !json_num(o, "kld_mean", &e->kld)) {
        cJSON_Delete(o);
        return qf_fail(err, QF_E_INPUT, "%s: verify report without %s", e->json, model ? "'kld_mean'" : "'model'");
    }
    json_num(o, "kld_mean_pm", &e->kld_pm);
    json_num(o, "ctx", &ctx);
    json_num(o, "chunks", &chunks);
    e->ctx = (int)ctx;
    e->chunks = (int)chunks;
    const cJSON *tin = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "inputs"), "text");
    snprintf(e->text_sha, sizeof e->text_sha, "%s", json_str(tin, "sha256") ? json_str(tin, "sha256") : "");
    snprintf(e->text, sizeof e->text, "%s", json_str(o, "text") ? json_str(o, "text") : "");
    st = find_model(e, model, err);
    cJSON_Delete(o);
    return st;
}

/* Bits per weight over every tensor, as `inspect` counts it. */
static double file_bpw(const qf_gguf *g) {
    double bytes = 0, elems = 0;
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        double n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (double)t->ne[d];
        bytes += (double)t->nbytes;
        elems += n;
    }
    return elems > 0 ? 8.0 * bytes / elems : 0;
}

/* qforge wrote the file as it is now: its scheme-2 header digest (header, every key but the digests,
 * tensor infos, file length: metadata only, cheap) matches. Another tool that rewrote it (llama-quantize
 * copies its input's qforge.* keys) changed what that digest covers. */
static bool qforge_made(const qf_gguf *g) {
    qf_integrity_keys k;
    uint8_t d[32];
    char hex[65];
    const qf_gguf *first = qf_gguf_part(g, 0);
    if (qf_integrity_keys_get(first, &k, NULL) != QF_OK || k.scheme != 2 || !k.header || k.header->len != 64) return false;
    if (qf_integrity_header_sha256(first, 2, d, NULL) != QF_OK) return false;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return !memcmp(hex, k.header->ptr, 64);
}

static void classify(entry *e, const qf_gguf *g) {
    const char *recipe = NULL;
    uint32_t ft;
    qf_gguf_get_str(g, "qforge.recipe", &recipe, NULL);
    if (qforge_made(g)) {
        e->made = recipe && !strncmp(recipe, "auto", 4) ? MADE_AUTO : MADE_RECIPE;
        snprintf(e->label, sizeof e->label, "%s", recipe ? recipe : "qforge");
        return;
    }
    e->made = MADE_OTHER;
    const char *fn = qf_gguf_get_u32(g, "general.file_type", &ft, NULL) == QF_OK ? ftype_name(ft) : NULL;
    if (fn) { snprintf(e->label, sizeof e->label, "%s", fn); return; }
    const char *base = strrchr(e->gguf, '/') ? strrchr(e->gguf, '/') + 1 : e->gguf;
    size_t n = strlen(base);
    snprintf(e->label, sizeof e->label, "%.*s", (int)(n > 5 && !strcmp(base + n - 5, ".gguf") ? n - 5 : n), base);
}

static qf_status load_entry(entry *e, qf_error *err) {
    qf_status st = read_report(e, err);
    if (st) return st;
    qf_gguf *g;
    st = qf_gguf_open(e->gguf, &g, err);
    if (st) {
        char pre[600];
        snprintf(pre, sizeof pre, "%s: its model", e->json);
        return qf_fail_prefix(err, st, pre);
    }
    e->bpw = file_bpw(g);
    classify(e, g);
    qf_gguf_close(g);
    return QF_OK;
}

/* ---- series -------------------------------------------------------------------------------------- */

static const char *default_series(made_by m) {
    return m == MADE_AUTO ? "qforge auto mixes" : m == MADE_RECIPE ? "qforge recipes" : "llama.cpp";
}

static const char *series_of(const entry *e) { return e->series ? e->series : default_series(e->made); }

/* Series in order of first appearance, each with its points. */
static qf_status build_series(entry *es, size_t n, qf_report_series **out, size_t *n_out, qf_error *err) {
    qf_report_series *ss = calloc(n, sizeof *ss);
    qf_report_point *pts = calloc(n, sizeof *pts);
    if (!ss || !pts) { free(ss); free(pts); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    size_t ns = 0, used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = series_of(&es[i]);
        bool seen = false;
        for (size_t s = 0; s < ns; s++) seen = seen || !strcmp(ss[s].name, name);
        if (seen) continue;
        qf_report_series *s = &ss[ns++];
        s->name = name;
        s->pts = pts + used;
        bool any_auto = false, all_other = true, curve = false;
        for (size_t j = i; j < n; j++) {
            if (strcmp(series_of(&es[j]), name)) continue;
            s->pts[s->n++] = (qf_report_point){.bpw = es[j].bpw, .kld = es[j].kld, .kld_pm = es[j].kld_pm,
                                               .label = es[j].label, .file = es[j].gguf};
            any_auto |= es[j].made == MADE_AUTO;
            all_other &= es[j].made == MADE_OTHER;
            curve |= es[j].curve;
        }
        used += s->n;
        s->style = curve || any_auto ? QF_SERIES_CURVE : all_other ? QF_SERIES_OTHER : QF_SERIES_POINTS;
    }
    *out = ss;
    *n_out = ns;
    return QF_OK;
}

static void free_series(qf_report_series *ss) {
    if (ss) free(ss[0].pts);
    free(ss);
}

/* ---- the command --------------------------------------------------------------------------------- */

typedef struct report_cli {
    const char *out, *title, *map;
    entry *es;
    size_t n;
    bool quiet;
} report_cli;

enum { OPT_TITLE = QF_OPT_FIRST_FREE, OPT_MAP, OPT_SERIES, OPT_CURVE };

static int parse_args(int argc, char **argv, report_cli *r) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"title", required_argument, 0, OPT_TITLE},
        {"map", required_argument, 0, OPT_MAP}, {"series", required_argument, 0, OPT_SERIES},
        {"curve", required_argument, 0, OPT_CURVE}, QF_CLI_BASE_OPTS, {0, 0, 0, 0}};
    const char *series = NULL;
    bool curve = false;
    int c;
    r->es = calloc((size_t)argc, sizeof *r->es);
    if (!r->es) { fputs("qforge report: error: out of memory\n", stderr); return 3; }
    /* '-': reports come back in order (code 1), so each takes the --series before it */
    while ((c = qf_cli_getopt("report", argc, argv, "-o:qh", opts)) != -1) {
        switch (c) {
        case 1: r->es[r->n++] = (entry){.json = optarg, .series = series, .curve = curve}; break;
        case 'o': r->out = optarg; break;
        case OPT_TITLE: r->title = optarg; break;
        case OPT_MAP: r->map = optarg; break;
        case OPT_SERIES: case OPT_CURVE:
            if (!optarg[0]) return qf_cli_usage("report", "--series/--curve take a non-empty name");
            series = optarg;
            curve = c == OPT_CURVE;
            break;
        case 'q': r->quiet = true; break;
        case 'h': fputs(report_help, stdout); return 0;
        default: return 2;
        }
    }
    for (; optind < argc; optind++) r->es[r->n++] = (entry){.json = argv[optind], .series = series, .curve = curve};
    if (!r->out) return qf_cli_usage("report", "-o OUT.svg is required");
    if (!r->n) return qf_cli_usage("report", "expected at least one verify report (REPORT.json)");
    return -1;
}

/* Reports of different texts or protocols are not comparable: say so once (the picture still shows them). */
static void warn_mixed(const report_cli *r) {
    for (size_t i = 1; i < r->n; i++) {
        const entry *a = &r->es[0], *b = &r->es[i];
        if (strcmp(a->text_sha, b->text_sha) || a->ctx != b->ctx || a->chunks != b->chunks) {
            char msg[900];
            snprintf(msg, sizeof msg, "%s and %s measured KLD on different texts or chunks (%s, %d x %d vs %s, %d x %d): "
                     "their points do not compare", a->json, b->json, a->text, a->chunks, a->ctx, b->text, b->chunks, b->ctx);
            qf_cli_warn("report", msg);
            return;
        }
    }
}

static void default_title(const report_cli *r, const qf_gguf *mapped, char *t, size_t n) {
    const char *name = NULL, *text = r->es[0].text, *slash = strrchr(text, '/');
    qf_gguf_get_str(mapped, "general.name", &name, NULL);
    snprintf(t, n, "%s%sbits per weight vs KLD (%s, %d x %d tokens)", name ? name : "", name ? ": " : "",
             slash ? slash + 1 : text, r->es[0].chunks, r->es[0].ctx);
}

static void map_heading(const char *path, const qf_gguf *g, char *t, size_t n) {
    const char *recipe = NULL, *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    qf_gguf_get_str(g, "qforge.recipe", &recipe, NULL);
    snprintf(t, n, "quant types of %s%s%s%s: layers x tensor roles", base, recipe && qforge_made(g) ? " (recipe " : "",
             recipe && qforge_made(g) ? recipe : "", recipe && qforge_made(g) ? ")" : "");
}

static qf_status render(const report_cli *r, char **svg, size_t *len, qf_error *err) {
    const char *map_path = r->map ? r->map : r->es[0].gguf;
    qf_gguf *g;
    qf_status st = qf_gguf_open(map_path, &g, err);
    if (st) return st;
    qf_quant_map m;
    qf_report_series *ss = NULL;
    size_t ns = 0;
    st = qf_quant_map_build(g, &m, err);
    if (!st && (st = build_series(r->es, r->n, &ss, &ns, err))) qf_quant_map_free(&m);
    if (!st) {
        char title[512], heading[512];
        default_title(r, g, title, sizeof title);
        map_heading(map_path, g, heading, sizeof heading);
        qf_report_doc doc = {.title = r->title ? r->title : title, .series = ss, .n_series = ns, .map = &m, .map_title = heading};
        st = qf_report_svg(&doc, svg, len, err);
        qf_quant_map_free(&m);
        free_series(ss);
    }
    qf_gguf_close(g);
    return st;
}

static int run_report(report_cli *r) {
    qf_error err = {0};
    const char **inputs = calloc(2 * r->n + 1, sizeof *inputs);
    if (!inputs) return qf_cli_fail("report", &(qf_error){.status = QF_E_NOMEM});
    size_t ni = 0;
    for (size_t i = 0; i < r->n; i++) inputs[ni++] = r->es[i].json;
    inputs[ni++] = r->map;
    qf_status st = qf_outfile_check(r->out, inputs, ni, &err);
    for (size_t i = 0; !st && i < r->n; i++) st = load_entry(&r->es[i], &err);
    for (size_t i = 0; !st && i < r->n; i++) inputs[ni++] = r->es[i].gguf;
    if (!st) st = qf_outfile_check(r->out, inputs, ni, &err); /* the models are inputs too */
    free(inputs);
    if (st) return qf_cli_fail("report", &err);
    if (!r->quiet) warn_mixed(r);
    char *svg = NULL;
    size_t len = 0;
    if ((st = render(r, &svg, &len, &err))) return qf_cli_fail("report", &err);
    err.status = QF_E_IO;
    snprintf(err.msg, sizeof err.msg, "writing to stdout failed");
    bool ok = qf_cli_write_file(r->out, svg, len, &err);
    free(svg);
    if (!ok) return qf_cli_fail("report", &err);
    if (!r->quiet && strcmp(r->out, "-"))
        fprintf(stderr, "qforge report: wrote %s (%zu files, %zu bytes)\n", r->out, r->n, len);
    return 0;
}

int qf_cli_report(int argc, char **argv) {
    report_cli r = {0};
    int rc = parse_args(argc, argv, &r);
    if (rc < 0) rc = run_report(&r);
    for (size_t i = 0; i < r.n; i++) free(r.es[i].gguf);
    free(r.es);
    return rc;
}
