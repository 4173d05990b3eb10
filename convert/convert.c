/* qf_convert: compose source -> hyper-parameters + vocabulary -> plan -> GGUF writer (qforge.h). */
#include "convert/kv_override.h"
#include "convert/report.h"
#include "formats/arch.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "formats/gguf_model.h"
#include "formats/source.h"
#include "formats/vocab.h"
#include "kernels/qtypes.h"
#include "quantize/plan.h"
#include "quantize/run.h"
#include "quantize/solve.h"
#include "formats/sensitivity.h"
#include "formats/imatrix.h"
#include "formats/hessian.h"
#include "formats/integrity.h"
#include "formats/outfile.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <float.h>
#include <libgen.h>
#include <stdarg.h>
#include <unistd.h>

static qf_status source_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    return qf_source_read_file(ctx, name, buf, len, err);
}

/* general.name as llama.cpp's converter picks it: the model directory's name (archive: file name
 * without its archive extensions); for a Hugging Face cache entry the NAME of ORG/NAME, not the
 * snapshot's commit hash. */
static void model_name(const qf_source *src, char *out, size_t n) {
    const char *repo = qf_source_repo_id(src);
    if (repo) {
        snprintf(out, n, "%s", strchr(repo, '/') ? strchr(repo, '/') + 1 : repo);
        return;
    }
    char *copy = strdup(qf_source_label(src));
    const char *base = copy ? basename(copy) : "model";
    snprintf(out, n, "%s", base);
    free(copy);
    static const char *const exts[] = {".tar.zst", ".tar.gz", ".tgz", ".tar.xz", ".tar", ".zip",
                                       ".safetensors.index.json", ".safetensors"};
    for (size_t i = 0; i < QF_ARRAY_LEN(exts); i++) {
        size_t a = strlen(out), b = strlen(exts[i]);
        if (a > b && strcmp(out + a - b, exts[i]) == 0) { out[a - b] = '\0'; break; }
    }
}

/* A parameter count as llama.cpp writes it: 260K, 21M, 7.2B ... (two significant digits at least). */
static void count_label(uint64_t params, char *out, size_t n) {
    double v = (double)params;
    const char *suffix = "K";
    double scaled = v * 1e-3;
    if (v > 1e12) { scaled = v * 1e-12; suffix = "T"; }
    else if (v > 1e9) { scaled = v * 1e-9; suffix = "B"; }
    else if (v > 1e6) { scaled = v * 1e-6; suffix = "M"; }
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", scaled);
    int fix = 2 - (int)strlen(digits);
    snprintf(out, n, "%.*f%s", fix > 0 ? fix : 0, scaled, suffix);
}

/* general.size_label as llama.cpp's converter computes it: the parameter count, or for a mixture of
 * experts "<experts>x<shared + one expert's parameters>" (gguf-py's size_label). */
static void size_label(const qf_plan *p, uint32_t n_expert, char *out, size_t n) {
    uint64_t shared = 0, per_expert = 0;
    for (size_t i = 0; i < p->n; i++) {
        uint64_t params = p->e[i].ne[0] * p->e[i].n_rows;
        if (qf_role_is_experts(p->e[i].role) && p->e[i].n_dims == 3) per_expert += params / p->e[i].ne[2];
        else shared += params;
    }
    if (!n_expert || !per_expert) { count_label(p->total_params, out, n); return; }
    char c[24];
    count_label(shared + per_expert, c, sizeof c);
    snprintf(out, n, "%ux%s", n_expert, c);
}

typedef struct conversion {
    qf_source *src;
    qf_hparams hp;
    qf_vocab vocab;
    qf_plan plan;
    char src_digest[65];
    qf_type_override *overrides;
    size_t n_overrides;
    qf_imatrix imatrix;
    bool have_imatrix;
    char imatrix_digest[65];
    qf_expert_rule expert_rule;
    qf_expert_coverage experts; /* of the imatrix's routed experts (none for a dense model) */
    const char *method;
    qf_hessian_set hessians;
    char hessian_digest[65];
    qf_kv_override *kv;
    size_t n_kv;
    uint32_t *part_of;      /* split output: each plan entry's part (qf_split_layout) */
    uint32_t n_parts;
    qf_sens sens;           /* an automatic mix's sensitivity table */
    bool have_sens;
    char sens_digest[65];
} conversion;

const char *qf_recipe_name(size_t i, const char **summary) {
    const qf_recipe *r = qf_recipe_at(i);
    if (r && summary) *summary = r->summary;
    return r ? r->name : NULL;
}

const char *qf_writable_type_name(size_t i) {
    for (size_t k = 0, seen = 0; k < qf_qtype_count(); k++) {
        const qf_qtype_traits *t = qf_qtype_at(k);
        if (t->quantize && seen++ == i) return t->name;
    }
    return NULL;
}


static void warn(const qf_convert_opts *o, const char *fmt, ...) QF_PRINTF(2, 3);
static void warn(const qf_convert_opts *o, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (o->warn) { o->warn(o->warn_user, msg); return; }
    fputs("qforge: warning: ", stderr);
    qf_text_put(stderr, msg, strlen(msg), QF_TEXT_TERMINAL);
    fputc('\n', stderr);
}

/* "a, b, c": the recipe names, for messages. */
static void recipe_list(char *out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; qf_recipe_at(i) && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%s", i ? ", " : "", qf_recipe_at(i)->name);
}

/* --type names one stored type; a mix's name (Q4_K_M, as llama-quantize spells its presets) gets the
 * option that takes it. */
static qf_status resolve_type(const char *type, uint32_t *id, qf_error *err) {
    const qf_qtype_traits *tt = qf_qtype_by_name(type);
    if (tt && tt->quantize) { *id = tt->id; return QF_OK; }
    const qf_recipe *r = qf_recipe_by_name(type);
    if (r)
        return qf_fail(err, QF_E_USAGE, "--type '%s' names a recipe (a mix of types), not a type: use --recipe %s "
                       "(qforge quantize)", type, r->name);
    char recipes[512];
    recipe_list(recipes, sizeof recipes);
    if (tt) return qf_fail(err, QF_E_USAGE, "--type '%s': this build cannot write %s", type, tt->name);
    return qf_fail(err, QF_E_USAGE, "--type '%s' is not a type this build can write (see --help); mixes are recipes "
                   "(--recipe %s)", type, recipes);
}

static qf_status resolve_recipe(const char *name, const qf_recipe **r, qf_error *err) {
    if ((*r = qf_recipe_by_name(name))) return QF_OK;
    char recipes[512];
    recipe_list(recipes, sizeof recipes);
    return qf_fail(err, QF_E_USAGE, "--recipe '%s' is not a recipe; recipes: %s", name, recipes);
}

/* Options that stand on their own: type/recipe names, override regexes, the imatrix, the method. */
static bool wants_solver(const qf_convert_opts *o) { return o->target_size || o->target_bpw > 0 || o->max_kld > 0; }

/* An automatic mix: the table and a budget; the solver chooses every quantized tensor's type. The budget
 * is a target (--target-size/--target-bpw/--max-kld) or a recipe's size: with --recipe the plan is built
 * as the recipe says and its tensor bytes bound the solver, so "q4_k_m with a measurement" is a file of
 * Q4_K_M's size whose bytes go where the table says they buy the most. Without a recipe the plan is
 * built with q8_0 as a placeholder for the types the solver replaces. */
static qf_status load_solver(conversion *c, const qf_convert_opts *o, qf_plan_opts *po, qf_error *err) {
    if (o->type) return qf_fail(err, QF_E_USAGE, "an automatic mix (--sensitivity) chooses every type: drop --type");
    if (!o->sensitivity)
        return qf_fail(err, QF_E_USAGE, "--target-size, --target-bpw and --max-kld need --sensitivity FILE "
                                        "(made by qforge measure)");
    if (!wants_solver(o) && !o->recipe)
        return qf_fail(err, QF_E_USAGE, "--sensitivity needs a budget: --target-size, --target-bpw, --max-kld or a --recipe "
                                        "whose size to keep");
    if (o->recipe && (o->target_size || o->target_bpw > 0))
        return qf_fail(err, QF_E_USAGE, "--recipe with --sensitivity keeps the recipe's size: drop --%s",
                       o->target_size ? "target-size" : "target-bpw");
    if (o->target_bpw < 0 || o->max_kld < 0 || !isfinite(o->target_bpw) || !isfinite(o->max_kld))
        return qf_fail(err, QF_E_USAGE, "targets must be positive numbers");
    qf_status st = QF_OK;
    if (o->recipe) st = resolve_recipe(o->recipe, &po->recipe, err);
    else po->type = QF_T_Q8_0;
    if (!st) st = qf_sens_load(o->sensitivity, &c->sens, err);
    if (st) return st;
    c->have_sens = true;
    return qf_sha256_file_hex(o->sensitivity, c->sens_digest, err);
}

/* The solver's budget in tensor bytes: the file size less what is not tensor data (as measured on the
 * candidates, plus room for the mix's own metadata), and the bits per weight over every tensor. */
#define SOLVER_METADATA_SLACK (16u << 10)

static qf_status solve_mix(conversion *c, const qf_convert_opts *o, qf_error *err) {
    qf_solve_opts so = {.max_kld = o->max_kld > 0 ? o->max_kld : -1, .allow_extension = o->allow_extension_types,
                        .label = o->sensitivity};
    if (o->recipe) { /* the recipe's bytes are the budget; the file type is the solved mix's */
        so.max_bytes = c->plan.total_bytes;
        c->plan.recipe_file_type = 0;
    }
    if (o->target_size) {
        uint64_t fixed = c->sens.overhead + SOLVER_METADATA_SLACK;
        if (o->target_size <= fixed)
            return qf_fail(err, QF_E_USAGE, "--target-size %llu is below the file's metadata (about %llu bytes)",
                           (unsigned long long)o->target_size, (unsigned long long)fixed);
        so.max_bytes = o->target_size - fixed;
    }
    if (o->target_bpw > 0) {
        uint64_t b = (uint64_t)floor(o->target_bpw * (double)c->plan.total_params / 8.0);
        so.max_bytes = so.max_bytes ? QF_MIN(so.max_bytes, b) : b;
    }
    qf_solve_result r;
    qf_status st = qf_plan_solve(c->src, &c->plan, &c->sens, &so, &r, err);
    if (st) return st;
    /* general.file_type names the type holding the most weights */
    uint64_t most = 0;
    for (size_t i = 0; i < c->plan.n; i++) {
        const qf_plan_entry *e = &c->plan.e[i];
        uint64_t w = 0;
        for (size_t k = 0; k < c->plan.n; k++)
            if (c->plan.e[k].type == e->type) w += c->plan.e[k].ne[0] * c->plan.e[k].n_rows;
        if (isfinite(e->predicted_kld) && w > most) { most = w; c->plan.weight_type = e->type; }
    }
    if (o->predicted_kld) *o->predicted_kld = r.predicted_kld;
    if (o->recipe_kld && o->recipe) *o->recipe_kld = r.given_kld;
    return QF_OK;
}

static qf_status load_options(conversion *c, const qf_convert_opts *o, qf_plan_opts *po, qf_error *err) {
    if (o->sensitivity || wants_solver(o)) {
        qf_status st = load_solver(c, o, po, err);
        if (st) return st;
    } else if (o->recipe) {
        qf_status st = resolve_recipe(o->recipe, &po->recipe, err);
        if (st) return st;
    } else {
        qf_status st = resolve_type(o->type ? o->type : "f16", &po->type, err);
        if (st) return st;
    }
    c->overrides = qf_calloc_n(o->n_tensor_types, sizeof *c->overrides);
    if (!c->overrides) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n_tensor_types; i++, c->n_overrides++) {
        qf_status st = qf_type_override_parse(o->tensor_types[i], &c->overrides[i], err);
        if (st) return st;
    }
    po->overrides = c->overrides;
    po->n_overrides = c->n_overrides;
    po->calibrated = o->imatrix || o->hessian;
    c->method = o->method ? o->method : o->hessian ? "gptq" : o->imatrix ? "weighted" : "rtn";
    if (strcmp(c->method, "rtn") != 0 && strcmp(c->method, "weighted") != 0 && strcmp(c->method, "gptq") != 0)
        return qf_fail(err, QF_E_USAGE, "--method '%s' is not one of rtn, weighted, gptq", c->method);
    if (!strcmp(c->method, "weighted") && !o->imatrix)
        return qf_fail(err, QF_E_USAGE, "--method weighted needs --imatrix FILE (make one with qforge calibrate)");
    if ((strcmp(c->method, "gptq") == 0) != (o->hessian != NULL))
        return qf_fail(err, QF_E_USAGE, "--method gptq and --hessian FILE go together (make one with qforge calibrate --hessian)");
    qf_status st;
    if (o->hessian) {
        if ((st = qf_hessian_load(o->hessian, &c->hessians, err)) || (st = qf_sha256_file_hex(o->hessian, c->hessian_digest, err)))
            return st;
    }
    c->expert_rule.min_tokens = o->expert_min_tokens ? o->expert_min_tokens : QF_EXPERT_MIN_TOKENS;
    if (o->sparse_experts && !qf_sparse_experts_parse(o->sparse_experts, &c->expert_rule.policy))
        return qf_fail(err, QF_E_USAGE, "--sparse-experts '%s' is not one of blend, pooled, own", o->sparse_experts);
    if (!o->imatrix) return QF_OK;
    if ((st = qf_imatrix_load(o->imatrix, &c->imatrix, err))) return st;
    c->have_imatrix = true;
    if ((st = qf_expert_coverage_get(&c->imatrix, c->expert_rule.min_tokens, &c->experts, err))) return st;
    return qf_sha256_file_hex(o->imatrix, c->imatrix_digest, err);
}

/* --override-kv: parsed once the source is open, since a GGUF source's key types decide written types. */
static qf_status load_kv_overrides(conversion *c, const qf_convert_opts *o, qf_error *err) {
    if (!o->n_override_kv) return QF_OK;
    if (!(c->kv = qf_calloc_n(o->n_override_kv, sizeof *c->kv))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (; c->n_kv < o->n_override_kv; c->n_kv++) {
        qf_status st = qf_kv_override_parse(o->override_kv[c->n_kv], qf_source_gguf(c->src), &c->kv[c->n_kv], err);
        if (st) return st;
    }
    return QF_OK;
}

/* A GGUF source already carries hyper-parameters and vocabulary as metadata; they are checked as the
 * runtime checks them, so that a vocabulary llama.cpp refuses is never copied into a new file. */
static qf_status load_gguf_model(conversion *c, qf_error *err) {
    qf_status st = qf_gguf_model_meta(qf_source_gguf(c->src), qf_source_label(c->src), &c->hp, &c->vocab, err);
    if (st) return st;
    return qf_source_digest(c->src, c->src_digest, err);
}

static qf_status load_model(conversion *c, const qf_convert_opts *o, qf_error *err) {
    qf_status st = qf_source_open(o->src, &c->src, err);
    if (st) return st;
    if (qf_source_gguf(c->src)) return load_gguf_model(c, err);
    char *cfg = NULL;
    size_t cfg_len = 0;
    st = qf_source_read_file(c->src, "config.json", &cfg, &cfg_len, err);
    if (st == QF_E_NOTFOUND)
        return qf_fail(err, QF_E_INPUT, "%s: no config.json beside the weights; qforge needs it to know the architecture",
                       qf_source_label(c->src));
    if (st) return st;
    char label[4200];
    snprintf(label, sizeof label, "%s: config.json", qf_source_label(c->src));
    st = qf_hparams_from_hf(label, cfg, cfg_len, &c->hp, err);
    free(cfg);
    if (st) return st;
    if (qf_hparams_llamacpp_routes_otherwise(&c->hp))
        warn(o, "%s: topk_method group_limited_greedy ranks expert groups by their best expert; llama.cpp ranks them "
             "by their two best (DeepSeek-V3's rule), so llama.cpp will route some tokens to other experts than this "
             "model was trained with. qforge's runtime follows the model (%s)", label, QF_KEY_EXPERT_GROUP_SCORE);
    model_name(c->src, c->hp.name, sizeof c->hp.name);
    if ((st = qf_vocab_load_hf(source_reader, c->src, c->hp.n_vocab, &c->vocab, err)))
        return qf_fail_prefix(err, st, qf_source_label(c->src));
    return qf_source_digest(c->src, c->src_digest, err);
}

/* Re-quantizing a GGUF keeps its metadata (architecture keys, vocabulary, chat template, ...) except
 * what this run states anew: file type, qforge provenance and integrity, llama-quantize's imatrix keys,
 * and the split layout of a source that is a split set (the output has its own, or none).
 * qforge's one model key (the expert-group rule llama.cpp lacks) is the model's, and stays. */
static qf_status copy_gguf_metadata(const qf_gguf *g, qf_gguf_writer *w, qf_error *err) {
    static const char *const fresh[] = {"general.file_type", "general.quantization_version", "qforge.", "quantize.imatrix.",
                                        "split."};
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        bool skip = false;
        for (size_t f = 0; f < QF_ARRAY_LEN(fresh); f++) skip |= !strncmp(kv->key, fresh[f], strlen(fresh[f]));
        skip &= strcmp(kv->key, QF_KEY_EXPERT_GROUP_SCORE) != 0;
        if (kv->type == QF_GGUF_ARRAY && kv->arr_type == QF_GGUF_ARRAY) skip = true; /* llama.cpp has none */
        qf_status st = skip ? QF_OK : qf_gguf_set_kv(w, kv, err);
        if (st) return st;
    }
    return QF_OK;
}

static qf_status write_model_metadata(const conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    qf_status st;
    if (qf_source_gguf(c->src)) {
        if ((st = copy_gguf_metadata(qf_source_gguf(c->src), w, err))) return st;
    } else {
        char label[48];
        size_label(&c->plan, c->hp.n_expert, label, sizeof label);
        if ((st = qf_hparams_write_gguf(&c->hp, w, err)) || (st = qf_gguf_set_str(w, "general.size_label", label, err)))
            return st;
        /* gguf-py splits a model id the same way: ORG is general.organization, NAME general.name */
        const char *repo = qf_source_repo_id(c->src), *slash = repo ? strchr(repo, '/') : NULL;
        if (slash) {
            char org[128];
            snprintf(org, sizeof org, "%.*s", (int)(slash - repo), repo);
            if ((st = qf_gguf_set_str(w, "general.organization", org, err))) return st;
        }
    }
    return o->name ? qf_gguf_set_str(w, "general.name", o->name, err) : QF_OK;
}

/* llama-quantize's quantize.imatrix.* keys (integers as u32, as it writes them), so tools that read
 * those see the imatrix too. */
static qf_status write_imatrix_keys(const conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    qf_status st;
    if ((st = qf_gguf_set_str(w, "qforge.imatrix_sha256", c->imatrix_digest, err)) ||
        (st = qf_gguf_set_str(w, "quantize.imatrix.file", o->imatrix, err)) ||
        (st = qf_gguf_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)c->imatrix.n, err)))
        return st;
    if (c->imatrix.chunk_count && (st = qf_gguf_set_u32(w, "quantize.imatrix.chunks_count", c->imatrix.chunk_count, err)))
        return st;
    if (c->imatrix.n_datasets && (st = qf_gguf_set_str(w, "quantize.imatrix.dataset", c->imatrix.datasets[0], err)))
        return st;
    if (c->imatrix.calibration_sha256 &&
        (st = qf_gguf_set_str(w, "qforge.calibration_sha256", c->imatrix.calibration_sha256, err)))
        return st;
    if (!c->experts.n) return QF_OK;
    char rule[160];
    snprintf(rule, sizeof rule, "%s below %u tokens: %llu of %llu routed experts", qf_sparse_experts_name(c->expert_rule.policy),
             c->expert_rule.min_tokens, (unsigned long long)c->experts.under, (unsigned long long)c->experts.experts);
    return qf_gguf_set_str(w, "qforge.sparse_experts", rule, err);
}

/* qforge.methods: what each tensor class was quantized with, as the plan decided and the run does. */
static qf_status write_methods(const qf_plan *plan, qf_gguf_writer *w, qf_error *err) {
    char **lines;
    size_t n;
    qf_status st = qf_plan_methods(plan, &lines, &n, err);
    if (!st && n) st = qf_gguf_set_arr_str(w, "qforge.methods", (const char *const *)lines, n, err);
    qf_plan_methods_free(lines, n);
    return st;
}

/* GPTQ's options change the bytes it writes, so the file names them (with the Hessians' digest, every
 * input of the run is then recorded, and parts of split outputs from runs with other options differ in
 * their set identity). */
static qf_status write_gptq_options(const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    char line[96];
    snprintf(line, sizeof line, "damp %.9g, order %s", o->gptq_damp > 0 ? o->gptq_damp : 0.01,
             o->gptq_block_order ? "energy" : "natural");
    return qf_gguf_set_str(w, "qforge.gptq", line, err);
}

/* The user's --override-kv values last, so they win; qforge.override_kv records them. */
static qf_status write_kv_overrides(const conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    qf_status st;
    for (size_t i = 0; i < c->n_kv; i++)
        if ((st = qf_kv_override_apply(&c->kv[i], w, err))) return st;
    return c->n_kv ? qf_gguf_set_arr_str(w, "qforge.override_kv", o->override_kv, c->n_kv, err) : QF_OK;
}

static qf_status write_metadata(const conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    int ftype = qf_plan_file_type(&c->plan);
    /* automatic mixes are "auto", or "auto:RECIPE" within a recipe's size (qforge report's curve) */
    char recipe_label[64];
    const char *asked = o->recipe ? o->recipe : o->type ? o->type : "f16";
    if (!c->have_sens) snprintf(recipe_label, sizeof recipe_label, "%s", asked);
    else if (o->recipe) snprintf(recipe_label, sizeof recipe_label, "auto:%s", o->recipe);
    else snprintf(recipe_label, sizeof recipe_label, "auto");
    qf_status st;
    if ((st = write_model_metadata(c, o, w, err)) ||
        (ftype >= 0 && (st = qf_gguf_set_u32(w, "general.file_type", (uint32_t)ftype, err))) ||
        (st = qf_gguf_set_u32(w, "general.quantization_version", 2, err)) ||
        (!qf_source_gguf(c->src) && (st = qf_vocab_write_gguf(&c->vocab, w, err))) ||
        (st = qf_gguf_set_str(w, "qforge.version", QF_VERSION_STRING, err)) ||
        (st = qf_gguf_set_str(w, "qforge.source_sha256", c->src_digest, err)) ||
        (st = qf_gguf_set_str(w, "qforge.recipe", recipe_label, err)) ||
        (st = qf_gguf_set_str(w, "qforge.method", c->method, err)) ||
        (c->have_sens && (st = qf_gguf_set_str(w, "qforge.sensitivity_sha256", c->sens_digest, err))))
        return st;
    if (o->n_tensor_types && (st = qf_gguf_set_arr_str(w, "qforge.tensor_types", o->tensor_types, o->n_tensor_types, err)))
        return st;
    if (o->hessian && (st = qf_gguf_set_str(w, "qforge.hessian_sha256", c->hessian_digest, err))) return st;
    if (!strcmp(c->method, "gptq") && (st = write_gptq_options(o, w, err))) return st;
    if ((st = write_methods(&c->plan, w, err))) return st;
    if (c->have_imatrix && (st = write_imatrix_keys(c, o, w, err))) return st;
    return write_kv_overrides(c, o, w, err);
}

/* Clamp mode: count, before anything is written, what every tensor will have clamped, so the file's
 * metadata can say so (qforge.clamped) and stderr can warn. */
static qf_status survey_ranges(conversion *c, qf_error *err) {
    for (size_t i = 0; i < c->plan.n; i++) {
        qf_plan_entry *e = &c->plan.e[i];
        const qf_qtype_traits *tt = qf_qtype_get(e->type);
        if (tt->max_abs >= FLT_MAX) continue;
        float amax;
        qf_status st = qf_tensor_range(c->src, &c->hp, &c->plan, e, &e->clamped, &amax, err);
        if (st) return st;
        if (e->clamped)
            fprintf(stderr, "qforge: warning: tensor '%s': %llu value%s beyond %s's range clamped to +-%.7g "
                    "(largest |x| %.7g)\n", e->name, (unsigned long long)e->clamped, e->clamped == 1 ? "" : "s",
                    tt->name, tt->max_abs, amax);
    }
    return QF_OK;
}

/* qforge.clamp_overflow, and one "tensor: count" line per clamped tensor in qforge.clamped. */
static qf_status write_clamped(const conversion *c, qf_gguf_writer *w, qf_error *err) {
    qf_status st = qf_gguf_set_bool(w, "qforge.clamp_overflow", true, err);
    size_t n = 0;
    char **lines = qf_calloc_n(c->plan.n, sizeof *lines);
    if (!st && !lines) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < c->plan.n; i++) {
        const qf_plan_entry *e = &c->plan.e[i];
        const qf_qtype_traits *tt = qf_qtype_get(e->type);
        if (!e->clamped) continue;
        if (!(lines[n] = malloc(160))) { st = qf_fail(err, QF_E_NOMEM, "out of memory"); break; }
        snprintf(lines[n++], 160, "%s: %llu value%s clamped to +-%.7g (%s)", e->name, (unsigned long long)e->clamped,
                 e->clamped == 1 ? "" : "s", tt->max_abs, tt->name);
    }
    if (!st && n) st = qf_gguf_set_arr_str(w, "qforge.clamped", (const char *const *)lines, n, err);
    for (size_t i = 0; lines && i < n; i++) free(lines[i]);
    free(lines);
    return st;
}

static qf_status write_gguf(conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    qf_status st = QF_OK;
    if ((st = write_metadata(c, o, w, err))) goto fail;
    if (o->clamp_overflow && (st = write_clamped(c, w, err))) goto fail;
    for (size_t i = 0; i < c->plan.n; i++) {
        const qf_plan_entry *e = &c->plan.e[i];
        if ((st = qf_gguf_add_tensor(w, e->name, e->type, e->n_dims, e->ne, err))) goto fail;
    }
    if ((st = qf_gguf_begin_data(w, err))) goto fail;
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    qf_run_opts ro = {.threads = threads > 0 ? threads : 1, .progress = o->progress, .progress_user = o->progress_user,
                      .gptq = {.damp = o->gptq_damp > 0 ? o->gptq_damp : 0.01, .block_order = o->gptq_block_order},
                      .clamp_overflow = o->clamp_overflow};
    if ((st = qf_plan_execute(c->src, &c->hp, &c->plan, w, &ro, err))) goto fail;
    return qf_gguf_writer_finish(w, err);
fail:
    qf_gguf_writer_abort(w);
    return st;
}

/* llama-quantize refuses to quantize a tensor that is already quantized unless told to: each rounding
 * adds its error to the last. Dequantizing to F32/F16/BF16 is a conversion, not a requantization. */
static qf_status check_requantize(const conversion *c, const qf_convert_opts *o, qf_error *err) {
    if (o->allow_requantize || !qf_source_gguf(c->src)) return QF_OK;
    for (size_t i = 0; i < c->plan.n; i++) {
        const qf_plan_entry *e = &c->plan.e[i];
        const qf_qtype_traits *from =
            e->spec ? qf_qtype_get(qf_source_tensor(c->src, c->plan.map.src[e->spec->first_src])->qtype) : NULL;
        if (from && from->quantized && qf_qtype_get(e->type)->quantized)
            return qf_fail(err, QF_E_USAGE, "%s: tensor '%s' is already %s; quantizing it again to %s adds a second "
                           "rounding error (llama-quantize refuses this too): start from the F16/BF16/F32 model, or pass "
                           "--allow-requantize", qf_source_label(c->src), e->name, from->name, qf_qtype_get(e->type)->name);
    }
    return QF_OK;
}

/* A --tensor-type that decides no tensor is almost always a typo (or a pattern for another
 * architecture): a warning, or with --strict an error, before any work. */
static qf_status check_overrides(const conversion *c, const qf_convert_opts *o, qf_error *err) {
    for (size_t k = 0; k < c->n_overrides; k++) {
        size_t used = 0;
        for (size_t i = 0; i < c->plan.n; i++) used += c->plan.e[i].override == (int)k;
        if (used) continue;
        const char *why = "no 2-D tensor's GGUF name matches it before an earlier --tensor-type does; 1-D tensors stay F32";
        if (o->strict) return qf_fail(err, QF_E_USAGE, "--tensor-type '%s' decides no tensor: %s", c->overrides[k].spec, why);
        warn(o, "--tensor-type '%s' decides no tensor: %s", c->overrides[k].spec, why);
    }
    return QF_OK;
}

static bool split_output(const qf_convert_opts *o) { return o->split_max_bytes || o->split_max_tensors; }

static qf_status check_split_options(const qf_convert_opts *o, qf_error *err) {
    if (o->split_max_bytes && o->split_max_tensors)
        return qf_fail(err, QF_E_USAGE, "--split-max-size and --split-max-tensors exclude each other (as in llama-gguf-split)");
    if (o->only_split && !split_output(o))
        return qf_fail(err, QF_E_USAGE, "--only-split names a part of a split output: give --split-max-size or "
                       "--split-max-tensors too");
    return QF_OK;
}

/* The part's file name, for part k of the layout (malloc'd). */
static char *part_path(const conversion *c, const qf_convert_opts *o, uint32_t k) {
    return qf_split_part_path(o->out, qf_split_prefix_len(o->out), k, c->n_parts);
}

/* Cut the plan into parts as gguf-split would. */
static qf_status plan_split(conversion *c, const qf_convert_opts *o, qf_error *err) {
    uint64_t *nbytes = qf_malloc_n(QF_MAX(c->plan.n, (size_t)1), sizeof *nbytes);
    c->part_of = qf_malloc_n(QF_MAX(c->plan.n, (size_t)1), sizeof *c->part_of);
    if (!nbytes || !c->part_of) { free(nbytes); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    for (size_t i = 0; i < c->plan.n; i++) nbytes[i] = c->plan.e[i].nbytes;
    qf_split_opts so = {.max_bytes = o->split_max_bytes, .max_tensors = o->split_max_tensors};
    qf_status st = qf_split_layout(nbytes, c->plan.n, &so, c->part_of, &c->n_parts, err);
    free(nbytes);
    if (st) return st;
    if (o->split_parts) *o->split_parts = c->n_parts;
    if (o->only_split > c->n_parts)
        return qf_fail(err, QF_E_USAGE, "--only-split %u: %s is cut into %u part%s", o->only_split, o->out,
                       c->n_parts, c->n_parts == 1 ? "" : "s");
    return QF_OK;
}

/* Every file this run writes (the output, or each part it writes of a split output) gets the output
 * check (formats/outfile.h) against every input, each part of a split GGUF source included, before any
 * tensor is computed. */
static qf_status check_outputs(const conversion *c, const qf_convert_opts *o, qf_error *err) {
    const qf_gguf *g = qf_source_gguf(c->src);
    size_t n_src = g ? qf_gguf_n_parts(g) : 0, n = 3 + n_src;
    const char **inputs = qf_calloc_n(n, sizeof *inputs);
    if (!inputs) return qf_fail(err, QF_E_NOMEM, "out of memory");
    inputs[0] = o->src;
    inputs[1] = o->imatrix;
    inputs[2] = o->hessian;
    for (size_t k = 0; k < n_src; k++) inputs[3 + k] = qf_gguf_label(qf_gguf_part(g, k));
    qf_status st = c->part_of ? QF_OK : qf_outfile_check(o->out, inputs, n, err);
    for (uint32_t k = 0; !st && c->part_of && k < c->n_parts; k++) {
        if (o->only_split && k + 1 != o->only_split) continue;
        char *path = part_path(c, o, k);
        st = path ? qf_outfile_check(path, inputs, n, err) : qf_fail(err, QF_E_NOMEM, "out of memory");
        free(path);
    }
    free(inputs);
    return st;
}

/* The split layout after the plan: one line per part (file, tensors, tensor bytes). */
static void print_split_text(const conversion *c, const qf_convert_opts *o) {
    printf("split: %u part%s (%s%llu%s per part)\n", c->n_parts, c->n_parts == 1 ? "" : "s",
           o->split_max_bytes ? "at most " : "", o->split_max_bytes ? (unsigned long long)o->split_max_bytes
                                                                   : (unsigned long long)o->split_max_tensors,
           o->split_max_bytes ? " tensor bytes" : " tensors");
    for (uint32_t k = 0, i = 0; k < c->n_parts; k++) {
        uint64_t bytes = 0, n = 0;
        for (; i < c->plan.n && c->part_of[i] == k; i++, n++) bytes += c->plan.e[i].nbytes;
        char *path = part_path(c, o, k);
        fputs("  ", stdout);
        if (path) qf_text_put(stdout, path, strlen(path), QF_TEXT_TERMINAL);
        printf("  %llu tensors, %llu bytes\n", (unsigned long long)n, (unsigned long long)bytes);
        free(path);
    }
}

static cJSON *split_json(const conversion *c, const qf_convert_opts *o) {
    cJSON *s = cJSON_CreateObject(), *parts = cJSON_AddArrayToObject(s, "parts");
    for (uint32_t k = 0, i = 0; parts && k < c->n_parts; k++) {
        uint64_t bytes = 0, n = 0;
        for (; i < c->plan.n && c->part_of[i] == k; i++, n++) bytes += c->plan.e[i].nbytes;
        cJSON *e = cJSON_CreateObject();
        char *path = part_path(c, o, k);
        if (path) qf_json_add_text(e, "file", path);
        free(path);
        cJSON_AddNumberToObject(e, "tensors", (double)n);
        cJSON_AddNumberToObject(e, "bytes", (double)bytes);
        cJSON_AddItemToArray(parts, e);
    }
    return s;
}

static qf_status dry_run(const conversion *c, const qf_convert_opts *o, qf_error *err) {
    if (!o->json) {
        qf_plan_print_text(&c->plan, stdout);
        if (c->experts.n) qf_expert_coverage_print(&c->experts, &c->expert_rule, stdout);
        if (c->part_of) print_split_text(c, o);
        return QF_OK;
    }
    cJSON *r = qf_plan_report(c->src, &c->plan, c->src_digest);
    if (!r) return qf_fail(err, QF_E_NOMEM, "out of memory for the plan report");
    qf_status st = QF_OK;
    if (o->imatrix) st = qf_report_add_file(r, "imatrix", o->imatrix, err);
    if (!st && o->hessian) st = qf_report_add_file(r, "hessian", o->hessian, err);
    const qf_recipe *recipe = o->recipe ? qf_recipe_by_name(o->recipe) : NULL;
    cJSON_AddItemToObject(r, "recipe", recipe ? cJSON_CreateString(recipe->name) : cJSON_CreateNull());
    cJSON_AddStringToObject(r, "weight_type", qf_qtype_get(c->plan.weight_type)->name);
    cJSON_AddStringToObject(r, "method", c->method);
    if (c->experts.n) qf_json_add_item(r, "experts", qf_expert_coverage_json(&c->experts, &c->expert_rule));
    if (c->part_of) cJSON_AddItemToObject(r, "split", split_json(c, o));
    if (st) { cJSON_Delete(r); return st; }
    return qf_report_print(r, stdout) ? QF_OK : qf_fail(err, QF_E_IO, "could not write the plan to stdout");
}

static qf_status write_output(conversion *c, const qf_convert_opts *o, qf_error *err) {
    qf_status st = o->clamp_overflow ? survey_ranges(c, err) : QF_OK;
    qf_gguf_writer *w = NULL;
    qf_gguf_split split = {.n_parts = c->n_parts, .part_of = c->part_of, .n_tensors = c->plan.n, .only = o->only_split};
    if (!st) st = c->part_of ? qf_gguf_writer_open_split(o->out, &split, &w, err) : qf_gguf_writer_open(o->out, &w, err);
    return st ? st : write_gguf(c, o, w, err);
}

/* Bind the plan to the calibration data the method uses; warn where it covers only part of the layers
 * (the per-class record, qforge.methods and --dry-run, says exactly what each class got). */
static qf_status bind_calibration(conversion *c, const qf_convert_opts *o, qf_error *err) {
    const qf_imatrix *im = strcmp(c->method, "rtn") != 0 && c->have_imatrix ? &c->imatrix : NULL;
    const qf_hessian_set *hs = strcmp(c->method, "gptq") == 0 ? &c->hessians : NULL;
    qf_calib_coverage cov;
    c->plan.experts = c->expert_rule;
    qf_status st = qf_plan_bind_calibration(&c->plan, im, o->imatrix, hs, o->hessian, &cov, err);
    if (st) return st;
    if (im && c->experts.under && !o->dry_run)
        warn(o, "imatrix %s: %llu of %llu routed experts saw fewer than %u tokens; they are weighted '%s' "
             "(--sparse-experts; --dry-run lists them)", o->imatrix, (unsigned long long)c->experts.under,
             (unsigned long long)c->experts.experts, c->expert_rule.min_tokens, qf_sparse_experts_name(c->expert_rule.policy));
    if (im && cov.imatrix_layer < cov.layer_quantized)
        fprintf(stderr, "qforge: warning: imatrix %s covers %zu of the %zu quantized layer tensors; the other %zu are "
                "quantized without it\n", o->imatrix, cov.imatrix_layer, cov.layer_quantized,
                cov.layer_quantized - cov.imatrix_layer);
    if (hs && cov.gptq < cov.gptq_able)
        fprintf(stderr, "qforge: warning: Hessians %s cover %zu of the %zu tensors GPTQ can take; the other %zu are "
                "quantized %s\n", o->hessian, cov.gptq, cov.gptq_able, cov.gptq_able - cov.gptq,
                im ? "with the imatrix where it has them" : "without calibration");
    return QF_OK;
}

/* The solver's budget keeps the file within --target-size; a file beyond it is a bug to report. */
static qf_status check_target_size(const qf_convert_opts *o, qf_error *err) {
    struct stat sb;
    if (o->split_max_bytes || o->split_max_tensors || stat(o->out, &sb) != 0) return QF_OK;
    if ((uint64_t)sb.st_size <= o->target_size) return QF_OK;
    return qf_fail(err, QF_E_INTERNAL, "%s is %llu bytes, beyond --target-size %llu: the metadata outgrew the solver's "
                   "allowance; please report it", o->out, (unsigned long long)sb.st_size, (unsigned long long)o->target_size);
}

qf_status qf_convert(const qf_convert_opts *o, qf_error *err) {
    qf_error_clear(err);
    if (o->predicted_kld) *o->predicted_kld = NAN;
    if (o->recipe_kld) *o->recipe_kld = NAN;
    if (!o->dry_run && !o->out) return qf_fail(err, QF_E_USAGE, "no output file given (-o OUT.gguf)");
    const char *inputs[] = {o->src, o->imatrix, o->hessian};
    qf_status chk = check_split_options(o, err);
    /* checked again with all inputs and outputs known (check_outputs); a bad output fails here at no cost */
    if (!chk && !o->dry_run && !split_output(o)) chk = qf_outfile_check(o->out, inputs, QF_ARRAY_LEN(inputs), err);
    if (chk != QF_OK) return chk;
    conversion c = {0};
    qf_plan_opts po = {0};
    qf_status st = load_options(&c, o, &po, err);
    if (!st) st = load_model(&c, o, err);
    if (!st) st = load_kv_overrides(&c, o, err);
    if (!st) st = qf_plan_build(c.src, &c.hp, &po, &c.plan, err);
    if (!st) st = check_requantize(&c, o, err);
    if (!st) st = check_overrides(&c, o, err);
    if (!st && c.have_sens) st = solve_mix(&c, o, err);
    if (!st) st = bind_calibration(&c, o, err);
    if (!st && split_output(o)) st = plan_split(&c, o, err);
    if (!st && !o->dry_run) st = check_outputs(&c, o, err);
    if (!st && o->dry_run) st = dry_run(&c, o, err);
    else if (!st) st = write_output(&c, o, err);
    if (!st && c.have_sens && o->target_size && !o->dry_run) st = check_target_size(o, err);
    qf_plan_free(&c.plan);
    qf_sens_free(&c.sens);
    free(c.part_of);
    free(c.kv);
    for (size_t i = 0; i < c.n_overrides; i++) qf_type_override_free(&c.overrides[i]);
    free(c.overrides);
    if (c.have_imatrix) qf_imatrix_free(&c.imatrix);
    qf_expert_coverage_free(&c.experts);
    qf_hessian_free(&c.hessians);
    qf_vocab_free(&c.vocab);
    qf_source_close(c.src);
    return st;
}
