/*
 * be_cuda.c — the CUDA backend (backend.h) on device 0: buffers in device memory, the model's weights
 * uploaded on first use and kept, every operation one or a few kernels (cu_kernels.h) on one stream.
 *
 * Weights. A matrix of a type the kernels decode goes up as stored (rows padded to 16 bytes); any other
 * (the i-quants, a Hugging Face tensor, a row map) is dequantized on the host by the runtime's own
 * readers and goes up as F32: the same values either way. The model's vectors (norms, biases) go up
 * once. When device memory runs out, the weights of every other layer are dropped and the upload is
 * tried again, so a model larger than the GPU runs, layer by layer (slowly: uploads are not overlapped
 * with compute).
 *
 * Synchronisation. Operations only queue work. The host waits where it needs device data: routing
 * (each MoE layer's choices come back to group tokens by expert), observers (their inputs are copied
 * back), download, and take_nonfinite, which every pass ends with: when it returns, every output of the
 * pass, the logits in host memory included, is complete.
 *
 * Failures (device memory, a launch) are recorded once and returned by take_error; operations after one
 * do nothing until it is taken.
 */
#include "runtime/backend.h"
#include "runtime/cuda/cu_kernels.h"

#include <math.h>

/* ---- state -------------------------------------------------------------------------------------- */

/* A weight matrix or a model vector on the device, found by what identifies it on the host. */
typedef struct dev_entry {
    bool used;
    const void *a;           /* GGUF: the stored bytes; HF: the source; vector: the host floats */
    uint64_t b;              /* GGUF: type id; HF: tensor index; vector: length */
    uint64_t n_rows, row_len;
    uint32_t group, stride, offset;
    bool vector;
    int layer;
    qf_cu_mat mat;           /* vector: data = the floats */
    void *dev;
    uint64_t bytes;
} dev_entry;

/* A non-finite check: its outputs' names (by sub & 3) and layers. */
typedef struct check_rec {
    const char *what[3];
    int layer[3];
} check_rec;

/* Host memory from alloc_host and its device mirror, which products write before the copy back. */
typedef struct host_block {
    float *h, *d;
    uint64_t n;
} host_block;

struct qf_be {
    const qf_rt_model *m;
    qf_pool *pool;
    cudaStream_t st;
    size_t ld, kv_len;
    uint32_t n_ctx, kv_layers, dk, dv, rope_half;
    qf_be_pass pass;
    qf_cu_pass cp;                   /* the same for the kernels */
    /* buffers handed out, and host blocks */
    void **bufs;
    size_t n_bufs, cap_bufs;
    host_block *hosts;
    size_t n_hosts;
    uint64_t bytes;
    /* weights and vectors: open addressing on dev_entry keys */
    dev_entry *tab;
    size_t tab_cap, tab_n;
    /* caches and per-pass tables */
    float *kc, *vc;                  /* as the CPU lays them out (cpu_state.h) */
    float *rope_cos, *rope_sin;      /* [rope_half][ld] */
    float *rope_h;                   /* host staging for them */
    int32_t *tok_d, *tok_h;          /* the pass's tokens */
    float *xt;                       /* GEMV input, QF_CU_GEMV_COLS x round_up(kmax, 4) */
    size_t kmax;
    float *att_sc, *att_inv;         /* attention scratch: scores of some tasks, 1 / sums of every task */
    uint64_t att_sc_n;
    /* mixture of experts: per pass column the routes, per gathered column its pair and expert */
    uint16_t *re_d, *re_h;           /* [ld][k] experts */
    float *rw_d;                     /* [ld][k] weights */
    float *route_scr;
    uint32_t *pair_d, *pair_h;       /* [P] (column * k + slot) grouped by expert in column order */
    uint32_t *slot_d, *slot_h;       /* [ld][k] the gathered column of a column's slots, experts ascending */
    uint16_t *colx_d, *colx_h;       /* [P] expert of a gathered column */
    qf_cu_task *task_d, *task_h;
    qf_cu_mat *emat_d, *emat_h;      /* [3][n_expert] gate, up, down descriptors */
    uint32_t *start, *fill;          /* [n_expert + 1] each */
    float *ex_in, *ex_g, *ex_u, *ex_out; /* [width][ex_ld] */
    size_t ex_ld;
    /* checks */
    unsigned long long *flag_d;
    check_rec *checks;
    uint32_t n_checks, cap_checks;
    /* observers */
    const qf_rt_observer *obs;
    uint64_t n_calls;
    float *obs_h;                    /* pinned */
    uint64_t obs_n;
    /* the first failure */
    qf_status err_st;
    char err_msg[512];
};

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* Record the first failure; true when e is success. */
static bool ok(qf_be *be, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return true;
    if (!be->err_st) {
        be->err_st = e == cudaErrorMemoryAllocation ? QF_E_NOMEM : QF_E_IO;
        snprintf(be->err_msg, sizeof be->err_msg, "%s: %s", what, cudaGetErrorString(e));
    }
    return false;
}
/* After a launch: a bad configuration shows at once, a fault at the next synchronisation. */
static bool launched(qf_be *be, const char *what) { return ok(be, cudaGetLastError(), what); }

static void fail(qf_be *be, qf_status st, const char *msg) {
    if (be->err_st) return;
    be->err_st = st;
    snprintf(be->err_msg, sizeof be->err_msg, "%s", msg);
}

static qf_cu_pass cu_pass(const qf_be_pass *p) {
    return (qf_cu_pass){.n_seq = p->n_seq, .len = p->len, .pos0 = p->pos0, .stride = (uint32_t)p->stride,
                        .cols = (uint32_t)p->cols};
}

/* ---- device memory ------------------------------------------------------------------------------ */

static void *dev_alloc(qf_be *be, uint64_t bytes, const char *what) {
    void *p = NULL;
    if (!ok(be, cudaMalloc(&p, bytes ? bytes : 1), what)) return NULL;
    if (!ok(be, cudaMemset(p, 0, bytes), what)) { cudaFree(p); return NULL; }
    return p;
}

static bool track(qf_be *be, void *p) {
    if (be->n_bufs == be->cap_bufs) {
        size_t cap = be->cap_bufs * 2 + 32;
        void **b = realloc(be->bufs, cap * sizeof *b);
        if (!b) return false;
        be->bufs = b;
        be->cap_bufs = cap;
    }
    be->bufs[be->n_bufs++] = p;
    return true;
}

/* A zeroed device buffer of n elements of `size` bytes that lives as long as the backend. */
static void *buffer(qf_be *be, uint64_t n, uint64_t size, const char *what) {
    uint64_t bytes;
    if (!qf_mul_ok(n, size, &bytes)) { fail(be, QF_E_NOMEM, "buffer size overflows"); return NULL; }
    void *p = dev_alloc(be, bytes, what);
    if (p && !track(be, p)) { cudaFree(p); fail(be, QF_E_NOMEM, "out of host memory"); return NULL; }
    if (p) be->bytes += bytes;
    return p;
}

/* Pinned host memory of n bytes (transfers from and to it run asynchronously), tracked like buffers. */
static void *pinned(qf_be *be, uint64_t bytes, const char *what) {
    void *p = NULL;
    if (!ok(be, cudaMallocHost(&p, bytes ? bytes : 1), what)) return NULL;
    memset(p, 0, bytes);
    if (!track(be, p)) { cudaFreeHost(p); fail(be, QF_E_NOMEM, "out of host memory"); return NULL; }
    /* host pointers are told apart from device ones when freeing */
    return p;
}

static float *be_alloc(qf_be *be, uint64_t n) {
    if (be->err_st) return NULL;
    return buffer(be, n, sizeof(float), "an activation buffer");
}

static float *be_alloc_host(qf_be *be, uint64_t n) {
    if (be->err_st) return NULL;
    host_block *h = realloc(be->hosts, (be->n_hosts + 1) * sizeof *h);
    if (!h) return NULL;
    be->hosts = h;
    float *hp = pinned(be, n * sizeof(float), "host memory for the logits");
    float *dp = hp ? buffer(be, n, sizeof(float), "the logits' device copy") : NULL;
    if (!dp) return NULL;
    be->hosts[be->n_hosts++] = (host_block){.h = hp, .d = dp, .n = n};
    return hp;
}

/* The device mirror of host pointer y from alloc_host, or NULL. */
static float *mirror_of(const qf_be *be, float *y) {
    for (size_t i = 0; i < be->n_hosts; i++)
        if (y >= be->hosts[i].h && y < be->hosts[i].h + be->hosts[i].n) return be->hosts[i].d + (y - be->hosts[i].h);
    return NULL;
}

static void upload(qf_be *be, float *dst, const float *src, uint64_t n) {
    if (be->err_st) return;
    if (ok(be, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, be->st), "upload"))
        ok(be, cudaStreamSynchronize(be->st), "upload");
}

static void download(qf_be *be, float *dst, const float *src, uint64_t n) {
    if (be->err_st) return;
    if (ok(be, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, be->st), "download"))
        ok(be, cudaStreamSynchronize(be->st), "download");
}

/* ---- weights on the device ------------------------------------------------------------------------ */

/* The kernels' type for a stored type, or false: decoded on the host to F32. */
static bool cu_type_of(uint32_t id, uint32_t *t) {
    static const struct { uint32_t id, t; } map[] = {
        {QF_T_F32, QF_CU_F32},       {QF_T_F16, QF_CU_F16},           {QF_T_BF16, QF_CU_BF16},
        {QF_T_Q4_0, QF_CU_Q4_0},     {QF_T_Q4_1, QF_CU_Q4_1},         {QF_T_Q5_0, QF_CU_Q5_0},
        {QF_T_Q5_1, QF_CU_Q5_1},     {QF_T_Q8_0, QF_CU_Q8_0},         {QF_T_Q2_K, QF_CU_Q2_K},
        {QF_T_Q3_K, QF_CU_Q3_K},     {QF_T_Q4_K, QF_CU_Q4_K},         {QF_T_Q5_K, QF_CU_Q5_K},
        {QF_T_Q6_K, QF_CU_Q6_K},     {QF_T_MXFP4, QF_CU_MXFP4},       {QF_T_E4M3_B32, QF_CU_E4M3_B32},
        {QF_T_E5M2_B32, QF_CU_E5M2_B32}, {QF_T_E4M3_ROW, QF_CU_E4M3_ROW}, {QF_T_E4M3_B128, QF_CU_E4M3_B128},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(map); i++)
        if (map[i].id == id) {
            *t = map[i].t;
            return true;
        }
    return false;
}

static dev_entry key_of(const qf_rt_weight *w) {
    return (dev_entry){.a = w->tt ? (const void *)w->data : (const void *)w->src, .b = w->tt ? w->tt->id : w->src_idx,
                       .n_rows = w->n_rows, .row_len = w->row_len, .group = w->group, .stride = w->stride,
                       .offset = w->offset, .layer = w->layer};
}

static bool same_key(const dev_entry *x, const dev_entry *y) {
    return x->a == y->a && x->b == y->b && x->n_rows == y->n_rows && x->row_len == y->row_len && x->group == y->group &&
           x->stride == y->stride && x->offset == y->offset && x->vector == y->vector;
}

static size_t hash_of(const dev_entry *k) {
    uint64_t h = (uint64_t)(uintptr_t)k->a * 0x9E3779B97F4A7C15ull ^ (k->b + k->n_rows * 31 + k->offset) * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ h >> 29);
}

static dev_entry *find(qf_be *be, const dev_entry *k) {
    if (!be->tab_cap) return NULL;
    for (size_t i = hash_of(k) & (be->tab_cap - 1);; i = (i + 1) & (be->tab_cap - 1)) {
        if (!be->tab[i].used) return NULL;
        if (same_key(&be->tab[i], k)) return &be->tab[i];
    }
}

/* Insert e (not present); the table stays at most half full. */
static bool insert(qf_be *be, const dev_entry *e) {
    if (2 * (be->tab_n + 1) > be->tab_cap) {
        size_t cap = be->tab_cap ? 2 * be->tab_cap : 1024;
        dev_entry *old = be->tab, *t = calloc(cap, sizeof *t);
        if (!t) return false;
        size_t n_old = be->tab_cap;
        be->tab = t;
        be->tab_cap = cap;
        be->tab_n = 0;
        for (size_t i = 0; i < n_old; i++)
            if (old[i].used) insert(be, &old[i]);
        free(old);
    }
    size_t i = hash_of(e) & (be->tab_cap - 1);
    while (be->tab[i].used) i = (i + 1) & (be->tab_cap - 1);
    be->tab[i] = *e;
    be->tab[i].used = true;
    be->tab_n++;
    return true;
}

/* Drop every weight matrix of a layer other than `keep` (device memory ran out); vectors stay. */
static void evict_others(qf_be *be, int keep) {
    size_t cap = be->tab_cap;
    dev_entry *old = be->tab;
    be->tab = calloc(cap, sizeof *be->tab);
    if (!be->tab) { be->tab = old; return; }
    be->tab_n = 0;
    cudaStreamSynchronize(be->st); /* queued kernels may still read them */
    for (size_t i = 0; i < cap; i++) {
        if (!old[i].used) continue;
        if (!old[i].vector && old[i].layer != keep) cudaFree(old[i].dev);
        else insert(be, &old[i]);
    }
    free(old);
}

static void *weight_alloc(qf_be *be, uint64_t bytes, int layer) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes) == cudaSuccess) return p;
    cudaGetLastError(); /* clear it: the retry decides */
    evict_others(be, layer);
    return ok(be, cudaMalloc(&p, bytes), "device memory for a weight (the other layers' weights released)") ? p : NULL;
}

typedef struct decode_job {
    const qf_rt_weight *w;
    uint64_t r0, n;
    float *dst;
} decode_job;

static void decode_worker(void *arg, int ith, int nth) {
    const decode_job *j = arg;
    uint64_t lo = j->n * (uint64_t)ith / (uint64_t)nth, hi = j->n * (uint64_t)(ith + 1) / (uint64_t)nth;
    if (hi > lo) qf_rt_weight_rows(j->w, j->r0 + lo, hi - lo, j->dst + lo * j->w->row_len);
}

/* Rows of w as F32 through the host (the pool decodes them), a chunk at a time. */
static bool upload_decoded(qf_be *be, const qf_rt_weight *w, uint8_t *dev, uint64_t pitch) {
    uint64_t row = w->row_len * sizeof(float), per = QF_MAX(1, (64ull << 20) / row);
    float *tmp = qf_malloc_n(QF_MIN(per, w->n_rows), row);
    if (!tmp) { fail(be, QF_E_NOMEM, "out of host memory decoding a weight"); return false; }
    bool good = true;
    for (uint64_t r0 = 0; good && r0 < w->n_rows; r0 += per) {
        decode_job j = {.w = w, .r0 = r0, .n = QF_MIN(per, w->n_rows - r0), .dst = tmp};
        qf_pool_run(be->pool, decode_worker, &j);
        good = ok(be, cudaMemcpy2D(dev + r0 * pitch, pitch, tmp, row, row, j.n, cudaMemcpyHostToDevice), "weight upload");
    }
    free(tmp);
    return good;
}

static void weight_name(const qf_rt_weight *w, char *buf, size_t n) {
    qf_arch_tensor_name(w->role, w->layer, buf, n);
    if (w->expert >= 0) snprintf(buf + strlen(buf), n - strlen(buf), " expert %d", w->expert);
}

/* w on the device (uploaded now if it is not there). */
static bool dev_mat(qf_be *be, const qf_rt_weight *w, qf_cu_mat *out) {
    dev_entry k = key_of(w);
    const dev_entry *e = find(be, &k);
    if (e) {
        *out = e->mat;
        return true;
    }
    if (be->err_st) return false;
    uint32_t type = QF_CU_F32;
    bool raw = w->tt && !w->group && cu_type_of(w->tt->id, &type);
    uint64_t row = raw ? w->row_bytes : w->row_len * sizeof(float), pitch = round_up(row, 16), bytes;
    if (!qf_mul_ok(pitch, w->n_rows, &bytes)) { fail(be, QF_E_NOMEM, "weight size overflows"); return false; }
    uint8_t *dev = weight_alloc(be, bytes, w->layer);
    bool good = dev && (raw ? ok(be, cudaMemcpy2D(dev, pitch, w->data, row, row, w->n_rows, cudaMemcpyHostToDevice),
                                 "weight upload")
                            : upload_decoded(be, w, dev, pitch));
    k.dev = dev;
    k.bytes = bytes;
    k.mat = (qf_cu_mat){.data = dev, .pitch = pitch, .type = type};
    if (good && !insert(be, &k)) { fail(be, QF_E_NOMEM, "out of host memory"); good = false; }
    if (!good) { /* the failure, named after the weight */
        if (dev) cudaFree(dev);
        char name[128], msg[sizeof be->err_msg];
        weight_name(w, name, sizeof name);
        snprintf(msg, sizeof msg, "%.100s (%llu x %llu): %.300s", name, (unsigned long long)w->n_rows,
                 (unsigned long long)w->row_len, be->err_msg);
        memcpy(be->err_msg, msg, sizeof msg);
        return false;
    }
    *out = k.mat;
    return true;
}

/* A model vector (norm weights, a bias) on the device; NULL for NULL. */
static const float *dev_vec(qf_be *be, const float *h, uint64_t n) {
    if (!h) return NULL;
    dev_entry k = {.a = h, .b = n, .vector = true, .layer = -1};
    const dev_entry *e = find(be, &k);
    if (e) return (const float *)e->mat.data;
    if (be->err_st) return NULL;
    float *d = NULL;
    if (!ok(be, cudaMalloc((void **)&d, n * sizeof(float)), "device memory for a model vector")) return NULL;
    if (!ok(be, cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice), "model vector upload")) { cudaFree(d); return NULL; }
    k.dev = d;
    k.bytes = n * sizeof(float);
    k.mat.data = (const uint8_t *)d;
    if (!insert(be, &k)) { cudaFree(d); fail(be, QF_E_NOMEM, "out of host memory"); return NULL; }
    return d;
}

/* ---- non-finite checks --------------------------------------------------------------------------------- */

/* A new check of up to 3 outputs; its key, or UINT32_MAX (no memory: the failure is recorded). */
static uint32_t new_check(qf_be *be, const char *const *what, const int *layer, int n) {
    if (be->n_checks == be->cap_checks) {
        uint32_t cap = be->cap_checks * 2 + 64;
        check_rec *c = realloc(be->checks, cap * sizeof *c);
        if (!c) { fail(be, QF_E_NOMEM, "out of host memory"); return UINT32_MAX; }
        be->checks = c;
        be->cap_checks = cap;
    }
    check_rec *c = &be->checks[be->n_checks];
    for (int i = 0; i < 3; i++) {
        c->what[i] = what[i < n ? i : 0];
        c->layer[i] = layer[i < n ? i : 0];
    }
    return be->n_checks++;
}

/* The CPU's rule (qf_cpu_note_nonfinite): padding columns are skipped when the output spans the pass;
 * gathered expert columns (col_sub: their experts) are all tokens. */
static void check(qf_be *be, const float *y, size_t rows, size_t ldy, size_t cols, uint32_t key, uint32_t sub,
                  const uint16_t *col_sub) {
    if (key == UINT32_MAX) return;
    bool pass_shaped = !col_sub && be->pass.stride && cols == be->pass.cols;
    qf_cu_check(be->st, y, rows, ldy, cols, pass_shaped ? &be->cp : NULL, key, sub, col_sub, be->flag_d);
}

static void check_one(qf_be *be, const float *y, size_t rows, size_t cols, const char *what, int layer) {
    check(be, y, rows, be->ld, cols, new_check(be, &what, &layer, 1), 0, NULL);
}

static void take_nonfinite(qf_be *be, char *what, size_t n) {
    unsigned long long flag = ~0ull;
    what[0] = '\0';
    if (!ok(be, cudaMemcpyAsync(&flag, be->flag_d, sizeof flag, cudaMemcpyDeviceToHost, be->st), "reading the checks") ||
        !ok(be, cudaStreamSynchronize(be->st), "the pass"))
        return;
    if (flag != ~0ull && (flag >> 32) < be->n_checks) {
        const check_rec *c = &be->checks[flag >> 32];
        uint32_t i = (uint32_t)(flag & 3);
        if (c->layer[i] >= 0) snprintf(what, n, "layer %d %s", c->layer[i], c->what[i]);
        else snprintf(what, n, "%s", c->what[i]);
    }
    be->n_checks = 0;
    ok(be, cudaMemsetAsync(be->flag_d, 0xFF, sizeof *be->flag_d, be->st), "resetting the checks");
}

static qf_status take_error(qf_be *be, qf_error *err) {
    qf_status st = be->err_st;
    if (st) { /* the failed pass's checks go with it */
        qf_fail(err, st, "CUDA backend: %s", be->err_msg);
        be->err_st = QF_OK;
        be->err_msg[0] = '\0';
        cudaStreamSynchronize(be->st);
        cudaGetLastError();
        be->n_checks = 0;
        if (be->flag_d) cudaMemset(be->flag_d, 0xFF, sizeof *be->flag_d);
    }
    return st;
}

/* ---- observers ------------------------------------------------------------------------------------------- */

/* Host copy of rows x cols of x (leading dimension ld), into the observers' pinned buffer. */
static const float *to_host(qf_be *be, const float *x, size_t rows, size_t ld, size_t cols) {
    uint64_t n = (uint64_t)rows * ld;
    if (n > be->obs_n) {
        if (be->obs_h) cudaFreeHost(be->obs_h);
        be->obs_h = NULL;
        be->obs_n = 0;
        if (!ok(be, cudaMallocHost((void **)&be->obs_h, n * sizeof(float)), "host memory for an observer")) return NULL;
        be->obs_n = n;
    }
    if (!ok(be, cudaMemcpy2DAsync(be->obs_h, ld * sizeof(float), x, ld * sizeof(float), cols * sizeof(float), rows,
                                  cudaMemcpyDeviceToHost, be->st), "copying an observer's input") ||
        !ok(be, cudaStreamSynchronize(be->st), "copying an observer's input"))
        return NULL;
    return be->obs_h;
}

static void set_observer(qf_be *be, const qf_rt_observer *obs) { be->obs = obs; }

/* ---- the pass ------------------------------------------------------------------------------------------- */

static void begin_pass(qf_be *be, const qf_be_pass *pass, const double *freq, uint32_t n_rot, float mscale) {
    be->pass = *pass;
    be->cp = cu_pass(pass);
    if (be->err_st || !be->rope_half) return;
    size_t ld = be->ld, half = be->rope_half;
    cudaStreamSynchronize(be->st); /* the staging buffer may still feed the last pass's copy */
    for (int sn = 0; sn < 2; sn++) {
        for (uint32_t i = 0; i < n_rot / 2; i++)
            for (size_t t = 0; t < pass->cols; t++) {
                double th = (double)(pass->pos0 + t % pass->stride) * freq[i];
                be->rope_h[(sn * half + i) * ld + t] = (float)(sn ? sin(th) : cos(th)) * mscale;
            }
    }
    ok(be, cudaMemcpyAsync(be->rope_cos, be->rope_h, 2 * half * ld * sizeof(float), cudaMemcpyHostToDevice, be->st),
       "rotary tables");
}

static void embed(qf_be *be, const qf_rt_weight *w, const int32_t *tokens, float *x) {
    qf_cu_mat m;
    size_t n = (size_t)be->pass.n_seq * be->pass.len;
    if (be->err_st || !dev_mat(be, w, &m) || !ok(be, cudaStreamSynchronize(be->st), "embedding")) return;
    memcpy(be->tok_h, tokens, n * sizeof *tokens);
    if (!ok(be, cudaMemcpyAsync(be->tok_d, be->tok_h, n * sizeof *tokens, cudaMemcpyHostToDevice, be->st), "tokens")) return;
    qf_cu_embed(be->st, &m, (uint32_t)w->row_len, be->tok_d, be->cp, x, be->ld);
    if (launched(be, "embedding")) check_one(be, x, w->row_len, be->pass.cols, "token_embd", -1);
}

/* The CPU reports a product's input per sequence of the pass (never padding), or whole for gathered
 * expert inputs; the call counter advances either way. */
static void observe(qf_be *be, const qf_be_mm *mm, int n_mm, const float *x, const qf_be_pass *in) {
    const qf_rt_observer *o = be->obs;
    if (o && o->matmul) {
        const float *h = to_host(be, x, mm[0].w->row_len, be->ld, in->cols);
        for (int i = 0; h && i < n_mm; i++)
            for (uint32_t s = 0; s < in->n_seq; s++) o->matmul(o->user, mm[i].w, be->n_calls, h + s * in->stride, be->ld, in->len);
    }
    be->n_calls++;
}

static void matmul(qf_be *be, const float *x, const qf_be_pass *in, const qf_be_mm *mm, int n_mm) {
    if (be->err_st) return;
    observe(be, mm, n_mm, x, in);
    const char *what[3] = {NULL, NULL, NULL};
    int layer[3] = {0, 0, 0};
    for (int i = 0; i < n_mm; i++) {
        what[i] = qf_role_name(mm[i].w->role);
        layer[i] = mm[i].w->layer;
    }
    uint32_t key = new_check(be, what, layer, n_mm);
    for (int i = 0; i < n_mm; i++) {
        qf_cu_mat w;
        if (mm[i].w->n_rows > QF_CU_MAX_ROWS) { fail(be, QF_E_UNSUPPORTED, "a weight of more than 4194240 rows"); return; }
        if (!dev_mat(be, mm[i].w, &w)) return;
        const float *bias = dev_vec(be, mm[i].bias, mm[i].w->n_rows);
        float *y = mm[i].host ? mirror_of(be, mm[i].y) : mm[i].y;
        if (!y) { fail(be, QF_E_INTERNAL, "a host product into memory not from alloc_host"); return; }
        qf_cu_matmul(be->st, &w, mm[i].w->n_rows, (uint32_t)mm[i].w->row_len, x, be->ld, in->cols, y, mm[i].ldy, bias, be->xt);
        if (!launched(be, "matmul")) return;
        check(be, y, mm[i].w->n_rows, mm[i].ldy, in->cols, key, (uint32_t)i, NULL);
        if (mm[i].host)
            ok(be, cudaMemcpy2DAsync(mm[i].y, mm[i].ldy * sizeof(float), y, mm[i].ldy * sizeof(float), in->cols * sizeof(float),
                                     mm[i].w->n_rows, cudaMemcpyDeviceToHost, be->st), "copying the logits back");
    }
}

static void rmsnorm(qf_be *be, const float *x, float *y, size_t rows, size_t group, const float *w) {
    const float *wd = be->err_st ? NULL : dev_vec(be, w, group);
    if (!wd) return;
    qf_cu_rmsnorm(be->st, x, y, rows, group, wd, be->m->hp.rms_eps, be->ld, be->pass.cols);
    launched(be, "rmsnorm");
}

static void rope(qf_be *be, float *x, uint32_t heads, uint32_t head_rows, uint32_t offset, bool neox) {
    if (be->err_st) return;
    qf_cu_rope(be->st, x, heads, head_rows, offset, be->rope_half, neox, be->rope_cos, be->rope_sin, be->ld, be->pass.cols);
    launched(be, "rope");
}

static void glu(qf_be *be, float *g, const float *u, size_t rows) {
    if (be->err_st) return;
    qf_cu_glu(be->st, g, u, rows, be->ld, be->pass.cols);
    launched(be, "glu");
}

static void add_into(qf_be *be, float *x, const float *o, size_t rows) {
    if (be->err_st) return;
    qf_cu_add(be->st, x, o, rows, be->ld, be->pass.cols);
    launched(be, "add");
}

static void copy_rows(qf_be *be, float *dst, const float *src, size_t rows) {
    if (be->err_st || !rows) return;
    size_t pitch = be->ld * sizeof(float);
    ok(be, cudaMemcpy2DAsync(dst, pitch, src, pitch, be->pass.cols * sizeof(float), rows, cudaMemcpyDeviceToDevice, be->st),
       "copy_rows");
}

static void sigmoid_scale(qf_be *be, float *y, const float *g, size_t rows) {
    if (be->err_st) return;
    qf_cu_sigmoid_scale(be->st, y, g, rows, be->ld, be->pass.cols);
    launched(be, "sigmoid_scale");
}

static void gather_outputs(qf_be *be, float *dst, const float *src, size_t rows, uint32_t out_from) {
    const qf_be_pass *sh = &be->pass;
    size_t per = sh->len - out_from, pitch = be->ld * sizeof(float);
    for (uint32_t s = 0; !be->err_st && per && s < sh->n_seq; s++)
        ok(be, cudaMemcpy2DAsync(dst + s * per, pitch, src + s * sh->stride + out_from, pitch, per * sizeof(float), rows,
                                 cudaMemcpyDeviceToDevice, be->st), "gather_outputs");
}

/* ---- attention ---------------------------------------------------------------------------------------- */

static void attention(qf_be *be, const qf_be_attn *a) {
    if (be->err_st) return;
    size_t layer = be->kv_layers == 1 ? 0 : a->layer;
    qf_cu_attn ca = {.n_head = a->n_head, .n_head_kv = a->n_head_kv, .dk = be->dk, .dv = be->dv, .dv2 = a->dv2,
                     .scale = a->scale, .q = a->q, .k = a->k, .v = a->v, .kv_len = be->kv_len, .n_ctx = be->n_ctx,
                     .out = a->out, .v2 = a->v2, .out2 = a->out2, .ld = be->ld};
    ca.kc = be->kc + layer * a->n_head_kv * be->kv_len * be->dk;
    ca.vc = be->vc + layer * a->n_head_kv * be->kv_len * be->dv;
    qf_cu_attn_store(be->st, &ca, be->cp);
    /* tasks of 64 queries, as many at once as the scratch holds at this pass's key count */
    uint32_t tiles = (be->pass.len + 63) / 64, tasks = be->pass.n_seq * a->n_head * tiles;
    uint64_t keys = (uint64_t)be->pass.pos0 + be->pass.len, per = QF_MAX(1, be->att_sc_n / (keys * 64));
    per = QF_MIN(QF_MIN(per, tasks), 65535u); /* tasks are the grid's second dimension */
    for (uint32_t t0 = 0; t0 < tasks && launched(be, "attention"); t0 += (uint32_t)QF_MIN(per, (uint64_t)tasks - t0))
        qf_cu_attention(be->st, &ca, be->cp, t0, (uint32_t)QF_MIN((uint64_t)tasks, t0 + per), be->att_sc, be->att_inv);
    if (launched(be, "attention")) check_one(be, a->out, (size_t)a->n_head * a->dv, be->pass.cols, "attention", (int)a->layer);
}

/* ---- mixture of experts --------------------------------------------------------------------------------- */

/* Pairs grouped by expert in column order (cpu_moe.c's group_by_expert: start[] as the CPU's), the
 * expert of every gathered column, each column's slots as gathered columns by ascending expert, and the
 * column tiles of each expert. Returns the number of tiles. */
static uint32_t group_by_expert(qf_be *be, uint32_t n_expert, uint32_t k) {
    uint32_t *start = be->start, *fill = be->fill, n_tasks = 0;
    const qf_be_pass *p = &be->pass;
    memset(start, 0, (n_expert + 1) * sizeof *start);
    for (size_t t = 0; t < p->cols; t++)
        if (t % p->stride < p->len)
            for (uint32_t i = 0; i < k; i++) start[be->re_h[t * k + i] + 1]++;
    for (uint32_t e = 0; e < n_expert; e++) start[e + 1] += start[e];
    memcpy(fill, start, n_expert * sizeof *fill);
    for (size_t t = 0; t < p->cols; t++) {
        if (t % p->stride >= p->len) continue;
        uint32_t *sl = be->slot_h + t * k;
        for (uint32_t i = 0; i < k; i++) {
            uint32_t e = be->re_h[t * k + i], j = fill[e]++;
            be->pair_h[j] = (uint32_t)(t * k + i);
            be->colx_h[j] = (uint16_t)e;
            sl[i] = j;
        }
        /* a token's experts are distinct: sort its k slots by expert (insertion sort, k is small) */
        for (uint32_t i = 1; i < k; i++)
            for (uint32_t j = i; j > 0 && be->colx_h[sl[j - 1]] > be->colx_h[sl[j]]; j--) {
                uint32_t tmp = sl[j];
                sl[j] = sl[j - 1];
                sl[j - 1] = tmp;
            }
    }
    for (uint32_t e = 0; e < n_expert; e++)
        for (uint32_t c = start[e]; c < start[e + 1]; c += 64)
            be->task_h[n_tasks++] = (qf_cu_task){.expert = e, .col0 = c, .n = QF_MIN(64u, start[e + 1] - c)};
    return n_tasks;
}

/* The descriptors of the used experts' matrices of one kind (the others are never read); false on
 * failure. All share one device type: a stacked tensor has one stored type, and the host decides per type. */
static bool expert_mats(qf_be *be, const qf_rt_weight *w, uint32_t n_expert, qf_cu_mat *out, uint32_t *type) {
    bool first = true;
    for (uint32_t e = 0; e < n_expert; e++) {
        out[e] = (qf_cu_mat){0};
        if (be->start[e + 1] == be->start[e]) continue;
        if (!dev_mat(be, &w[e], &out[e])) return false;
        if (!first && out[e].type != *type) { fail(be, QF_E_INTERNAL, "experts of one layer with different types"); return false; }
        *type = out[e].type;
        first = false;
    }
    return true;
}

/* The observer sees, expert after expert, gate/up's input (one call number) and down's (the next), as
 * the CPU reports them; the call counter advances the same without an observer. */
static void observe_experts(qf_be *be, const qf_be_moe *m, uint32_t n_expert) {
    const qf_rt_observer *o = be->obs;
    size_t E = m->gate[0].row_len, F = m->gate[0].n_rows, P = be->start[n_expert], pitch = be->ex_ld * sizeof(float);
    const float *in = NULL;
    float *down_in = NULL;
    if (o && o->matmul && P) {
        if (!(down_in = qf_malloc_n(F, pitch))) { fail(be, QF_E_NOMEM, "out of host memory for an observer"); return; }
        if (!(in = to_host(be, be->ex_in, E, be->ex_ld, P)) ||
            !ok(be, cudaMemcpy2D(down_in, pitch, be->ex_g, pitch, P * sizeof(float), F, cudaMemcpyDeviceToHost),
                "copying an observer's input")) {
            free(down_in);
            return;
        }
    }
    for (uint32_t e = 0; e < n_expert; e++) {
        uint32_t n = be->start[e + 1] - be->start[e];
        if (!n) continue;
        if (in) {
            o->matmul(o->user, &m->gate[e], be->n_calls, in + be->start[e], be->ex_ld, n);
            o->matmul(o->user, &m->up[e], be->n_calls, in + be->start[e], be->ex_ld, n);
            o->matmul(o->user, &m->down[e], be->n_calls + 1, down_in + be->start[e], be->ex_ld, n);
        }
        be->n_calls += 2;
    }
    free(down_in);
}

static void moe(qf_be *be, const qf_be_moe *m) {
    if (be->err_st) return;
    const qf_hparams *hp = m->hp;
    uint32_t n_expert = hp->n_expert, k = hp->n_expert_used;
    size_t E = m->gate[0].row_len, F = m->gate[0].n_rows, cols = be->pass.cols;
    qf_cu_route_rule r = {.n_expert = n_expert, .n_used = k, .n_group = hp->n_expert_group > 1 ? hp->n_expert_group : 1,
                          .n_group_used = hp->n_expert_group_used, .sigmoid = hp->gating == QF_GATING_SIGMOID,
                          .group_max = hp->group_score == QF_GROUP_MAX, .norm = hp->expert_weights_norm,
                          .scale = hp->expert_weights_scale};
    const float *bias = dev_vec(be, m->bias, n_expert);
    if (be->err_st) return;
    qf_cu_route(be->st, &r, m->logits, bias, be->cp, be->ld, be->re_d, be->rw_d, be->route_scr);
    if (!launched(be, "routing") ||
        !ok(be, cudaMemcpyAsync(be->re_h, be->re_d, cols * k * sizeof *be->re_h, cudaMemcpyDeviceToHost, be->st), "routes") ||
        !ok(be, cudaStreamSynchronize(be->st), "routing"))
        return;
    const qf_rt_observer *o = be->obs;
    for (uint32_t s = 0; o && o->route && s < be->pass.n_seq; s++)
        o->route(o->user, m->layer, be->re_h + s * be->pass.stride * k, k, be->pass.len);
    uint32_t n_tasks = group_by_expert(be, n_expert, k), P = be->start[n_expert], type[3] = {0, 0, 0};
    const qf_rt_weight *ws[3] = {m->gate, m->up, m->down};
    for (int i = 0; i < 3; i++)
        if (!expert_mats(be, ws[i], n_expert, be->emat_h + (size_t)i * n_expert, &type[i])) return;
    if (!ok(be, cudaMemcpyAsync(be->pair_d, be->pair_h, P * sizeof *be->pair_h, cudaMemcpyHostToDevice, be->st), "routes") ||
        !ok(be, cudaMemcpyAsync(be->slot_d, be->slot_h, cols * k * sizeof *be->slot_h, cudaMemcpyHostToDevice, be->st), "routes") ||
        !ok(be, cudaMemcpyAsync(be->colx_d, be->colx_h, P * sizeof *be->colx_h, cudaMemcpyHostToDevice, be->st), "routes") ||
        !ok(be, cudaMemcpyAsync(be->task_d, be->task_h, n_tasks * sizeof *be->task_h, cudaMemcpyHostToDevice, be->st), "routes") ||
        !ok(be, cudaMemcpyAsync(be->emat_d, be->emat_h, 3 * n_expert * sizeof *be->emat_h, cudaMemcpyHostToDevice, be->st),
            "routes"))
        return;
    size_t ldx = be->ex_ld;
    qf_cu_gather(be->st, m->x, be->ld, be->ex_in, ldx, E, be->pair_d, P, k);
    qf_cu_matmul_grouped(be->st, be->emat_d, type[0], F, (uint32_t)E, be->ex_in, ldx, be->task_d, n_tasks, be->ex_g, ldx);
    qf_cu_matmul_grouped(be->st, be->emat_d + n_expert, type[1], F, (uint32_t)E, be->ex_in, ldx, be->task_d, n_tasks,
                         be->ex_u, ldx);
    const char *what[3] = {qf_role_name(m->gate[0].role), qf_role_name(m->up[0].role), qf_role_name(m->down[0].role)};
    int layer[3] = {m->layer, m->layer, m->layer};
    uint32_t key = new_check(be, what, layer, 3);
    check(be, be->ex_g, F, ldx, P, key, 0, be->colx_d); /* queued before SwiGLU overwrites gate's output */
    check(be, be->ex_u, F, ldx, P, key, 1, be->colx_d);
    qf_cu_glu(be->st, be->ex_g, be->ex_u, F, ldx, P);
    qf_cu_matmul_grouped(be->st, be->emat_d + 2 * n_expert, type[2], m->down[0].n_rows, (uint32_t)F, be->ex_g, ldx,
                         be->task_d, n_tasks, be->ex_out, ldx);
    if (!launched(be, "experts")) return;
    check(be, be->ex_out, m->down[0].n_rows, ldx, P, key, 2, be->colx_d);
    observe_experts(be, m, n_expert);
    qf_cu_combine(be->st, be->ex_out, ldx, be->slot_d, be->pair_d, be->rw_d, k, m->y, be->ld, E, be->cp);
    launched(be, "combining the experts");
}

/* ---- lifetime --------------------------------------------------------------------------------------------- */

static uint64_t bytes(const qf_be *be) { return be->bytes; }

static void cuda_free(qf_be *be) {
    if (!be) return;
    if (be->st) cudaStreamSynchronize(be->st);
    for (size_t i = 0; i < be->n_bufs; i++) {
        struct cudaPointerAttributes at;
        if (cudaPointerGetAttributes(&at, be->bufs[i]) == cudaSuccess && at.type == cudaMemoryTypeHost) cudaFreeHost(be->bufs[i]);
        else cudaFree(be->bufs[i]);
    }
    for (size_t i = 0; i < be->tab_cap; i++)
        if (be->tab[i].used) cudaFree(be->tab[i].dev);
    if (be->obs_h) cudaFreeHost(be->obs_h);
    if (be->st) cudaStreamDestroy(be->st);
    cudaGetLastError();
    free(be->bufs);
    free(be->hosts);
    free(be->tab);
    free(be->checks);
    free(be->start);
    free(be->fill);
    free(be);
}

static const qf_be_ops cuda_ops = {
    .name = "cuda", .host = false, .alloc = be_alloc, .alloc_host = be_alloc_host, .upload = upload,
    .download = download, .begin_pass = begin_pass, .embed = embed, .matmul = matmul, .rmsnorm = rmsnorm,
    .rope = rope, .attention = attention, .glu = glu, .add = add_into, .copy_rows = copy_rows,
    .sigmoid_scale = sigmoid_scale, .moe = moe, .gather_outputs = gather_outputs, .take_nonfinite = take_nonfinite,
    .take_error = take_error, .set_observer = set_observer, .set_act_q8 = NULL, .bytes = bytes, .free = cuda_free,
};

/* The widest input any product reads. */
static size_t widest_input(const qf_rt_model *m) {
    size_t n = qf_rt_model_weights(m, NULL), kmax = m->hp.n_embd;
    const qf_rt_weight **w = qf_malloc_n(n ? n : 1, sizeof *w);
    if (w) {
        qf_rt_model_weights(m, w);
        for (size_t i = 0; i < n; i++) kmax = QF_MAX(kmax, (size_t)w[i]->row_len);
    }
    free(w);
    return kmax;
}

/* Attention scratch: one task at the longest key count at least, all tasks of a full pass at most, and
 * no more than 256 MiB between the two. */
#define ATT_SCRATCH_BYTES (256ull << 20)

static void alloc_state(qf_be *be) {
    const qf_hparams *hp = &be->m->hp;
    uint64_t cache = (uint64_t)be->kv_layers * hp->n_head_kv * be->kv_len;
    size_t ld = be->ld;
    be->kmax = widest_input(be->m);
    be->rope_half = hp->n_rot / 2;
    be->kc = buffer(be, cache, be->dk * sizeof(float), "the K cache");
    be->vc = buffer(be, cache, be->dv * sizeof(float), "the V cache");
    if (be->rope_half) {
        be->rope_cos = buffer(be, 2 * (uint64_t)be->rope_half * ld, sizeof(float), "rotary tables");
        be->rope_sin = be->rope_cos ? be->rope_cos + (size_t)be->rope_half * ld : NULL;
        be->rope_h = pinned(be, 2 * (uint64_t)be->rope_half * ld * sizeof(float), "rotary tables");
    }
    be->tok_d = buffer(be, ld, sizeof(int32_t), "tokens");
    be->tok_h = pinned(be, ld * sizeof(int32_t), "tokens");
    be->xt = buffer(be, (uint64_t)QF_CU_GEMV_COLS * round_up(be->kmax, 4), sizeof(float), "GEMV staging");
    /* a pass has at most ld / 64 + 1 tiles of queries per head (each sequence's within its stride) */
    uint64_t tasks = (ld / 64 + 1) * QF_MAX(hp->n_head, 1), one = (uint64_t)be->n_ctx * 64;
    be->att_sc_n = QF_MAX(one, QF_MIN(tasks * one, ATT_SCRATCH_BYTES / sizeof(float)));
    be->att_sc = buffer(be, be->att_sc_n, sizeof(float), "attention scratch");
    be->att_inv = buffer(be, tasks * 64, sizeof(float), "attention scratch");
    be->flag_d = buffer(be, 1, sizeof *be->flag_d, "checks");
    if (be->flag_d) ok(be, cudaMemset(be->flag_d, 0xFF, sizeof *be->flag_d), "checks");
    if (!hp->n_expert) return;
    uint64_t k = hp->n_expert_used, pairs = ld * k, E = hp->n_embd, F = QF_MAX(hp->n_ff_exp, 1);
    be->ex_ld = round_up(pairs, 64);
    be->re_d = buffer(be, pairs, sizeof *be->re_d, "routes");
    be->re_h = pinned(be, pairs * sizeof *be->re_h, "routes");
    be->rw_d = buffer(be, pairs, sizeof *be->rw_d, "routes");
    be->route_scr = buffer(be, ld * (2 * (uint64_t)hp->n_expert + 2 * QF_MAX(hp->n_expert_group, 1) + k), sizeof(float),
                           "routing scratch");
    be->pair_d = buffer(be, pairs, sizeof *be->pair_d, "routes");
    be->pair_h = pinned(be, pairs * sizeof *be->pair_h, "routes");
    be->slot_d = buffer(be, pairs, sizeof *be->slot_d, "routes");
    be->slot_h = pinned(be, pairs * sizeof *be->slot_h, "routes");
    be->colx_d = buffer(be, pairs, sizeof *be->colx_d, "routes");
    be->colx_h = pinned(be, pairs * sizeof *be->colx_h, "routes");
    be->task_d = buffer(be, pairs + hp->n_expert, sizeof *be->task_d, "expert tasks");
    be->task_h = pinned(be, (pairs + hp->n_expert) * sizeof *be->task_h, "expert tasks");
    be->emat_d = buffer(be, 3ull * hp->n_expert, sizeof *be->emat_d, "expert descriptors");
    be->emat_h = pinned(be, 3ull * hp->n_expert * sizeof *be->emat_h, "expert descriptors");
    be->start = qf_calloc_n(hp->n_expert + 1, sizeof *be->start);
    be->fill = qf_calloc_n(hp->n_expert + 1, sizeof *be->fill);
    if (!be->start || !be->fill) fail(be, QF_E_NOMEM, "out of host memory");
    be->ex_in = buffer(be, E, be->ex_ld * sizeof(float), "expert inputs");
    be->ex_g = buffer(be, F, be->ex_ld * sizeof(float), "expert activations");
    be->ex_u = buffer(be, F, be->ex_ld * sizeof(float), "expert activations");
    be->ex_out = buffer(be, E, be->ex_ld * sizeof(float), "expert outputs");
}

bool qf_be_cuda_usable(char *what, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        /* the runtime's own text for a missing driver ("driver version is insufficient") misleads */
        snprintf(what, n, "no CUDA device (%s)",
                 e == cudaErrorInsufficientDriver ? "no CUDA driver, or one older than this build's CUDA runtime"
                 : e != cudaSuccess               ? cudaGetErrorString(e)
                                                  : "the driver lists none");
        cudaGetLastError();
        return false;
    }
    struct cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
        snprintf(what, n, "CUDA device 0 cannot be queried (%s)", cudaGetErrorString(e));
        return false;
    }
    if (p.major < 8) {
        snprintf(what, n, "CUDA device 0 (%s) has compute capability %d.%d; this build runs on 8.0 and newer", p.name, p.major,
                 p.minor);
        return false;
    }
    snprintf(what, n, "0: %s (%.1f GiB, compute capability %d.%d)", p.name, (double)p.totalGlobalMem / (1 << 30), p.major,
             p.minor);
    return true;
}

qf_status qf_be_cuda_new(const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err) {
    *out = NULL;
    char what[256];
    if (!qf_be_cuda_usable(what, sizeof what)) return qf_fail(err, QF_E_UNSUPPORTED, "CUDA backend: %s", what);
    qf_be *be = calloc(1, sizeof *be);
    if (!be) return qf_fail(err, QF_E_NOMEM, "out of memory");
    be->m = o->m;
    be->pool = o->pool;
    be->ld = o->ld;
    be->kv_len = o->kv_len;
    be->n_ctx = o->n_ctx;
    be->kv_layers = o->one_layer_kv ? 1 : o->m->hp.n_layer;
    be->dk = qf_attn_dk(&o->m->hp);
    be->dv = qf_attn_dv(&o->m->hp);
    if (ok(be, cudaSetDevice(0), "selecting device 0") && ok(be, cudaStreamCreate(&be->st), "creating a stream")) alloc_state(be);
    if (be->err_st) {
        qf_status st = take_error(be, err);
        cuda_free(be);
        return st;
    }
    *out = be;
    *ops = &cuda_ops;
    return QF_OK;
}
