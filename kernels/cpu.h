/*
 * cpu.h — run-time choice of the instruction set the kernels use.
 *
 * The traits rows returned by qf_qtype_get() carry the kernels of the active ISA: the best one the CPU
 * supports (probed once with __builtin_cpu_supports), or the one the environment variable
 * QF_ISA=scalar|avx2|avx512 asks for (capped at what the CPU supports, with a warning on stderr).
 * Tests and benchmarks use qf_qtype_get_isa() to run every path side by side in one process.
 */
#ifndef QF_KERNELS_CPU_H
#define QF_KERNELS_CPU_H

#include "kernels/qtypes.h"

typedef enum qf_isa { QF_ISA_SCALAR = 0, QF_ISA_AVX2 = 1, QF_ISA_AVX512 = 2, QF_ISA_COUNT = 3 } qf_isa;

/* True if this CPU (and this build) can run kernels of `isa`. */
bool qf_isa_supported(qf_isa isa);
/* The ISA whose kernels qf_qtype_get() returns. */
qf_isa qf_isa_active(void);
const char *qf_isa_name(qf_isa isa);
/* Parse "scalar" / "avx2" / "avx512" (case-insensitive); false if unknown. */
bool qf_isa_parse(const char *s, qf_isa *isa);
/* Row for `id` with the kernels of `isa` (lower-ISA kernels where `isa` has none), or NULL if the id is
 * unknown or the CPU cannot run `isa`. */
const qf_qtype_traits *qf_qtype_get_isa(uint32_t id, qf_isa isa);

#endif
