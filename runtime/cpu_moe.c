/* cpu_moe.c — mixture-of-experts on the CPU backend (backend.h: moe): route every token, then run
 * each expert once over exactly the tokens routed to it, and add the weighted outputs back.
 *
 * Routing follows llama.cpp's build_moe_ffn (and the HF/DeepSeek code it mirrors): scores are the
 * softmax or sigmoid of the router's logits; the selection bias (DeepSeek-V3's e_score_correction_bias)
 * moves only which experts are chosen, never their weights; with expert groups, the best n_group_used
 * groups (by the sum of each group's two best biased scores, or its best one for DeepSeek-V2's
 * group_limited_greedy) are the only candidates; the top n_used candidates win (ties to the lower
 * index), and their unbiased scores, optionally renormalised and scaled, weigh their outputs.
 *
 * Determinism: a token's outputs are summed in ascending expert order, each expert's product is the
 * same chain of FMAs whatever the thread count, so the bits do not depend on scheduling. */
#include "runtime/cpu_state.h"

#include <math.h>

/* Indices of the k largest of v[0..n) (ties to the lower index), best first. */
static void top_k(const float *v, uint32_t n, uint32_t k, uint32_t *out) {
    for (uint32_t i = 0; i < k; i++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t e = 0; e < n; e++) {
            bool taken = false;
            for (uint32_t j = 0; j < i && !taken; j++) taken = out[j] == e;
            if (!taken && (best == UINT32_MAX || v[e] > v[best])) best = e;
        }
        out[i] = best;
    }
}

/* Scores of one token's logits (n experts): softmax with the sum in double, or the sigmoid. */
static void scores(const qf_be *be, const qf_hparams *hp, float *s, uint32_t n) {
    if (hp->gating == QF_GATING_SIGMOID) {
        for (uint32_t e = 0; e < n; e++) s[e] = -s[e];
        be->k->vexp(s, s, n);
        for (uint32_t e = 0; e < n; e++) s[e] = 1.0f / (1.0f + s[e]);
        return;
    }
    float mx = -INFINITY;
    for (uint32_t e = 0; e < n; e++) mx = s[e] > mx ? s[e] : mx;
    for (uint32_t e = 0; e < n; e++) s[e] -= mx;
    be->k->vexp(s, s, n);
    double sum = 0;
    for (uint32_t e = 0; e < n; e++) sum += s[e];
    float inv = (float)(1.0 / sum);
    for (uint32_t e = 0; e < n; e++) s[e] *= inv;
}

/* Leave only the best groups' experts as candidates (the others -inf). */
static void limit_groups(const qf_hparams *hp, float *sel) {
    uint32_t G = hp->n_expert_group, per = hp->n_expert / G;
    float gs[QF_MAX_EXPERT_GROUPS];
    uint32_t keep[QF_MAX_EXPERT_GROUPS], best2[2];
    for (uint32_t g = 0; g < G; g++) {
        if (hp->group_score == QF_GROUP_MAX) {
            top_k(sel + g * per, per, 1, best2);
            gs[g] = sel[g * per + best2[0]];
        } else {
            top_k(sel + g * per, per, QF_MIN(2u, per), best2);
            gs[g] = sel[g * per + best2[0]] + (per > 1 ? sel[g * per + best2[1]] : 0.0f);
        }
    }
    top_k(gs, G, hp->n_expert_group_used, keep);
    for (uint32_t g = 0; g < G; g++) {
        bool kept = false;
        for (uint32_t i = 0; i < hp->n_expert_group_used && !kept; i++) kept = keep[i] == g;
        if (!kept)
            for (uint32_t e = 0; e < per; e++) sel[g * per + e] = -INFINITY;
    }
}

/* The experts and weights of token column t. */
static void route_token(qf_be *be, const qf_be_moe *m, size_t t, float *s, float *sel) {
    const qf_hparams *hp = m->hp;
    uint32_t n = hp->n_expert, k = hp->n_expert_used, idx[QF_MAX_EXPERTS_USED];
    for (uint32_t e = 0; e < n; e++) s[e] = m->logits[(size_t)e * be->ld + t];
    scores(be, hp, s, n);
    for (uint32_t e = 0; e < n; e++) sel[e] = m->bias ? s[e] + m->bias[e] : s[e];
    if (hp->n_expert_group > 1) limit_groups(hp, sel);
    top_k(sel, n, k, idx);
    float sum = 0, *w = be->route_w + t * k;
    uint16_t *ex = be->route_e + t * k;
    for (uint32_t i = 0; i < k; i++) {
        ex[i] = (uint16_t)idx[i];
        w[i] = s[idx[i]];
        sum += w[i];
    }
    /* llama.cpp clamps the sum to the smallest normal half before dividing */
    if (hp->expert_weights_norm)
        for (uint32_t i = 0; i < k; i++) w[i] /= fmaxf(sum, 6.103515625e-5f);
    if (hp->expert_weights_scale != 0.0f && hp->expert_weights_scale != 1.0f)
        for (uint32_t i = 0; i < k; i++) w[i] *= hp->expert_weights_scale;
}

typedef struct route_job {
    qf_be *be;
    const qf_be_moe *m;
} route_job;

static void route_worker(void *arg, int ith, int nth) {
    const route_job *j = arg;
    qf_be *be = j->be;
    uint32_t n = j->m->hp->n_expert;
    float *s = be->scratch[ith], *sel = s + n;
    for (size_t t = (size_t)ith; t < be->pass.cols; t += (size_t)nth)
        if (qf_cpu_is_token(&be->pass, t)) route_token(be, j->m, t, s, sel);
}

/* (column, slot) pairs of every expert, grouped by expert in column order; counts per expert. */
static void group_by_expert(qf_be *be, uint32_t n_expert, uint32_t k) {
    uint32_t *start = be->ex_start, *fill = be->ex_fill;
    for (uint32_t e = 0; e <= n_expert; e++) start[e] = 0;
    for (size_t t = 0; t < be->pass.cols; t++)
        if (qf_cpu_is_token(&be->pass, t))
            for (uint32_t i = 0; i < k; i++) start[be->route_e[t * k + i] + 1]++;
    for (uint32_t e = 0; e < n_expert; e++) start[e + 1] += start[e];
    memcpy(fill, start, (n_expert + 1) * sizeof *fill);
    for (size_t t = 0; t < be->pass.cols; t++)
        if (qf_cpu_is_token(&be->pass, t))
            for (uint32_t i = 0; i < k; i++) be->by_expert[fill[be->route_e[t * k + i]]++] = (uint32_t)(t * k + i);
}

typedef struct expert_job {
    qf_be *be;
    const qf_be_moe *m;
    const uint32_t *pairs;  /* this expert's (column * k + slot) entries */
    uint32_t n, k;
    size_t rows;            /* gather: input features; glu: FFN rows; scatter: output rows */
} expert_job;

static void gather_worker(void *arg, int ith, int nth) {
    const expert_job *j = arg;
    size_t ld = j->be->ld, lo = j->rows * (size_t)ith / (size_t)nth, hi = j->rows * (size_t)(ith + 1) / (size_t)nth;
    for (size_t f = lo; f < hi; f++)
        for (uint32_t i = 0; i < j->n; i++) j->be->ex_in[f * ld + i] = j->m->x[f * ld + j->pairs[i] / j->k];
}

static void glu_worker(void *arg, int ith, int nth) {
    const expert_job *j = arg;
    qf_be *be = j->be;
    size_t lo = j->rows * (size_t)ith / (size_t)nth, hi = j->rows * (size_t)(ith + 1) / (size_t)nth;
    size_t cols = qf_round_up(j->n, be->k->nt);
    for (size_t r = lo; r < hi; r++) be->k->glu(be->ex_g + r * be->ld, be->ex_u + r * be->ld, be->scratch[ith], cols);
}

static void scatter_worker(void *arg, int ith, int nth) {
    const expert_job *j = arg;
    qf_be *be = j->be;
    size_t ld = be->ld, lo = j->rows * (size_t)ith / (size_t)nth, hi = j->rows * (size_t)(ith + 1) / (size_t)nth;
    for (size_t f = lo; f < hi; f++)
        for (uint32_t i = 0; i < j->n; i++) {
            uint32_t p = j->pairs[i];
            j->m->y[f * ld + p / j->k] += be->route_w[p] * be->ex_out[f * ld + i];
        }
}

/* One expert over its n tokens: gather, gate/up, SwiGLU, down, weighted add into y. */
static void run_expert(qf_be *be, const qf_be_moe *m, uint32_t e, const uint32_t *pairs, uint32_t n) {
    size_t E = m->gate[e].row_len, F = m->gate[e].n_rows, ld = be->ld;
    expert_job j = {.be = be, .m = m, .pairs = pairs, .n = n, .k = m->hp->n_expert_used, .rows = E};
    qf_pool_run(be->pool, gather_worker, &j);
    qf_be_mm gu[2] = {{.w = &m->gate[e], .y = be->ex_g, .ldy = ld}, {.w = &m->up[e], .y = be->ex_u, .ldy = ld}};
    qf_cpu_matmul(be, be->ex_in, ld, n, NULL, gu, 2);
    j.rows = F;
    qf_pool_run(be->pool, glu_worker, &j);
    qf_be_mm d = {.w = &m->down[e], .y = be->ex_out, .ldy = ld};
    qf_cpu_matmul(be, be->ex_g, ld, n, NULL, &d, 1);
    j.rows = m->down[e].n_rows;
    qf_pool_run(be->pool, scatter_worker, &j);
}

void qf_cpu_moe(qf_be *be, const qf_be_moe *m) {
    const qf_hparams *hp = m->hp;
    uint32_t k = hp->n_expert_used, *start = be->ex_start;
    route_job rj = {.be = be, .m = m};
    qf_pool_run(be->pool, route_worker, &rj);
    const qf_rt_observer *o = be->obs;
    for (uint32_t s = 0; o && o->route && s < be->pass.n_seq; s++)
        o->route(o->user, m->layer, be->route_e + s * be->pass.stride * k, k, be->pass.len);
    group_by_expert(be, hp->n_expert, k);
    for (size_t f = 0; f < m->gate[0].row_len; f++) memset(m->y + f * be->ld, 0, be->pass.cols * sizeof(float));
    for (uint32_t e = 0; e < hp->n_expert; e++)
        if (start[e + 1] > start[e]) run_expert(be, m, e, be->by_expert + start[e], start[e + 1] - start[e]);
}
