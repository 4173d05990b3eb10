/*
 * iq_grids.h — the grids of ggml's i-quant formats (internal to kernels/; data in iq_grids.c).
 *
 * Each IQ2/IQ3 entry is one grid point of magnitudes, one byte per element (element 0 lowest): IQ2's
 * bytes are 8, 25 or 43, IQ3_XXS's 4, 12, ..., 52, 62, IQ3_S's 1, 3, ..., 15; IQ1's are int8 -1, 0, 1.
 * Signs are stored beside the index (IQ2_XXS/XS, IQ3_XXS: 7 bits, the 8th makes the count of negatives
 * even; IQ2_S, IQ3_S: 8 free bits).
 */
#ifndef QF_KERNELS_IQ_GRIDS_H
#define QF_KERNELS_IQ_GRIDS_H

#include <stdint.h>

extern const uint64_t qf_iq2xxs_grid[256];
extern const uint64_t qf_iq2xs_grid[512];
extern const uint64_t qf_iq2s_grid[1024];
extern const uint32_t qf_iq3xxs_grid[256];
extern const uint32_t qf_iq3s_grid[512];
extern const uint64_t qf_iq1s_grid[2048];
extern const int8_t qf_iq4nl_values[16];

/* A lattice grid as the quantizers search it: coordinate k of point p is g[k * n + p] (a float copy of
 * the packed bytes, one row per coordinate so 8 points load as one vector; n is a multiple of 8). */
typedef struct qf_iq_grid {
    int n, dim;
    const float *g;
    /* Every grid value is one of nlev levels (ascending); map[c] is the grid index of the lattice point whose
     * coordinate k is level c_k of c = sum_k c_k nlev^k, or -1 where the grid lacks that point. */
    int nlev;
    float lev[8], mid[7]; /* mid[j]: halfway between levels j and j + 1 */
    const int16_t *map;
    const uint32_t *in; /* bit c % 32 of in[c / 32] is set where map[c] >= 0 (IQ1's search tests 8 at once) */
    /* IQ2's and IQ3's grids: for a lattice point c the grid lacks, the grid points nearest it in level steps
     * (squared distance at most the least one + 2 for IQ3's, the least one for IQ2's, whose lists are 4-8
     * times longer), ascending, at nb[nb_off[c] .. nb_off[c + 1]). truncated counts points a full pool
     * dropped (0: the pools are sized for these grids; tests check it). IQ1's grid has none (NULL): its
     * search (iq_body.h) walks the lattice from c itself. */
    const uint16_t *nb;
    const uint32_t *nb_off;
    uint32_t truncated;
} qf_iq_grid;

typedef enum qf_iq_grid_id {
    QF_IQG_2XXS, QF_IQG_2XS, QF_IQG_2S, QF_IQG_3XXS, QF_IQG_3S, QF_IQG_1S, /* IQ1_S and IQ1_M share theirs */
    QF_IQG_COUNT
} qf_iq_grid_id;

/* The grid's float form, built on first use (thread-safe) and read-only after. */
const qf_iq_grid *qf_iq_grid_get(qf_iq_grid_id id);

/* IQ1_S / IQ1_M: the offset added to every grid value (its sign is stored per group). */
#define QF_IQ1_DELTA 0.125f

/* The 8 sign bits of a 7-bit stored pattern: bit 7 completes an even count of set bits (ggml's
 * ksigns_iq2xs table, which is exactly this). */
static inline uint8_t qf_iq_signs7(unsigned s7) {
    return (uint8_t)(s7 | (unsigned)__builtin_parity(s7) << 7);
}

#endif
