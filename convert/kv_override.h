/*
 * kv_override.h — llama-quantize's --override-kv KEY=TYPE:VALUE, parsed before any work starts and
 * applied after every other key is set (so the user's value wins).
 *
 * TYPE is int, float, bool (true|false) or str, as in llama.cpp's string_parse_kv_override. Written
 * types: int as u32 (llama-quantize writes every int override as u32), or as the key's own integer type
 * when a GGUF source has the key; float as f32 (f64 if the source has it so); a value out of the
 * written type's range is refused rather than wrapped. A key the GGUF source holds with another kind of
 * value (a string given for an integer key, ...) is refused: llama.cpp checks key types when it loads.
 * qforge.* keys (provenance and integrity digests) cannot be overridden.
 */
#ifndef QF_KV_OVERRIDE_H
#define QF_KV_OVERRIDE_H

#include "formats/gguf.h"

typedef struct qf_kv_override {
    const char *spec;
    char key[256];
    qf_gguf_kv kv;  /* key points into `key`; strings into spec */
} qf_kv_override;

/* Parse spec; `source` (may be NULL) is a GGUF source whose existing keys fix the written type. */
qf_status qf_kv_override_parse(const char *spec, const qf_gguf *source, qf_kv_override *o, qf_error *err);
qf_status qf_kv_override_apply(const qf_kv_override *o, qf_gguf_writer *w, qf_error *err);

#endif
