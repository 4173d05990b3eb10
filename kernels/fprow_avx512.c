/*
 * fprow_avx512.c — the AVX-512 row conversion F32 -> BF16 (contract in fprow.h; the other conversions
 * stay on the AVX2 variants). Rows a quantizer converts sit in L1, where the AVX2 version is bound by
 * its 8-lane RNE arithmetic and the 256 -> 128-bit pack; sixteen lanes with a mask for the NaN case and
 * one truncating narrow (vpmovdw) halve the work per element.
 *
 * Not vcvtneps2bf16 (AVX512_BF16): it treats subnormal inputs as zero, and qf_f32_to_bf16 does not.
 */
#include "kernels/fpconv.h"

#include <immintrin.h>
#include <stdint.h>

void qf_f32_to_bf16_row_avx512(const float *x, uint16_t *y, int64_t n) {
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF), quiet = _mm512_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512(x + i);
        __m512i hi = _mm512_srli_epi32(u, 16);
        /* RNE on the low 16 bits, as qf_f32_to_bf16; NaNs keep their top bits and are forced quiet */
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, half), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
        r = _mm512_mask_or_epi32(r, nan, hi, quiet);
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) y[i] = qf_f32_to_bf16(x[i]);
}
