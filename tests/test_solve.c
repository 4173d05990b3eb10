/*
 * The automatic-mix solver (quantize/solve.h) on made-up sensitivity tables: budgets met, the greedy
 * solution against the exact optimum found by enumeration, --max-kld, pins and F32 policies untouched,
 * extension types only when allowed, determinism, tables of another model refused; the table's JSON
 * round trip and its malformed forms (formats/sensitivity.h).
 */
#include "testutil.h"

#include "formats/arch.h"
#include "formats/sensitivity.h"
#include "formats/source.h"
#include "kernels/qtypes.h"
#include "quantize/plan.h"
#include "quantize/solve.h"

#include <math.h>

#define FREE 5 /* tensors the solver decides in the enumeration tests */

static const uint32_t cand_types[] = {QF_T_Q2_K, QF_T_Q3_K, QF_T_Q4_K, QF_T_Q5_K, QF_T_Q6_K, QF_T_Q8_0};

typedef struct fixture {
    qf_source *src;
    qf_hparams hp;
    qf_plan plan;
    qf_sens sens;
    size_t free_idx[FREE];
} fixture;

/* A synth model planned at q8_0; its first FREE quantized tensors are left to the solver, the others
 * pinned (as --tensor-type pins them). The table: err halving per type step with random factors, gains
 * spread over two decades. */
static bool fixture_open(fixture *f, uint64_t seed, bool all_free) {
    memset(f, 0, sizeof *f);
    char dir[4096];
    qf_test_fresh_dir(all_free ? "model_all" : "model", dir, sizeof dir);
    qf_error err;
    qf_synth_opts so = {.dir = dir, .seed = 5, .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_vocab = 512, .dtype = "bf16"};
    CHECK_OK(qf_synth_model(&so, &err), &err);
    char *cfg;
    size_t len;
    if (qf_source_open(dir, &f->src, &err)) return false;
    if (qf_source_read_file(f->src, "config.json", &cfg, &len, &err)) return false;
    CHECK_OK(qf_hparams_from_hf("config.json", cfg, len, &f->hp, &err), &err);
    free(cfg);
    qf_plan_opts po = {.type = QF_T_Q8_0};
    CHECK_OK(qf_plan_build(f->src, &f->hp, &po, &f->plan, &err), &err);
    f->sens.t = qf_calloc_n(f->plan.n, sizeof *f->sens.t);
    size_t n_free = 0;
    uint64_t rng = seed;
    for (size_t i = 0; i < f->plan.n; i++) {
        qf_plan_entry *e = &f->plan.e[i];
        if (!qf_qtype_get(e->type)->quantized) continue;
        if (!all_free && n_free == FREE) { e->override = 0; continue; }
        if (n_free < FREE) f->free_idx[n_free] = i;
        n_free++;
        qf_sens_tensor *t = &f->sens.t[f->sens.n++];
        snprintf(t->name, sizeof t->name, "%s", e->name);
        t->params = e->ne[0] * e->n_rows;
        t->gain = pow(10.0, 2.0 * (double)(qf_test_rand(&rng) % 1000) / 1000.0) * 1e-6;
        double err0 = (double)t->params * (1 + (double)(qf_test_rand(&rng) % 100) / 100.0);
        for (size_t k = 0; k < QF_ARRAY_LEN(cand_types); k++) {
            uint64_t row;
            qf_qtype_row_bytes(qf_qtype_get(cand_types[k]), e->ne[0], &row);
            t->c[t->n++] = (qf_sens_cand){.type = cand_types[k], .bytes = row * e->n_rows, .err = err0, .kld = NAN};
            err0 *= 0.2 + 0.15 * (double)(qf_test_rand(&rng) % 100) / 100.0;
        }
    }
    f->sens.probe = QF_T_Q3_K;
    return n_free >= FREE;
}

static void fixture_close(fixture *f) {
    qf_plan_free(&f->plan);
    qf_sens_free(&f->sens);
    qf_source_close(f->src);
}

static double cost_of(const qf_sens *s, const qf_plan_entry *e) {
    const qf_sens_tensor *t = qf_sens_find(s, e->name);
    const qf_sens_cand *c = t ? qf_sens_cand_of(t, e->type) : NULL;
    return c ? qf_sens_predict(t, c) : NAN;
}

/* The exact optimum over the FREE tensors: least cost within `budget` plan bytes (or least bytes with
 * cost <= max_kld when budget is 0). */
static void enumerate(const fixture *f, uint64_t fixed, uint64_t budget, double max_kld, double *best_cost,
                      uint64_t *best_bytes) {
    size_t nc = QF_ARRAY_LEN(cand_types), combos = 1;
    for (int i = 0; i < FREE; i++) combos *= nc;
    *best_cost = INFINITY;
    *best_bytes = UINT64_MAX;
    for (size_t m = 0; m < combos; m++) {
        uint64_t bytes = fixed;
        double cost = 0;
        for (size_t i = 0, x = m; i < FREE; i++, x /= nc) {
            const qf_sens_tensor *t = qf_sens_find(&f->sens, f->plan.e[f->free_idx[i]].name);
            bytes += t->c[x % nc].bytes;
            cost += qf_sens_predict(t, &t->c[x % nc]);
        }
        if (budget ? bytes <= budget && cost < *best_cost : cost <= max_kld && bytes < *best_bytes) {
            *best_cost = cost;
            *best_bytes = bytes;
        }
    }
}

/* The largest loss one tensor's single type step saves, and the largest bytes it costs: the greedy
 * solution is within one such step of the optimum. */
static void step_bounds(const fixture *f, double *cost, uint64_t *bytes) {
    *cost = 0;
    *bytes = 0;
    for (int i = 0; i < FREE; i++) {
        const qf_sens_tensor *t = qf_sens_find(&f->sens, f->plan.e[f->free_idx[i]].name);
        for (size_t k = 0; k + 1 < t->n; k++) {
            *cost = fmax(*cost, qf_sens_predict(t, &t->c[k]) - qf_sens_predict(t, &t->c[k + 1]));
            *bytes = QF_MAX(*bytes, t->c[k + 1].bytes - t->c[k].bytes);
        }
    }
}

static void test_budgets(void) {
    for (uint64_t seed = 1; seed <= 4; seed++) {
        fixture f;
        if (!fixture_open(&f, seed, false)) { CHECK(!"fixture"); fixture_close(&f); return; }
        uint64_t fixed = f.plan.total_bytes, lo = 0, hi = 0;
        for (int i = 0; i < FREE; i++) {
            const qf_plan_entry *e = &f.plan.e[f.free_idx[i]];
            const qf_sens_tensor *t = qf_sens_find(&f.sens, e->name);
            fixed -= e->nbytes;
            lo += t->c[0].bytes;
            hi += t->c[t->n - 1].bytes;
        }
        double step_cost;
        uint64_t step_bytes;
        step_bounds(&f, &step_cost, &step_bytes);
        for (int q = 0; q <= 8; q++) {
            uint64_t budget = fixed + lo + (hi - lo) * (uint64_t)q / 8;
            qf_plan p = f.plan; /* the solver rewrites entries: work on a copy of them */
            qf_plan_entry *saved = qf_malloc_n(f.plan.n, sizeof *saved);
            memcpy(saved, f.plan.e, f.plan.n * sizeof *saved);
            qf_solve_opts so = {.max_bytes = budget, .max_kld = -1, .label = "table"};
            qf_solve_result r;
            qf_error err;
            CHECK_OK(qf_plan_solve(f.src, &p, &f.sens, &so, &r, &err), &err);
            double opt;
            uint64_t opt_bytes;
            enumerate(&f, fixed, budget, 0, &opt, &opt_bytes);
            CHECK_MSG(p.total_bytes <= budget, "seed %llu: %llu bytes over the budget %llu", (unsigned long long)seed,
                      (unsigned long long)p.total_bytes, (unsigned long long)budget);
            CHECK_MSG(r.predicted_kld >= opt - 1e-12 && r.predicted_kld <= opt + step_cost + 1e-12,
                      "seed %llu budget %d/8: greedy %.6g, optimum %.6g, one step %.3g", (unsigned long long)seed, q,
                      r.predicted_kld, opt, step_cost);
            if (q == 8) CHECK(fabs(r.predicted_kld - opt) < 1e-12); /* everything fits: the best of each */
            double sum = 0;
            for (int i = 0; i < FREE; i++) sum += cost_of(&f.sens, &p.e[f.free_idx[i]]);
            CHECK(fabs(sum - r.predicted_kld) <= 1e-12 * fmax(1, sum));
            CHECK(r.chosen == FREE);
            for (size_t i = 0; i < p.n; i++) /* pinned and unquantized entries are not touched */
                if (p.e[i].override >= 0 || !qf_qtype_get(saved[i].type)->quantized) CHECK(p.e[i].type == saved[i].type);
            /* --max-kld: the least bytes for the cost just reached */
            memcpy(f.plan.e, saved, f.plan.n * sizeof *saved);
            p = f.plan;
            double bound = r.predicted_kld * 1.0000001;
            so = (qf_solve_opts){.max_kld = bound, .label = "table"};
            CHECK_OK(qf_plan_solve(f.src, &p, &f.sens, &so, &r, &err), &err);
            enumerate(&f, fixed, 0, bound, &opt, &opt_bytes);
            CHECK(r.predicted_kld <= bound);
            CHECK_MSG(p.total_bytes <= opt_bytes + step_bytes, "max-kld: %llu bytes, least %llu",
                      (unsigned long long)p.total_bytes, (unsigned long long)opt_bytes);
            memcpy(f.plan.e, saved, f.plan.n * sizeof *saved);
            free(saved);
        }
        fixture_close(&f);
    }
}

static void test_refusals(void) {
    fixture f;
    if (!fixture_open(&f, 9, true)) { CHECK(!"fixture"); fixture_close(&f); return; }
    qf_error err;
    qf_solve_result r;
    uint64_t before = f.plan.total_bytes;
    qf_solve_opts so = {.max_bytes = 1000, .max_kld = -1, .label = "t.json"};
    CHECK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err) == QF_E_INPUT && strstr(err.msg, "below the smallest"));
    CHECK(f.plan.total_bytes == before);
    so = (qf_solve_opts){.max_kld = 1e-30, .label = "t.json"};
    CHECK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err) == QF_E_INPUT && strstr(err.msg, "predicts a KLD"));
    so = (qf_solve_opts){.max_kld = -1, .label = "t.json"};
    CHECK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err) == QF_E_USAGE);
    /* a table of another model: a tensor missing, or of another size */
    f.sens.t[1].params++;
    so = (qf_solve_opts){.max_bytes = before, .max_kld = -1, .label = "t.json"};
    CHECK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err) == QF_E_INPUT && strstr(err.msg, f.sens.t[1].name));
    f.sens.t[1].params--;
    char missing[96];
    snprintf(missing, sizeof missing, "%s", f.sens.t[2].name);
    f.sens.t[2].name[0] = 'X';
    CHECK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err) == QF_E_INPUT && strstr(err.msg, missing));
    snprintf(f.sens.t[2].name, sizeof f.sens.t[2].name, "%s", missing);
    /* an extension type that predicts no loss at all is taken only when allowed */
    for (size_t i = 0; i < f.sens.n; i++) {
        qf_sens_tensor *t = &f.sens.t[i];
        const qf_plan_entry *e = NULL;
        for (size_t k = 0; k < f.plan.n; k++) if (!strcmp(f.plan.e[k].name, t->name)) e = &f.plan.e[k];
        uint64_t row;
        if (!e || !qf_qtype_row_bytes(qf_qtype_get(QF_T_E4M3_B32), e->ne[0], &row)) continue;
        t->c[t->n++] = (qf_sens_cand){.type = QF_T_E4M3_B32, .bytes = row * e->n_rows, .err = 0, .kld = NAN};
    }
    so = (qf_solve_opts){.max_bytes = before * 2, .max_kld = -1, .label = "t.json"};
    qf_plan_entry *saved = qf_malloc_n(f.plan.n, sizeof *saved);
    memcpy(saved, f.plan.e, f.plan.n * sizeof *saved);
    uint64_t total = f.plan.total_bytes;
    CHECK_OK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err), &err);
    bool ext = false;
    for (size_t i = 0; i < f.plan.n; i++) ext |= qf_qtype_get(f.plan.e[i].type)->file_type < 0;
    CHECK(!ext);
    memcpy(f.plan.e, saved, f.plan.n * sizeof *saved);
    f.plan.total_bytes = total;
    so.allow_extension = true;
    CHECK_OK(qf_plan_solve(f.src, &f.plan, &f.sens, &so, &r, &err), &err);
    CHECK_MSG(r.predicted_kld == 0, "%g", r.predicted_kld);
    free(saved);
    fixture_close(&f);
}

static void test_table_file(void) {
    fixture f;
    if (!fixture_open(&f, 3, true)) { CHECK(!"fixture"); fixture_close(&f); return; }
    snprintf(f.sens.model, sizeof f.sens.model, "synth");
    f.sens.rank_proxy = 0.5;
    f.sens.rank_check = NAN;
    f.sens.t[0].c[1].kld = 1.25e-3;
    char path[4096], back[4096];
    qf_test_path("sens.json", path, sizeof path);
    qf_test_path("sens2.json", back, sizeof back);
    qf_error err;
    CHECK_OK(qf_sens_save(path, &f.sens, &err), &err);
    qf_sens s;
    CHECK_OK(qf_sens_load(path, &s, &err), &err);
    CHECK(s.n == f.sens.n && s.probe == f.sens.probe && s.rank_proxy == 0.5 && isnan(s.rank_check));
    CHECK(s.t[0].c[1].kld == 1.25e-3 && isnan(s.t[0].c[2].kld));
    for (size_t i = 0; i < s.n && i < f.sens.n; i++) {
        CHECK(!strcmp(s.t[i].name, f.sens.t[i].name) && s.t[i].gain == f.sens.t[i].gain && s.t[i].n == f.sens.t[i].n);
        for (size_t k = 0; k < s.t[i].n; k++)
            CHECK(s.t[i].c[k].err == f.sens.t[i].c[k].err && s.t[i].c[k].bytes == f.sens.t[i].c[k].bytes);
    }
    CHECK_OK(qf_sens_save(back, &s, &err), &err);
    CHECK(qf_test_same_file(path, back));
    qf_sens_free(&s);
    /* malformed tables: one line naming the file and what is wrong */
    size_t len;
    char *text = (char *)qf_test_read_file(path, &len);
    struct { const char *from, *to, *want; } bad[] = {
        {"qforge.sensitivity/1", "qforge.plan/1", "not a qforge sensitivity table"},
        {"\"q2_K\"", "\"q9_Z\"", "not a type this build can write"},
        {"\"gain\":\t", "\"gain\":\t-", "not a finite number"},
        {"\"weighted\":", "\"weightless\":", "\"weighted\""},
    };
    for (size_t b = 0; text && b < QF_ARRAY_LEN(bad); b++) {
        char *at = strstr(text, bad[b].from);
        CHECK(at != NULL);
        if (!at) continue;
        size_t pre = (size_t)(at - text), fl = strlen(bad[b].from), tl = strlen(bad[b].to);
        char *mod = malloc(len + tl + 1);
        memcpy(mod, text, pre);
        memcpy(mod + pre, bad[b].to, tl);
        memcpy(mod + pre + tl, at + fl, len - pre - fl);
        qf_test_write_file(back, mod, len - fl + tl);
        qf_status st = qf_sens_load(back, &s, &err);
        CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, bad[b].want) && strstr(err.msg, "sens2.json") &&
                      !strchr(err.msg, '\n'), "%s: %s", bad[b].want, err.msg);
        free(mod);
    }
    free(text);
    fixture_close(&f);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_budgets();
    test_refusals();
    test_table_file();
    return qf_test_finish();
}
