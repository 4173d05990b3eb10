/* rt_qkern_amx.c — AMX kernel of the runtime's 8-bit integer path (see rt_kern.h for the math and the
 * layouts; the scalar reference is in rt_kern_scalar.c and this returns the same bits).
 *
 * A call covers 16 weight rows (one A tile of signed levels, 16 rows x 32 bytes of one 32-block, or
 * 16 bytes of one 16-group for Q6_K, stride ldq) against one or more activation tiles of 64 tokens, 16
 * tokens at a time: the activation tile's layout ([nb][8][64][4]) is already TDPBSSD's B layout, so a B
 * tile is 8 (or 4) rows of 64 bytes at a stride of 256. Per 16 x 16 outputs and per scale group: TDPBSSD
 * into a zeroed C tile (the group's exact integer sums, rows = weight rows, columns = tokens), a tile
 * store, then the float epilogue of the reference in its order, with the 16 accumulators in zmm
 * registers across the whole K loop: fma((float)isum * wd, xd, acc), then for Q4_K fma(wm, xds, acc).
 * Signed levels (TDPBSSD) need no offset correction: sum(level * x) is the integer the reference forms
 * as sum((level + off) * x) - off * sum(x).
 *
 * Four C tiles and two A/B pairs rotate: the products of a pair of groups are issued a step before their
 * epilogue and stored a step after (storing right behind the product serialized everything). Measured on
 * the Xeon this was written on (TSC cycles per 16 x 16 item and group, K = 256, data in cache): about 60,
 * of which the tile work alone takes about 30 and the epilogue alone (3 vector operations per 16
 * outputs) about 30; the two mostly add up rather than overlap. The VNNI tile takes about 170 for the
 * same work.
 *
 * The instructions need AMX-TILE, AMX-INT8 and AVX-512, which the file-wide flags do not enable: each
 * function carries the target attribute, and the caller checks the CPU and the kernel's permission
 * (qf_rt_amx_usable, qf_rt_qkern_active). */
#include "runtime/rt_kern.h"

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define QT QF_RT_QT

/* ---- permission -------------------------------------------------------------------------------------- */

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static bool amx_ok;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

/* CPUID leaf 7 EDX: AMX-TILE bit 24, AMX-INT8 bit 25; the OS must enable the tile state in XCR0 (bits
 * 17, 18) and Linux hands it to a process only on request (arch_prctl). Any failure: no AMX. */
static void amx_probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return;
#ifdef SYS_arch_prctl
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0 || !(perm & (1ul << XFEATURE_XTILEDATA))) return;
    amx_ok = true;
#endif
}

bool qf_rt_amx_usable(void) {
    pthread_once(&amx_once, amx_probe);
    return amx_ok;
}

/* ---- tile configuration -------------------------------------------------------------------------------- */

typedef struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
    uint8_t reserved2[16];
} tilecfg;

/* Tiles 0-3: C (16 x 16 int32); 4, 5: A (16 rows x kb bytes); 6, 7: B (kb / 4 rows x 64 bytes). */
static void make_cfg(tilecfg *cfg, int kb) {
    memset(cfg, 0, sizeof *cfg);
    cfg->palette = 1;
    for (int t = 0; t < 4; t++) { cfg->colsb[t] = 64; cfg->rows[t] = 16; }
    for (int t = 4; t < 6; t++) { cfg->colsb[t] = (uint16_t)kb; cfg->rows[t] = 16; }
    for (int t = 6; t < 8; t++) { cfg->colsb[t] = 64; cfg->rows[t] = (uint8_t)(kb / 4); }
}

/* The configuration this thread's tiles hold (0: none yet): loaded again only when a call needs the
 * other group size. The tile state is the thread's own and survives context switches (XSAVE). */
static _Thread_local int cfg_kb;

AMX static void use_cfg(int kb) {
    if (cfg_kb == kb) return;
    tilecfg cfg;
    make_cfg(&cfg, kb);
    _tile_loadconfig(&cfg);
    cfg_kb = kb;
}

/* ---- the kernel ------------------------------------------------------------------------------------------ */

/* The call is a stream of 4 * ng items (ng = scale groups per row): item i is group g = i % ng of the
 * 16 tokens j0 = 16 * (i / ng). Items go by pairs; pair p's products run on C tiles 0, 1 (p even) or
 * 2, 3 (p odd) and are stored to c[p % 2]. Step p: issue the products of pair p + 2, run the float
 * epilogue of pair p (stored in step p - 1), store pair p + 1 (whose products were issued a whole step
 * earlier, so the store does not wait for the tile unit, and neither do the loads behind it). Storing
 * right after the product serialized the tile unit and the vector units (measured 2-4x slower). */
#define PRODUCT(C, A, B, pp)                                                                                  \
    do {                                                                                                      \
        _tile_zero(C);                                                                                        \
        _tile_loadd(A, wq + (pp).g * (size_t)sub, ldq);                                                       \
        _tile_loadd(B, xq + (pp).tq + ((pp).g * (size_t)sub / 4 * QT + (pp).jj) * 4, QT * 4);                 \
        _tile_dpbssd(C, A, B);                                                                                \
    } while (0)

/* Position of an item: group g (block b, group h in the block) of tokens jj .. jj + 15 of activation
 * tile t (whose levels start tq bytes and whose scales start td floats into the first tile's), output
 * column col = 64 t + jj. */
typedef struct pos {
    size_t g, b, jj, col, tq, td;
    int h;
} pos;

INLINE void advance(pos *p, size_t ng, int groups, size_t nb) {
    if (++p->h == groups) { p->h = 0; p->b++; }
    if (++p->g == ng) {
        p->g = 0;
        p->b = 0;
        p->col += 16;
        if ((p->jj += 16) == QT) { p->jj = 0; p->tq += 32 * nb * QT; p->td += nb * QT; }
    }
}

/* Epilogue of the item at p from the stored C tile ci: acc[r] = fma((float)ci[r] * wd[r][g], xd, acc[r]),
 * then the block's min term after its last group, then after the row's last group the 16 x 16 outputs
 * go to y. */
AMX INLINE void item(const qf_rt_wq *w, const qf_rt_xq *x, size_t ng, const pos *p, const int32_t *ci, float *y,
                     size_t ldy, int mr, const int groups, const int has_m, __m512 acc[16]) {
    size_t lds = w->lds;
    __m512 xd = _mm512_loadu_ps(x->d + p->td + p->b * QT + p->jj);
    const float *wd = w->d + p->g;
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(ci + 16 * r));
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(v, _mm512_set1_ps(wd[(size_t)r * lds])), xd, acc[r]);
    }
    if (has_m && p->h == groups - 1) {
        __m512 xds = _mm512_loadu_ps(x->ds + p->td + p->b * QT + p->jj);
        const float *wm = w->m + p->b;
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(wm[(size_t)r * lds]), xds, acc[r]);
    }
    if (p->g == ng - 1) {
        /* streamed: the caller asked for it and every row's 16 outputs are one aligned cache line */
        if (w->stream && !(((uintptr_t)y | ldy * sizeof(float)) & 63)) {
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                if (r < mr) _mm512_stream_ps(y + (size_t)r * ldy + p->col, acc[r]);
        } else {
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                if (r < mr) _mm512_storeu_ps(y + (size_t)r * ldy + p->col, acc[r]);
        }
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
    }
}

/* All 16 rows x 64 tokens of `tiles` consecutive activation tiles for groups of `sub` features (32: one
 * per block, tiles A 16 x 32 and B 8 x 64; 16: two per block, A 16 x 16 and B 4 x 64), with or without
 * a min term: one stream of items, so the pipeline does not drain between activation tiles. */
AMX INLINE void qtile_body(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy,
                           int mr, const int sub, const int has_m) {
    __attribute__((aligned(64))) int32_t c[2][2][256];
    const int groups = 32 / sub;
    const size_t ng = nb * (size_t)groups, n = 4 * ng * tiles, ldq = w->ldq; /* n: a multiple of 4 */
    const int8_t *xq = x->q;
    const uint8_t *wq = w->q;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
    pos pp = {0}, pe = {0}; /* the next item to issue, the next item to finish */
    const size_t P = n / 2;  /* pairs, an even count */
    const uint8_t *pf = w->pf, *pf_end = w->pf ? w->pf + w->pf_len : NULL;
#define ISSUE(C0, A0, B0, C1, A1, B1)                                                                         \
    do {                                                                                                      \
        if (pf < pf_end) { _mm_prefetch((const char *)pf, _MM_HINT_T0); pf += 64; }                          \
        PRODUCT(C0, A0, B0, pp);                                                                              \
        advance(&pp, ng, groups, nb);                                                                         \
        PRODUCT(C1, A1, B1, pp);                                                                              \
        advance(&pp, ng, groups, nb);                                                                         \
    } while (0)
#define FINISH(buf)                                                                                           \
    do {                                                                                                      \
        item(w, x, ng, &pe, buf[0], y, ldy, mr, groups, has_m, acc);                                          \
        advance(&pe, ng, groups, nb);                                                                         \
        item(w, x, ng, &pe, buf[1], y, ldy, mr, groups, has_m, acc);                                          \
        advance(&pe, ng, groups, nb);                                                                         \
    } while (0)
    ISSUE(0, 4, 6, 1, 5, 7);
    ISSUE(2, 4, 6, 3, 5, 7);
    _tile_stored(0, c[0][0], 64);
    _tile_stored(1, c[0][1], 64);
    for (size_t p = 0; p < P; p += 2) {
        /* step p: pair p is in c[0], pair p + 1 in tiles 2, 3 */
        if (p + 2 < P) ISSUE(0, 4, 6, 1, 5, 7);
        FINISH(c[0]);
        _tile_stored(2, c[1][0], 64);
        _tile_stored(3, c[1][1], 64);
        /* step p + 1: pair p + 1 is in c[1], pair p + 2 (if any) in tiles 0, 1 */
        if (p + 3 < P) ISSUE(2, 4, 6, 3, 5, 7);
        FINISH(c[1]);
        if (p + 2 < P) {
            _tile_stored(0, c[0][0], 64);
            _tile_stored(1, c[0][1], 64);
        }
    }
#undef ISSUE
#undef FINISH
}
#undef PRODUCT

AMX static void qtiles_q8_0(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, tiles, y, ldy, mr, 32, 0);
}
AMX static void qtiles_q4_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, tiles, y, ldy, mr, 32, 1);
}
AMX static void qtiles_q6_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, tiles, y, ldy, mr, 16, 0);
}

AMX void qf_rt_qtiles_amx(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy, int mr) {
    if (!w->sgn || w->off) { /* not this kernel's format */
        for (size_t t = 0; t < tiles; t++) {
            qf_rt_xq xt = qf_rt_xq_next(x, nb, t);
            qf_rt_qtile_scalar(w, &xt, nb, y + t * QT, ldy, mr);
        }
        return;
    }
    use_cfg((int)w->sub);
    if (w->sub == 16) qtiles_q6_k(w, x, nb, tiles, y, ldy, mr);
    else if (w->m) qtiles_q4_k(w, x, nb, tiles, y, ldy, mr);
    else qtiles_q8_0(w, x, nb, tiles, y, ldy, mr);
    if (w->stream) _mm_sfence(); /* the streamed outputs are visible before the pool's barrier */
}

AMX void qf_rt_qtile_amx(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    qf_rt_qtiles_amx(w, x, nb, 1, y, ldy, mr);
}
