/* cpu.c — ISA probe and names (the dispatch itself is in qtypes.c, which owns the tables). */
#include "kernels/cpu.h"

#include <strings.h>

static const char *const isa_names[QF_ISA_COUNT] = { "scalar", "avx2", "avx512" };

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
/* clang before 16 rejects "f16c" in __builtin_cpu_supports (so a clang build, the fuzzers', failed);
 * CPUID leaf 1 reports F16C in ECX bit 29 with either compiler. */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

bool qf_isa_supported(qf_isa isa) {
    switch (isa) {
    case QF_ISA_SCALAR: return true;
#if defined(__x86_64__) && defined(__GNUC__)
    /* The AVX2 files are built with -mavx2 -mfma -mf16c; the AVX-512 ones add F/BW/VL/DQ. */
    case QF_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case QF_ISA_AVX512:
        return qf_isa_supported(QF_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
#endif
    default: return false;
    }
}

const char *qf_isa_name(qf_isa isa) {
    return (int)isa >= 0 && isa < QF_ISA_COUNT ? isa_names[isa] : "unknown";
}

bool qf_isa_parse(const char *s, qf_isa *isa) {
    for (int i = 0; i < QF_ISA_COUNT; i++)
        if (s && strcasecmp(s, isa_names[i]) == 0) { *isa = (qf_isa)i; return true; }
    return false;
}
