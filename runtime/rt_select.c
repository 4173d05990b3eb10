/* rt_select.c — the choice of the runtime's kernels by ISA (rt_kern.h); the kernels themselves are in
 * rt_kern_scalar.c (the reference) and the per-ISA files. */
#include "runtime/rt_kern.h"

#include "kernels/cpu.h"

#include <cpuid.h>
#include <stdlib.h>

static const qf_rt_kern kern_table[QF_ISA_COUNT] = {
    [QF_ISA_SCALAR] = {.isa = "scalar", .nt = QF_RT_SCALAR_NT, .tile = qf_rt_tile_scalar, .vexp = qf_rt_vexp_scalar,
                       .softmax = qf_rt_softmax_scalar, .glu = qf_rt_glu_scalar},
    [QF_ISA_AVX2] = {.isa = "avx2", .nt = 16, .tile = qf_rt_tile_avx2, .vexp = qf_rt_vexp_avx2,
                     .softmax = qf_rt_softmax_avx2, .glu = qf_rt_glu_avx2},
    [QF_ISA_AVX512] = {.isa = "avx512", .nt = 64, .tile = qf_rt_tile_avx512, .vexp = qf_rt_vexp_avx512,
                       .softmax = qf_rt_softmax_avx512, .glu = qf_rt_glu_avx512},
};

const qf_rt_kern *qf_rt_kern_active(void) {
    qf_isa isa = qf_isa_active();
    return (int)isa >= 0 && isa < QF_ISA_COUNT ? &kern_table[isa] : &kern_table[QF_ISA_SCALAR];
}

/* CPUID leaf 7 ECX bit 11 directly: older clang rejects some names in __builtin_cpu_supports. The
 * AVX-512 register state itself was checked when the ISA became active. */
static bool has_vnni(void) {
    unsigned a, b, c, d;
    return qf_isa_active() == QF_ISA_AVX512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
}

/* AMX only when nobody asked for an ISA: QF_ISA=avx512 keeps the VNNI tile, so every path stays reachable. */
static bool isa_forced(void) {
    const char *env = getenv("QF_ISA");
    return env && *env;
}

const qf_rt_qkern *qf_rt_qkern_active(void) {
    static const qf_rt_qkern scalar = {.isa = "scalar", .qtile = qf_rt_qtile_scalar, .xquant = qf_rt_xquant_scalar,
                                       .rows = 3};
    static const qf_rt_qkern avx2 = {.isa = "avx2", .qtile = qf_rt_qtile_avx2, .xquant = qf_rt_xquant_scalar,
                                     .rows = 3};
    static const qf_rt_qkern avx512 = {.isa = "avx512", .qtile = qf_rt_qtile_avx2, .xquant = qf_rt_xquant_avx512,
                                       .rows = 3};
    static const qf_rt_qkern vnni = {.isa = "avx512vnni", .qtile = qf_rt_qtile_avx512vnni,
                                     .xquant = qf_rt_xquant_avx512, .rows = 3};
    static const qf_rt_qkern amx = {.isa = "amx", .qtile = qf_rt_qtile_amx, .qtiles = qf_rt_qtiles_amx,
                                    .xquant = qf_rt_xquant_avx512,
                                    .rows = 16, .sgn = true};
    if (has_vnni() && !isa_forced() && qf_rt_amx_usable()) return &amx;
    if (has_vnni()) return &vnni;
    switch (qf_isa_active()) {
    case QF_ISA_AVX512: return &avx512; /* AVX-512 without VNNI: the AVX2 tile */
    case QF_ISA_AVX2: return &avx2;
    default: return &scalar;
    }
}
