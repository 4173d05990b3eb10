/*
 * fprow.c — scalar row conversions (the reference: a loop over fpconv.c) and the run-time choice of
 * the ISA's variant (contract in fprow.h).
 */
#include "kernels/fprow.h"

#include "kernels/fpconv.h"

#include <pthread.h>

static void f16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qf_f16_to_f32(x[i]);
}
static void bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qf_bf16_to_f32(x[i]);
}
static void e4m3_to_f32(const uint8_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qf_e4m3_to_f32(x[i]);
}
static void f32_to_f16(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qf_f32_to_f16(x[i]);
}
static void f32_to_bf16(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qf_f32_to_bf16(x[i]);
}

static const qf_fprow scalar = { f16_to_f32, bf16_to_f32, e4m3_to_f32, f32_to_f16, f32_to_bf16 };

#if defined(__x86_64__)
void qf_f16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n);
void qf_bf16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n);
void qf_e4m3_to_f32_row_avx2(const uint8_t *x, float *y, int64_t n);
void qf_f32_to_f16_row_avx2(const float *x, uint16_t *y, int64_t n);
void qf_f32_to_bf16_row_avx2(const float *x, uint16_t *y, int64_t n);
static const qf_fprow avx2 = { qf_f16_to_f32_row_avx2, qf_bf16_to_f32_row_avx2, qf_e4m3_to_f32_row_avx2,
                               qf_f32_to_f16_row_avx2, qf_f32_to_bf16_row_avx2 };
void qf_f32_to_bf16_row_avx512(const float *x, uint16_t *y, int64_t n);
static const qf_fprow avx512 = { qf_f16_to_f32_row_avx2, qf_bf16_to_f32_row_avx2, qf_e4m3_to_f32_row_avx2,
                                 qf_f32_to_f16_row_avx2, qf_f32_to_bf16_row_avx512 };
#endif

const qf_fprow *qf_fprow_isa(qf_isa isa) {
    if ((int)isa < 0 || isa >= QF_ISA_COUNT || !qf_isa_supported(isa)) return NULL;
#if defined(__x86_64__)
    /* from memory the conversions are bandwidth-bound; only F32 -> BF16 from L1 gains from 16 lanes */
    if (isa >= QF_ISA_AVX512) return &avx512;
    if (isa >= QF_ISA_AVX2) return &avx2;
#endif
    return &scalar;
}

/* Chosen once: the CPU probe (CPUID, which traps in some VMs) must stay out of per-row calls. */
static const qf_fprow *chosen = &scalar;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;
static void choose(void) {
    const qf_fprow *r = qf_fprow_isa(qf_isa_active());
    if (r) chosen = r;
}
static const qf_fprow *active(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

void qf_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) { active()->f16_to_f32(x, y, n); }
void qf_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n) { active()->bf16_to_f32(x, y, n); }
void qf_e4m3_to_f32_row(const uint8_t *x, float *y, int64_t n) { active()->e4m3_to_f32(x, y, n); }
void qf_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) { active()->f32_to_f16(x, y, n); }
void qf_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n) { active()->f32_to_bf16(x, y, n); }
