/* measure.c — qf_measure_model (qforge.h): candidates quantized, then measured (verify/sensitivity.h). */
#include "formats/imatrix.h"
#include "formats/outfile.h"
#include "formats/sensitivity.h"
#include "kernels/qtypes.h"
#include "qforge.h"
#include "verify/sensitivity.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Chunks of text by default: on qf-llama-a, 4 chunks of 256 tokens gave the same mix as 8 (README). */
#define MEASURE_CHUNKS 4

static const char *const default_types[] = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_0"};

typedef struct workspace {
    char dir[4096];
    char path[QF_SENS_MAX_TYPES + 1][4200]; /* the candidates, then the F32 base */
    size_t n;
} workspace;

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* A private directory beside the output (or in work_dir), so the candidates share its filesystem. */
static qf_status workspace_open(workspace *w, const qf_measure_model_opts *o, qf_error *err) {
    memset(w, 0, sizeof *w);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", o->out);
    const char *parent = o->work_dir ? o->work_dir : dirname(copy);
    if ((size_t)snprintf(w->dir, sizeof w->dir, "%s/.qforge-measure.XXXXXX", parent) >= sizeof w->dir)
        return qf_fail(err, QF_E_USAGE, "%s: path too long", parent);
    if (!mkdtemp(w->dir))
        return qf_fail(err, QF_E_IO, "cannot make a directory for the candidates in %s: %s", parent, strerror(errno));
    return QF_OK;
}

static void workspace_remove(workspace *w) {
    for (size_t i = 0; i < w->n; i++) unlink(w->path[i]);
    if (w->dir[0]) rmdir(w->dir);
}

static qf_status check_types(const char *const *types, size_t n, const char *probe, size_t *probe_at, qf_error *err) {
    *probe_at = SIZE_MAX;
    if (n < 1 || n > QF_SENS_MAX_TYPES) return qf_fail(err, QF_E_USAGE, "give 1 to %d candidate types", QF_SENS_MAX_TYPES);
    for (size_t i = 0; i < n; i++) {
        const qf_qtype_traits *t = qf_qtype_by_name(types[i]);
        if (!t || !t->quantize || !t->quantized)
            return qf_fail(err, QF_E_USAGE, "--types: '%s' is not a quantized type this build can write", types[i]);
        for (size_t k = 0; k < i; k++)
            if (qf_qtype_by_name(types[k]) == t) return qf_fail(err, QF_E_USAGE, "--types: '%s' given twice", types[i]);
        if (qf_qtype_by_name(probe) == t) *probe_at = i;
    }
    if (*probe_at == SIZE_MAX)
        return qf_fail(err, QF_E_USAGE, "--probe %s is not among the candidate types", probe);
    return QF_OK;
}

/* The candidates, and the base as an F32 GGUF (every source type converts to F32 exactly), so that base
 * and candidates hold their rows alike (a GGUF's attn_q/attn_k rows are permuted for ggml's rope) and a
 * candidate's tensor swaps into the base as it is. */
static qf_status make_candidates(workspace *w, const qf_measure_model_opts *o, const char *const *types, size_t n,
                                 uint64_t *bytes, qf_error *err) {
    *bytes = 0;
    for (size_t i = 0; i <= n; i++) {
        snprintf(w->path[i], sizeof w->path[i], "%s/%s.gguf", w->dir, i < n ? qf_qtype_by_name(types[i])->name : "base-f32");
        w->n = i + 1;
        qf_convert_opts c = {.src = o->src, .out = w->path[i], .type = i < n ? types[i] : "f32",
                             .imatrix = i < n ? o->imatrix : NULL,
                             .threads = o->threads, .progress = o->progress, .progress_user = o->progress_user,
                             .warn = o->warn, .warn_user = o->warn_user};
        qf_status st = qf_convert(&c, err);
        if (st) return st;
        struct stat sb;
        if (stat(w->path[i], &sb) == 0) *bytes += (uint64_t)sb.st_size;
    }
    return QF_OK;
}


static void on_tensor(void *user, const char *tensor, size_t done, size_t total) {
    const qf_measure_model_opts *o = user;
    if (o->count_progress) o->count_progress(o->progress_user, tensor, done, total);
}

qf_status qf_measure_model(const qf_measure_model_opts *o, qf_measure_model_result *r, qf_error *err) {
    qf_error_clear(err);
    memset(r, 0, sizeof *r);
    r->rank_proxy = r->rank_check = NAN;
    if (!o->out) return qf_fail(err, QF_E_USAGE, "no output file given (-o TABLE.json)");
    if (!o->text_path) return qf_fail(err, QF_E_USAGE, "no text given (-f TEXT): the true effects are measured on it");
    const char *inputs[] = {o->src, o->imatrix, o->text_path};
    qf_status st = qf_outfile_check(o->out, inputs, QF_ARRAY_LEN(inputs), err);
    if (st) return st;
    const char *const *types = o->types ? o->types : default_types;
    size_t n = o->types ? o->n_types : QF_ARRAY_LEN(default_types), probe;
    if ((st = check_types(types, n, o->probe ? o->probe : "q3_K", &probe, err))) return st;
    qf_imatrix im = {0};
    bool have_im = false;
    if (o->imatrix && !(st = qf_imatrix_load(o->imatrix, &im, err))) have_im = true;
    if (st) return st;
    workspace w;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = workspace_open(&w, o, err);
    if (!st) st = make_candidates(&w, o, types, n, &r->candidate_bytes, err);
    r->quantize_seconds = seconds_since(&t0);
    qf_sens table = {0};
    if (!st) {
        const char *cands[QF_SENS_MAX_TYPES];
        for (size_t i = 0; i < n; i++) cands[i] = w.path[i];
        qf_measure_opts mo = {.base = w.path[n], .candidates = cands, .n_candidates = n, .probe = probe,
                              .probe_type = qf_qtype_by_name(types[probe])->id, .imatrix = have_im ? &im : NULL,
                              .text_path = o->text_path, .ctx = o->ctx, .chunks = o->chunks ? o->chunks : MEASURE_CHUNKS, .threads = o->threads,
                              .no_escape = o->no_escape, .check = o->check, .progress = on_tensor, .user = (void *)o};
        st = qf_measure(&mo, &table, err);
        snprintf(table.model, sizeof table.model, "%s", o->src);
    }
    r->measure_seconds = seconds_since(&t0) - r->quantize_seconds;
    workspace_remove(&w);
    if (!st) st = qf_sens_save(o->out, &table, err);
    if (!st) {
        r->tensors = table.n;
        r->rank_proxy = table.rank_proxy;
        r->rank_check = table.rank_check;
    }
    qf_sens_free(&table);
    if (have_im) qf_imatrix_free(&im);
    return st;
}
