/*
 * fpconv.c — F32 <-> F16 / BF16 / F8 (E4M3FN, E5M2) scalar conversions (contract in fpconv.h).
 *
 * All narrow formats share one encoder for finite magnitudes: `narrow_round` rounds the F32 magnitude
 * to a format with `mbits` mantissa bits and exponent bias `bias`, ties to even, producing the
 * magnitude code (exponent and mantissa fields, no sign). Callers handle NaN, infinity and overflow,
 * which is where the formats differ (F16/E5M2 have infinities, E4M3FN does not).
 */
#include "kernels/fpconv.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* q = v >> shift rounded to nearest, ties to even. shift in [1, 31]. */
static uint32_t shift_rne(uint32_t v, unsigned shift) {
    uint32_t q = v >> shift;
    uint32_t rem = v & ((UINT32_C(1) << shift) - 1);
    uint32_t half = UINT32_C(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

/*
 * Magnitude code of |f| (given as its F32 bits without sign, finite) in a format with `mbits` mantissa
 * bits and bias `bias`, rounded to nearest even. The result may exceed the format's largest finite code
 * when |f| is large; callers clamp. A rounding carry out of the mantissa lands in the exponent field,
 * which is exactly the next binade, so no special case is needed there.
 */
static uint32_t narrow_round(uint32_t abs_bits, unsigned mbits, int bias) {
    int e = (int)(abs_bits >> 23); /* biased F32 exponent */
    int emin = 1 - bias;           /* unbiased exponent of the smallest normal */
    if (e - 127 >= emin) {         /* normal in the narrow format (or too large) */
        uint32_t q = shift_rne(abs_bits, 23 - mbits);
        return q - ((uint32_t)(127 - bias) << mbits);
    }
    if (e == 0) return 0; /* F32 subnormals are far below every narrow format's subnormals */
    /* Subnormal: count units of 2^(emin - mbits). |f| = m * 2^(e - 150) with the implicit bit. */
    uint32_t m = (abs_bits & 0x7FFFFFu) | 0x800000u;
    int shift = (emin - (int)mbits) - (e - 150);
    if (shift > 24) return 0; /* below half the smallest subnormal */
    return shift_rne(m, (unsigned)shift); /* 1 << mbits here is the smallest normal: still correct */
}

/* Value of a finite magnitude code (no sign) in a format with `mbits` mantissa bits and bias `bias`. */
static float narrow_value(uint32_t code, unsigned mbits, int bias) {
    uint32_t exp = code >> mbits;
    uint32_t mant = code & ((1u << mbits) - 1);
    if (exp == 0) return ldexpf((float)mant, 1 - bias - (int)mbits);
    return bits_f32(((exp - (uint32_t)bias + 127u) << 23) | (mant << (23 - mbits)));
}

/* ---- F16 ------------------------------------------------------------------------------------------ */

float qf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t code = h & 0x7FFFu;
    if (code >= 0x7C00u) /* inf / NaN: keep the payload, widened */
        return bits_f32(sign | 0x7F800000u | ((code & 0x3FFu) << 13));
    return bits_f32(sign | f32_bits(narrow_value(code, 10, 15)));
}

uint16_t qf_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) /* NaN: keep the top payload bits and force quiet so it cannot become inf */
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    uint32_t code = narrow_round(a, 10, 15);
    if (code > 0x7C00u) code = 0x7C00u; /* overflow (and inf) -> inf, as IEEE RNE requires */
    return (uint16_t)(sign | code);
}

/* ---- BF16 ----------------------------------------------------------------------------------------- */

float qf_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t qf_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncating could clear every payload bit -> force quiet */
        return (uint16_t)((u >> 16) | 0x40u);
    /* RNE on the low 16 bits; a carry into the exponent gives the next binade or inf, both correct. */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* ---- F8 E4M3FN: bias 7, no infinities, S.1111.111 is NaN, max 448 = S.1111.110 --------------------- */

float qf_e4m3_to_f32(uint8_t v) {
    float sign = (v & 0x80u) ? -1.0f : 1.0f;
    uint32_t code = v & 0x7Fu;
    if (code == 0x7Fu) return sign * NAN;
    return sign * narrow_value(code, 3, 7);
}

uint8_t qf_f32_to_e4m3(float f) {
    uint32_t u = f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint8_t)(sign | 0x7Fu);
    /* Saturating mode: anything above the max (infinity included: the format has none) becomes max. */
    if (bits_f32(a) >= QF_E4M3_MAX) return (uint8_t)(sign | 0x7Eu);
    return (uint8_t)(sign | narrow_round(a, 3, 7));
}

/* ---- F8 E5M2: bias 15, IEEE-like, max 57344 = S.11110.11 ------------------------------------------ */

float qf_e5m2_to_f32(uint8_t v) {
    /* E5M2 is exactly the top byte of an F16. */
    return qf_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

uint8_t qf_f32_to_e5m2(float f) {
    uint32_t u = f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint8_t)(sign | 0x7Eu); /* quiet NaN */
    if (a == 0x7F800000u) return (uint8_t)(sign | 0x7Cu); /* infinity is representable: keep it */
    /* Saturating mode: finite values beyond the max clamp to max instead of rounding to inf. */
    if (bits_f32(a) >= QF_E5M2_MAX) return (uint8_t)(sign | 0x7Bu);
    return (uint8_t)(sign | narrow_round(a, 2, 15));
}
