/*
 * cu_types.cuh — device decoders of the stored types (internal to runtime/cuda/; layouts: kernels/blocks.h,
 * arithmetic: the CPU dequantizers in kernels/k_*.c, repeated operation for operation).
 *
 * Two views of a row:
 *   deq<T>(row, k)            element k, the value the CPU's dequantizer writes (the exact paths);
 *   Unit<T>::load(row, u, w)  unit u of the row: 8 elements, w[0..3] = elements at base0 .. base0+3 and
 *                             w[4..7] at base1 .. base1+3 (the GEMV path: consecutive lanes read
 *                             consecutive bytes). Units cover a row's first K / 8 * 8 elements.
 * Rows start 16-byte aligned (the upload pads their pitch) and blocks sit at multiples of their size in
 * the row, so a field's alignment is its offset's within the block; loads below never assume more.
 */
#ifndef QF_RUNTIME_CUDA_CU_TYPES_CUH
#define QF_RUNTIME_CUDA_CU_TYPES_CUH

#include "runtime/cuda/cu_kernels.h"

#include <cuda_fp16.h>
#include <string.h>

/* Host and device: tests/test_cuda_types.cu checks every decoder against the CPU's on the host. */
#define QF_CU_HD __host__ __device__ __forceinline__

namespace qf_cu {

QF_CU_HD float as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

QF_CU_HD uint32_t u16(const uint8_t *p) { return *reinterpret_cast<const uint16_t *>(p); }
/* a 32-bit field at an even offset */
QF_CU_HD uint32_t u32_2(const uint8_t *p) { return u16(p) | u16(p + 2) << 16; }
QF_CU_HD uint32_t u32_4(const uint8_t *p) { return *reinterpret_cast<const uint32_t *>(p); }
QF_CU_HD uint32_t u32_1(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
QF_CU_HD float half(uint32_t h) { return __half2float(__ushort_as_half((unsigned short)h)); }

/* E4M3FN (fpconv.c): bias 7, no infinities, S.1111.111 NaN; subnormals m * 2^-9. */
QF_CU_HD float e4m3(uint32_t v) {
    uint32_t code = v & 0x7Fu, e = code >> 3, m = code & 7u;
    float mag = e ? as_float((e + 120u) << 23 | m << 20) : (float)m * 0.001953125f;
    if (code == 0x7Fu) mag = as_float(0x7FC00000u);
    return v & 0x80u ? -mag : mag;
}
/* E5M2 is the top byte of an F16 */
QF_CU_HD float e5m2(uint32_t v) { return half((v & 0xFFu) << 8); }
/* 2^(e-127), e = 255 NaN (qf_e8m0_scale) */
QF_CU_HD float e8m0(uint32_t e) {
    return e == 255 ? as_float(0x7FC00000u) : e ? as_float(e << 23) : as_float(0x00400000u);
}
/* 2^(e-128), subnormals for e = 0, 1 (MXFP4's half scale, k_mxfp4.c) */
QF_CU_HD float e8m0_half(uint32_t e) {
    return e >= 2 ? as_float((e - 1) << 23) : as_float(0x00200000u << e);
}
/* twice the E2M1 value of a nibble: 0 1 2 3 4 6 8 12, sign in bit 3 */
QF_CU_HD float e2m1x2(uint32_t n) {
    int v = (int)((0x0C08060403020100ull >> (8 * (n & 7))) & 0xFF);
    return (float)(n & 8 ? -v : v); /* an integer first: code 8 is +0, as the CPU's table has it */
}

/* ggml's nibble order of the 32-blocks: byte j low = element j, high = element j + 16 */
QF_CU_HD uint32_t nib32(const uint8_t *qs, uint32_t j) { return j < 16 ? qs[j] & 15u : qs[j - 16] >> 4; }
/* K-quant nibbles: in each 64-chunk byte l holds element l (low) and l + 32 (high) */
QF_CU_HD uint32_t nibk(const uint8_t *qs, uint32_t e) {
    uint32_t v = qs[(e / 64) * 32 + e % 32];
    return e % 64 < 32 ? v & 15u : v >> 4;
}
/* 2-bit fields: element e of 128-chunk c in byte c * 32 + e % 32 at bit 2 * ((e % 128) / 32) */
QF_CU_HD uint32_t get2(const uint8_t *qs, uint32_t e) {
    return qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32)) & 3u;
}
QF_CU_HD void k4_scale_min(const uint8_t *s, uint32_t j, uint32_t *sc, uint32_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63u;
        *mn = s[j + 4] & 63u;
    } else {
        *sc = (s[j + 4] & 15u) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}
QF_CU_HD int q3k_scale(const uint8_t *s, uint32_t j) {
    uint32_t lo = s[j % 8] >> (4 * (j / 8)) & 15u, hi = s[8 + j % 4] >> (2 * (j / 4)) & 3u;
    return (int)(lo | hi << 4) - 32;
}

/* ---- element k of a row, exactly as the CPU dequantizes it ------------------------------------------ */

template <int T> QF_CU_HD float deq(const uint8_t *row, uint32_t k);

template <> QF_CU_HD float deq<QF_CU_F32>(const uint8_t *r, uint32_t k) {
    return reinterpret_cast<const float *>(r)[k];
}
template <> QF_CU_HD float deq<QF_CU_F16>(const uint8_t *r, uint32_t k) { return half(u16(r + 2 * k)); }
template <> QF_CU_HD float deq<QF_CU_BF16>(const uint8_t *r, uint32_t k) {
    return as_float(u16(r + 2 * k) << 16);
}
template <> QF_CU_HD float deq<QF_CU_Q4_0>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 18;
    return (float)((int)nib32(b + 2, k % 32) - 8) * half(u16(b));
}
template <> QF_CU_HD float deq<QF_CU_Q4_1>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 20;
    return (float)nib32(b + 4, k % 32) * half(u16(b)) + half(u16(b + 2));
}
template <> QF_CU_HD float deq<QF_CU_Q5_0>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 22;
    uint32_t j = k % 32, q = nib32(b + 6, j) | (u32_2(b + 2) >> j & 1u) << 4;
    return (float)((int)q - 16) * half(u16(b));
}
template <> QF_CU_HD float deq<QF_CU_Q5_1>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 24;
    uint32_t j = k % 32, q = nib32(b + 8, j) | (u32_4(b + 4) >> j & 1u) << 4;
    return (float)q * half(u16(b)) + half(u16(b + 2));
}
template <> QF_CU_HD float deq<QF_CU_Q8_0>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 34;
    return (float)(int8_t)b[2 + k % 32] * half(u16(b));
}
template <> QF_CU_HD float deq<QF_CU_MXFP4>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 17;
    return e2m1x2(nib32(b + 1, k % 32)) * e8m0_half(b[0]);
}
template <> QF_CU_HD float deq<QF_CU_Q2_K>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 256) * 84;
    uint32_t e = k % 256, sc = b[e / 16];
    float dl = half(u16(b + 80)) * (float)(sc & 15u), ml = half(u16(b + 82)) * (float)(sc >> 4);
    return dl * (float)get2(b + 16, e) - ml;
}
template <> QF_CU_HD float deq<QF_CU_Q3_K>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 256) * 110;
    uint32_t e = k % 256;
    float dl = half(u16(b + 108)) * (float)q3k_scale(b + 96, e / 16);
    int q = (int)get2(b + 32, e) - (b[e % 32] >> (e / 32) & 1u ? 0 : 4);
    return dl * (float)q;
}
template <> QF_CU_HD float deq<QF_CU_Q4_K>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 256) * 144;
    uint32_t e = k % 256, sc, mn;
    k4_scale_min(b + 4, e / 32, &sc, &mn);
    float d1 = half(u16(b)) * (float)sc, m1 = half(u16(b + 2)) * (float)mn;
    return d1 * (float)nibk(b + 16, e) - m1;
}
template <> QF_CU_HD float deq<QF_CU_Q5_K>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 256) * 176;
    uint32_t e = k % 256, j = e / 32, sc, mn;
    k4_scale_min(b + 4, j, &sc, &mn);
    float d1 = half(u16(b)) * (float)sc, m1 = half(u16(b + 2)) * (float)mn;
    uint32_t q = nibk(b + 48, e) + (b[16 + e % 32] >> j & 1u ? 16u : 0u);
    return d1 * (float)q - m1;
}
template <> QF_CU_HD float deq<QF_CU_Q6_K>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 256) * 210;
    uint32_t e = k % 256, c = e / 128, q = (e % 128) / 32, l = e % 32;
    uint32_t lo = b[c * 64 + (q & 1) * 32 + l] >> (4 * (q >> 1)) & 15u, hi = b[128 + c * 32 + l] >> (2 * q) & 3u;
    return half(u16(b + 208)) * (float)(int8_t)b[192 + e / 16] * (float)((int)(lo | hi << 4) - 32);
}
template <> QF_CU_HD float deq<QF_CU_E4M3_B32>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 33;
    return e4m3(b[1 + k % 32]) * e8m0(b[0]);
}
template <> QF_CU_HD float deq<QF_CU_E5M2_B32>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 32) * 33;
    return e5m2(b[1 + k % 32]) * e8m0(b[0]);
}
template <> QF_CU_HD float deq<QF_CU_E4M3_ROW>(const uint8_t *r, uint32_t k) {
    return as_float(u32_4(r)) * e4m3(r[4 + k]);
}
template <> QF_CU_HD float deq<QF_CU_E4M3_B128>(const uint8_t *r, uint32_t k) {
    const uint8_t *b = r + (k / 128) * 132;
    return as_float(u32_4(b)) * e4m3(b[4 + k % 128]);
}

/* ---- units of 8 elements for the GEMV path ---------------------------------------------------------- */

template <int T> struct Unit;

/* plain types: 8 consecutive elements */
template <> struct Unit<QF_CU_F32> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const float4 *p = reinterpret_cast<const float4 *>(r) + 2 * u;
        float4 a = p[0], c = p[1];
        w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = c.x, w[5] = c.y, w[6] = c.z, w[7] = c.w;
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};
template <> struct Unit<QF_CU_F16> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        uint4 v = reinterpret_cast<const uint4 *>(r)[u];
        uint32_t x[4] = {v.x, v.y, v.z, v.w};
        for (int i = 0; i < 4; i++) w[2 * i] = half(x[i] & 0xFFFFu), w[2 * i + 1] = half(x[i] >> 16);
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};
template <> struct Unit<QF_CU_BF16> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        uint4 v = reinterpret_cast<const uint4 *>(r)[u];
        uint32_t x[4] = {v.x, v.y, v.z, v.w};
        for (int i = 0; i < 4; i++) w[2 * i] = as_float(x[i] << 16), w[2 * i + 1] = as_float(x[i] & 0xFFFF0000u);
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};
template <> struct Unit<QF_CU_E4M3_ROW> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        float s = as_float(u32_4(r));
        uint32_t lo = u32_4(r + 4 + 8 * u), hi = u32_4(r + 8 + 8 * u);
        for (int i = 0; i < 4; i++) w[i] = s * e4m3(lo >> 8 * i), w[4 + i] = s * e4m3(hi >> 8 * i);
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};

/* 32-blocks: 4 units per block */
template <> struct Unit<QF_CU_Q8_0> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 34, *q = b + 2 + 8 * (u % 4);
        float d = half(u16(b));
        for (int i = 0; i < 4; i++) {
            uint32_t v = u16(q + 2 * i);
            w[2 * i] = (float)(int8_t)(v & 0xFF) * d, w[2 * i + 1] = (float)(int8_t)(v >> 8) * d;
        }
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};
/* nibble types: unit j of a block holds qs[4j .. 4j+3], elements 4j.. (low) and 16 + 4j.. (high) */
QF_CU_HD void nib_bases(uint32_t u, uint32_t *b0, uint32_t *b1) {
    *b0 = (u / 4) * 32 + 4 * (u % 4), *b1 = *b0 + 16;
}
template <> struct Unit<QF_CU_Q4_0> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 18;
        float d = half(u16(b));
        uint32_t q = u32_2(b + 2 + 4 * (u % 4));
        for (int i = 0; i < 4; i++) w[i] = (float)((int)(q >> 8 * i & 15u) - 8) * d, w[4 + i] = (float)((int)(q >> (8 * i + 4) & 15u) - 8) * d;
        nib_bases(u, b0, b1);
    }
};
template <> struct Unit<QF_CU_Q4_1> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 20;
        float d = half(u16(b)), m = half(u16(b + 2));
        uint32_t q = u32_4(b + 4 + 4 * (u % 4));
        for (int i = 0; i < 4; i++) w[i] = (float)(q >> 8 * i & 15u) * d + m, w[4 + i] = (float)(q >> (8 * i + 4) & 15u) * d + m;
        nib_bases(u, b0, b1);
    }
};
template <> struct Unit<QF_CU_Q5_0> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 22;
        uint32_t j0 = 4 * (u % 4), qh = u32_2(b + 2), q = u32_2(b + 6 + j0);
        float d = half(u16(b));
        for (int i = 0; i < 4; i++) {
            uint32_t lo = (q >> 8 * i & 15u) | (qh >> (j0 + i) & 1u) << 4, hi = (q >> (8 * i + 4) & 15u) | (qh >> (j0 + i + 16) & 1u) << 4;
            w[i] = (float)((int)lo - 16) * d, w[4 + i] = (float)((int)hi - 16) * d;
        }
        nib_bases(u, b0, b1);
    }
};
template <> struct Unit<QF_CU_Q5_1> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 24;
        uint32_t j0 = 4 * (u % 4), qh = u32_4(b + 4), q = u32_4(b + 8 + j0);
        float d = half(u16(b)), m = half(u16(b + 2));
        for (int i = 0; i < 4; i++) {
            uint32_t lo = (q >> 8 * i & 15u) | (qh >> (j0 + i) & 1u) << 4, hi = (q >> (8 * i + 4) & 15u) | (qh >> (j0 + i + 16) & 1u) << 4;
            w[i] = (float)lo * d + m, w[4 + i] = (float)hi * d + m;
        }
        nib_bases(u, b0, b1);
    }
};
template <> struct Unit<QF_CU_MXFP4> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 4) * 17;
        float d = e8m0_half(b[0]);
        uint32_t q = u32_1(b + 1 + 4 * (u % 4));
        for (int i = 0; i < 4; i++) w[i] = e2m1x2(q >> 8 * i & 15u) * d, w[4 + i] = e2m1x2(q >> (8 * i + 4) & 15u) * d;
        nib_bases(u, b0, b1);
    }
};
template <int E5> QF_CU_HD void fp8_b32(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
    const uint8_t *b = r + (u / 4) * 33, *q = b + 1 + 8 * (u % 4);
    float s = e8m0(b[0]);
    for (int i = 0; i < 8; i++) w[i] = (E5 ? e5m2(q[i]) : e4m3(q[i])) * s;
    *b0 = 8 * u, *b1 = 8 * u + 4;
}
template <> struct Unit<QF_CU_E4M3_B32> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        fp8_b32<0>(r, u, w, b0, b1);
    }
};
template <> struct Unit<QF_CU_E5M2_B32> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        fp8_b32<1>(r, u, w, b0, b1);
    }
};
/* 128-blocks: 16 units per block */
template <> struct Unit<QF_CU_E4M3_B128> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 16) * 132;
        float d = as_float(u32_4(b));
        uint32_t lo = u32_4(b + 4 + 8 * (u % 16)), hi = u32_4(b + 8 + 8 * (u % 16));
        for (int i = 0; i < 4; i++) w[i] = d * e4m3(lo >> 8 * i), w[4 + i] = d * e4m3(hi >> 8 * i);
        *b0 = 8 * u, *b1 = 8 * u + 4;
    }
};

/* K-quants: 32 units per 256-element super-block. Q4_K/Q5_K unit (c, l0): qs bytes c * 32 + l0 .. +3, low
 * nibbles elements c * 64 + l0 .. (sub-block 2c), high ones c * 64 + 32 + l0 .. (sub-block 2c + 1). */
template <> struct Unit<QF_CU_Q4_K> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 32) * 144;
        uint32_t c = u % 32 / 8, l0 = 4 * (u % 8), sc0, mn0, sc1, mn1, q = u32_4(b + 16 + c * 32 + l0);
        k4_scale_min(b + 4, 2 * c, &sc0, &mn0);
        k4_scale_min(b + 4, 2 * c + 1, &sc1, &mn1);
        float d = half(u16(b)), dm = half(u16(b + 2));
        float d0 = d * (float)sc0, m0 = dm * (float)mn0, d1 = d * (float)sc1, m1 = dm * (float)mn1;
        for (int i = 0; i < 4; i++) w[i] = d0 * (float)(q >> 8 * i & 15u) - m0, w[4 + i] = d1 * (float)(q >> (8 * i + 4) & 15u) - m1;
        *b0 = (u / 32) * 256 + c * 64 + l0, *b1 = *b0 + 32;
    }
};
template <> struct Unit<QF_CU_Q5_K> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 32) * 176;
        uint32_t c = u % 32 / 8, l0 = 4 * (u % 8), sc0, mn0, sc1, mn1;
        uint32_t q = u32_4(b + 48 + c * 32 + l0), h = u32_4(b + 16 + l0);
        k4_scale_min(b + 4, 2 * c, &sc0, &mn0);
        k4_scale_min(b + 4, 2 * c + 1, &sc1, &mn1);
        float d = half(u16(b)), dm = half(u16(b + 2));
        float d0 = d * (float)sc0, m0 = dm * (float)mn0, d1 = d * (float)sc1, m1 = dm * (float)mn1;
        for (int i = 0; i < 4; i++) {
            uint32_t hb = h >> 8 * i;
            uint32_t lo = (q >> 8 * i & 15u) + (hb >> (2 * c) & 1u ? 16u : 0u);
            uint32_t hi = (q >> (8 * i + 4) & 15u) + (hb >> (2 * c + 1) & 1u ? 16u : 0u);
            w[i] = d0 * (float)lo - m0, w[4 + i] = d1 * (float)hi - m1;
        }
        *b0 = (u / 32) * 256 + c * 64 + l0, *b1 = *b0 + 32;
    }
};
/* Q6_K unit (c, p, l0): elements c * 128 + r * 32 + l0 .. +3 for r = p and p + 2: low nibbles from ql bytes
 * c * 64 + p * 32 + l0 .. (low half for r = p, high half for r = p + 2), top bits from qh c * 32 + l0 .. */
template <> struct Unit<QF_CU_Q6_K> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 32) * 210;
        uint32_t c = u % 32 / 16, p = u % 16 / 8, l0 = 4 * (u % 8);
        uint32_t ql = u32_2(b + c * 64 + p * 32 + l0), qh = u32_2(b + 128 + c * 32 + l0);
        float d = half(u16(b + 208));
        uint32_t e0 = c * 128 + p * 32 + l0, e1 = e0 + 64;
        float s0 = d * (float)(int8_t)b[192 + e0 / 16], s1 = d * (float)(int8_t)b[192 + e1 / 16];
        for (int i = 0; i < 4; i++) {
            uint32_t lo = (ql >> 8 * i & 15u) | (qh >> (8 * i + 2 * p) & 3u) << 4;
            uint32_t hi = (ql >> (8 * i + 4) & 15u) | (qh >> (8 * i + 2 * p + 4) & 3u) << 4;
            w[i] = s0 * (float)((int)lo - 32), w[4 + i] = s1 * (float)((int)hi - 32);
        }
        *b0 = (u / 32) * 256 + e0, *b1 = (u / 32) * 256 + e1;
    }
};
/* Q2_K/Q3_K unit (c, l0, p): qs bytes c * 32 + l0 .. +3, fields s = 2p and 2p + 1: elements
 * c * 128 + s * 32 + l0 .. +3 */
template <> struct Unit<QF_CU_Q2_K> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 32) * 84;
        uint32_t c = u % 32 / 16, l0 = 4 * (u % 16 / 2), p = u % 2;
        uint32_t q = u32_4(b + 16 + c * 32 + l0);
        float d = half(u16(b + 80)), dm = half(u16(b + 82));
        for (int h = 0; h < 2; h++) {
            uint32_t s = 2 * p + h, e = c * 128 + s * 32 + l0, sc = b[e / 16];
            float dl = d * (float)(sc & 15u), ml = dm * (float)(sc >> 4);
            for (int i = 0; i < 4; i++) w[4 * h + i] = dl * (float)(q >> (8 * i + 2 * s) & 3u) - ml;
        }
        *b0 = (u / 32) * 256 + c * 128 + 2 * p * 32 + l0, *b1 = *b0 + 32;
    }
};
template <> struct Unit<QF_CU_Q3_K> {
    static QF_CU_HD void load(const uint8_t *r, uint32_t u, float *w, uint32_t *b0, uint32_t *b1) {
        const uint8_t *b = r + (u / 32) * 110;
        uint32_t c = u % 32 / 16, l0 = 4 * (u % 16 / 2), p = u % 2;
        uint32_t q = u32_2(b + 32 + c * 32 + l0), hm = u32_2(b + l0);
        float d = half(u16(b + 108));
        for (int h = 0; h < 2; h++) {
            uint32_t s = 2 * p + h, e = c * 128 + s * 32 + l0;
            float dl = d * (float)q3k_scale(b + 96, e / 16);
            for (int i = 0; i < 4; i++) {
                int v = (int)(q >> (8 * i + 2 * s) & 3u) - (hm >> (8 * i + c * 4 + s) & 1u ? 0 : 4);
                w[4 * h + i] = dl * (float)v;
            }
        }
        *b0 = (u / 32) * 256 + c * 128 + 2 * p * 32 + l0, *b1 = *b0 + 32;
    }
};

/* Call f.template operator()<T>() for the runtime type t (one instantiation per type). */
#define QF_CU_TYPES(X)                                                                                       \
    X(QF_CU_F32) X(QF_CU_F16) X(QF_CU_BF16) X(QF_CU_Q4_0) X(QF_CU_Q4_1) X(QF_CU_Q5_0) X(QF_CU_Q5_1) X(QF_CU_Q8_0) \
    X(QF_CU_Q2_K) X(QF_CU_Q3_K) X(QF_CU_Q4_K) X(QF_CU_Q5_K) X(QF_CU_Q6_K) X(QF_CU_MXFP4) X(QF_CU_E4M3_B32)         \
    X(QF_CU_E5M2_B32) X(QF_CU_E4M3_ROW) X(QF_CU_E4M3_B128)

} // namespace qf_cu

#endif
