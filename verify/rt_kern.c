/* rt_kern.c — scalar reference kernels of the runtime and the choice of ISA (see rt_kern.h). */
#include "verify/rt_kern.h"

#include "kernels/cpu.h"

#include <math.h>
#include <string.h>

#define SCALAR_NT 16

void qf_rt_tile_scalar(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr) {
    for (int r = 0; r < mr; r++) {
        float acc[SCALAR_NT] = {0};
        const float *wr = w + (size_t)r * ldw;
        for (size_t k = 0; k < K; k++) {
            const float *xk = x + k * ldx;
            /* fmaf, not a*b+c: the SIMD kernels fuse, and results must match them bit for bit */
            for (int t = 0; t < SCALAR_NT; t++) acc[t] = fmaf(wr[k], xk[t], acc[t]);
        }
        memcpy(y + (size_t)r * ldy, acc, sizeof acc);
    }
}

static float vexp1(float x) {
    if (isnan(x)) return x;
    x = x > QF_VEXP_HI ? QF_VEXP_HI : x < QF_VEXP_LO ? QF_VEXP_LO : x;
    float n = nearbyintf(x * QF_VEXP_LOG2E);
    float r = x - n * QF_VEXP_C1;
    r = r - n * QF_VEXP_C2;
    float p = QF_VEXP_P0;
    p = p * r + QF_VEXP_P1;
    p = p * r + QF_VEXP_P2;
    p = p * r + QF_VEXP_P3;
    p = p * r + QF_VEXP_P4;
    p = p * r + QF_VEXP_P5;
    float z = r * r;
    float e = p * z + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

void qf_rt_vexp_scalar(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = vexp1(x[i]);
}

static const qf_rt_kern kern_table[QF_ISA_COUNT] = {
    [QF_ISA_SCALAR] = {.isa = "scalar", .nt = SCALAR_NT, .tile = qf_rt_tile_scalar, .vexp = qf_rt_vexp_scalar},
    [QF_ISA_AVX2] = {.isa = "avx2", .nt = 16, .tile = qf_rt_tile_avx2, .vexp = qf_rt_vexp_avx2},
    [QF_ISA_AVX512] = {.isa = "avx512", .nt = 64, .tile = qf_rt_tile_avx512, .vexp = qf_rt_vexp_avx512},
};

const qf_rt_kern *qf_rt_kern_active(void) {
    qf_isa isa = qf_isa_active();
    return (int)isa >= 0 && isa < QF_ISA_COUNT ? &kern_table[isa] : &kern_table[QF_ISA_SCALAR];
}
