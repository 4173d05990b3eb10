/* qf_convert: compose source -> hyper-parameters + vocabulary -> plan -> GGUF writer (qforge.h). */
#include "formats/arch.h"
#include "formats/gguf.h"
#include "formats/source.h"
#include "formats/vocab.h"
#include "kernels/qtypes.h"
#include "quantize/plan.h"
#include "quantize/run.h"
#include "formats/imatrix.h"
#include "formats/hessian.h"
#include "formats/integrity.h"


#include <errno.h>
#include <float.h>
#include <libgen.h>
#include <unistd.h>

static qf_status source_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    return qf_source_read_file(ctx, name, buf, len, err);
}

/* general.name as llama.cpp's converter picks it: the model directory's name (archive: file name
 * without its archive extensions). */
static void model_name(const char *label, char *out, size_t n) {
    char *copy = strdup(label);
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

/* llama.cpp's size label: 260K, 21M, 7.2B ... (two significant digits at least). */
static void size_label(uint64_t params, char *out, size_t n) {
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
    const char *method;
    qf_hessian_set hessians;
    char hessian_digest[65];
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


/* Options that stand on their own: type/recipe names, override regexes, the imatrix, the method. */
static qf_status load_options(conversion *c, const qf_convert_opts *o, qf_plan_opts *po, qf_error *err) {
    if (o->recipe) {
        if (!(po->recipe = qf_recipe_by_name(o->recipe)))
            return qf_fail(err, QF_E_USAGE, "--recipe '%s' is not a recipe (see qforge quantize --help)", o->recipe);
    } else {
        const qf_qtype_traits *tt = qf_qtype_by_name(o->type ? o->type : "f16");
        if (!tt || !tt->quantize)
            return qf_fail(err, QF_E_USAGE, "--type '%s' is not a type this build can write (see --help)", o->type);
        po->type = tt->id;
    }
    c->overrides = qf_calloc_n(o->n_tensor_types, sizeof *c->overrides);
    if (!c->overrides) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n_tensor_types; i++, c->n_overrides++) {
        qf_status st = qf_type_override_parse(o->tensor_types[i], &c->overrides[i], err);
        if (st) return st;
    }
    po->overrides = c->overrides;
    po->n_overrides = c->n_overrides;
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
    if (!o->imatrix) return QF_OK;
    if ((st = qf_imatrix_load(o->imatrix, &c->imatrix, err))) return st;
    c->have_imatrix = true;
    return qf_sha256_file_hex(o->imatrix, c->imatrix_digest, err);
}

/* A GGUF source already carries hyper-parameters and vocabulary as metadata. */
static qf_status load_gguf_model(conversion *c, qf_error *err) {
    qf_status st = qf_hparams_from_gguf(qf_source_gguf(c->src), &c->hp, err);
    if (st) return qf_fail_prefix(err, st, qf_source_label(c->src));
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
    model_name(qf_source_label(c->src), c->hp.name, sizeof c->hp.name);
    if ((st = qf_vocab_load_hf(source_reader, c->src, c->hp.n_vocab, &c->vocab, err)))
        return qf_fail_prefix(err, st, qf_source_label(c->src));
    return qf_source_digest(c->src, c->src_digest, err);
}

/* Re-quantizing a GGUF keeps its metadata (architecture keys, vocabulary, chat template, ...) except
 * what this run states anew: file type, qforge provenance and integrity, llama-quantize's imatrix keys. */
static qf_status copy_gguf_metadata(const qf_gguf *g, qf_gguf_writer *w, qf_error *err) {
    static const char *const fresh[] = {"general.file_type", "general.quantization_version", "qforge.", "quantize.imatrix."};
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        bool skip = false;
        for (size_t f = 0; f < QF_ARRAY_LEN(fresh); f++) skip |= !strncmp(kv->key, fresh[f], strlen(fresh[f]));
        if (kv->type == QF_GGUF_ARRAY && kv->arr_type == QF_GGUF_ARRAY) skip = true; /* llama.cpp has none */
        qf_status st = skip ? QF_OK : qf_gguf_set_kv(w, kv, err);
        if (st) return st;
    }
    return QF_OK;
}

static qf_status write_model_metadata(const conversion *c, qf_gguf_writer *w, qf_error *err) {
    if (qf_source_gguf(c->src)) return copy_gguf_metadata(qf_source_gguf(c->src), w, err);
    char label[32];
    size_label(c->plan.total_params, label, sizeof label);
    qf_status st;
    if ((st = qf_hparams_write_gguf(&c->hp, w, err)) || (st = qf_gguf_set_str(w, "general.size_label", label, err)))
        return st;
    return QF_OK;
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

static qf_status write_metadata(const conversion *c, const qf_convert_opts *o, qf_gguf_writer *w, qf_error *err) {
    int ftype = qf_plan_file_type(c->plan.weight_type);
    qf_status st;
    if ((st = write_model_metadata(c, w, err)) ||
        (ftype >= 0 && (st = qf_gguf_set_u32(w, "general.file_type", (uint32_t)ftype, err))) ||
        (st = qf_gguf_set_u32(w, "general.quantization_version", 2, err)) ||
        (!qf_source_gguf(c->src) && (st = qf_vocab_write_gguf(&c->vocab, w, err))) ||
        (st = qf_gguf_set_str(w, "qforge.version", QF_VERSION_STRING, err)) ||
        (st = qf_gguf_set_str(w, "qforge.source_sha256", c->src_digest, err)) ||
        (st = qf_gguf_set_str(w, "qforge.recipe", o->recipe ? o->recipe : o->type ? o->type : "f16", err)) ||
        (st = qf_gguf_set_str(w, "qforge.method", c->method, err)))
        return st;
    if (o->n_tensor_types && (st = qf_gguf_set_arr_str(w, "qforge.tensor_types", o->tensor_types, o->n_tensor_types, err)))
        return st;
    if (o->hessian && (st = qf_gguf_set_str(w, "qforge.hessian_sha256", c->hessian_digest, err))) return st;
    if ((st = write_methods(&c->plan, w, err))) return st;
    if (c->have_imatrix) {
        if ((st = qf_gguf_set_str(w, "qforge.imatrix_sha256", c->imatrix_digest, err))) return st;
        /* llama-quantize's keys, so tools that read those see the imatrix too */
        if ((st = qf_gguf_set_str(w, "quantize.imatrix.file", o->imatrix, err)) ||
            (st = qf_gguf_set_i32(w, "quantize.imatrix.entries_count", (int32_t)c->imatrix.n, err)) ||
            (st = qf_gguf_set_i32(w, "quantize.imatrix.chunks_count", (int32_t)c->imatrix.chunk_count, err)))
            return st;
        if (c->imatrix.n_datasets && (st = qf_gguf_set_str(w, "quantize.imatrix.dataset", c->imatrix.datasets[0], err)))
            return st;
        if (c->imatrix.calibration_sha256 &&
            (st = qf_gguf_set_str(w, "qforge.calibration_sha256", c->imatrix.calibration_sha256, err)))
            return st;
    }
    return QF_OK;
}

/* Clamp mode: count, before anything is written, what every tensor will have clamped, so the file's
 * metadata can say so (qforge.clamped) and stderr can warn. */
static qf_status survey_ranges(conversion *c, qf_error *err) {
    for (size_t i = 0; i < c->plan.n; i++) {
        qf_plan_entry *e = &c->plan.e[i];
        const qf_qtype_traits *tt = qf_qtype_get(e->type);
        if (tt->max_abs >= FLT_MAX) continue;
        float amax;
        qf_status st = qf_tensor_range(c->src, &c->hp, e, &e->clamped, &amax, err);
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

static qf_status write_output(conversion *c, const qf_convert_opts *o, qf_error *err) {
    qf_status st = o->clamp_overflow ? survey_ranges(c, err) : QF_OK;
    qf_gguf_writer *w = NULL;
    if (!st) st = qf_gguf_writer_open(o->out, &w, err);
    return st ? st : write_gguf(c, o, w, err);
}

/* Bind the plan to the calibration data the method uses; warn where it covers only part of the layers
 * (the per-class record, qforge.methods and --dry-run, says exactly what each class got). */
static qf_status bind_calibration(conversion *c, const qf_convert_opts *o, qf_error *err) {
    const qf_imatrix *im = strcmp(c->method, "rtn") != 0 && c->have_imatrix ? &c->imatrix : NULL;
    const qf_hessian_set *hs = strcmp(c->method, "gptq") == 0 ? &c->hessians : NULL;
    qf_calib_coverage cov;
    qf_status st = qf_plan_bind_calibration(&c->plan, im, o->imatrix, hs, o->hessian, &cov, err);
    if (st) return st;
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

qf_status qf_convert(const qf_convert_opts *o, qf_error *err) {
    qf_error_clear(err);
    if (!o->dry_run && !o->out) return qf_fail(err, QF_E_USAGE, "no output file given (-o OUT.gguf)");
    conversion c = {0};
    qf_plan_opts po = {0};
    qf_status st = load_options(&c, o, &po, err);
    if (!st) st = load_model(&c, o, err);
    if (!st) st = qf_plan_build(c.src, &c.hp, &po, &c.plan, err);
    if (!st) st = bind_calibration(&c, o, err);
    if (!st && o->dry_run) qf_plan_print(&c.plan, stdout);
    else if (!st) st = write_output(&c, o, err);
    qf_plan_free(&c.plan);
    for (size_t i = 0; i < c.n_overrides; i++) qf_type_override_free(&c.overrides[i]);
    free(c.overrides);
    if (c.have_imatrix) qf_imatrix_free(&c.imatrix);
    qf_hessian_free(&c.hessians);
    qf_vocab_free(&c.vocab);
    qf_source_close(c.src);
    return st;
}
