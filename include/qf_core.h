/*
 * qf_core.h — internal helpers every layer of libqforge uses: error records, checked arithmetic,
 * small allocation helpers. Header-only so that kernels/ (the bottom layer) can use it too.
 *
 * Rule (from the GGUF CVE history): no value read from a file is added, multiplied or padded with raw
 * operators. Use qf_add_ok / qf_mul_ok / qf_pad_ok; each returns false on overflow.
 */
#ifndef QF_CORE_H
#define QF_CORE_H

#include "qforge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define QF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QF_PRINTF(a, b)
#endif

/* Record an error and return its status, so call sites read `return qf_fail(err, QF_E_INPUT, ...)`.
 * `err` may be NULL (the caller does not want the message). The first error recorded wins only if the
 * caller stops there; nested calls overwrite, so the innermost, most specific message is usually kept
 * by simply propagating the status without calling qf_fail again. */
static inline QF_PRINTF(3, 4) qf_status qf_fail(qf_error *err, qf_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* Names quoted in messages come from input files (and libraries' own messages end in '\n'):
         * keep every message one printable line. */
        size_t n = strlen(err->msg);
        while (n > 0 && ((unsigned char)err->msg[n - 1] <= 0x20 || err->msg[n - 1] == 0x7f)) err->msg[--n] = '\0';
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        err->status = st;
    }
    return st;
}

/* Put "prefix: " in front of the message already recorded (e.g. the file a lower layer did not know),
 * keeping its status; returns that status. */
static inline qf_status qf_fail_prefix(qf_error *err, qf_status st, const char *prefix) {
    if (err) {
        char inner[sizeof err->msg];
        memcpy(inner, err->msg, sizeof inner);
        inner[sizeof inner - 1] = '\0';
        qf_fail(err, st, "%s: %s", prefix, inner);
    }
    return st;
}

static inline void qf_error_clear(qf_error *err) {
    if (err) { err->status = QF_OK; err->msg[0] = '\0'; }
}

static inline bool qf_add_ok(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool qf_mul_ok(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
/* Round v up to a multiple of align (align > 0). */
static inline bool qf_pad_ok(uint64_t v, uint64_t align, uint64_t *r) {
    uint64_t rem = align ? v % align : 0;
    return rem == 0 ? (*r = v, true) : qf_add_ok(v, align - rem, r);
}
/* [off, off+len) lies within [0, size). */
static inline bool qf_range_in(uint64_t off, uint64_t len, uint64_t size) {
    uint64_t end;
    return qf_add_ok(off, len, &end) && end <= size;
}

/* Allocation helpers that refuse sizes which overflow size_t. */
static inline void *qf_malloc_n(uint64_t n, uint64_t size) {
    uint64_t total;
    if (!qf_mul_ok(n, size, &total) || total > (uint64_t)SIZE_MAX) return NULL;
    return malloc(total ? (size_t)total : 1);
}
static inline void *qf_calloc_n(uint64_t n, uint64_t size) {
    if (n && size && (n > SIZE_MAX / size)) return NULL;
    return calloc(n ? (size_t)n : 1, size ? (size_t)size : 1);
}
static inline char *qf_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = '\0'; }
    return d;
}

#define QF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QF_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
