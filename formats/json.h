/*
 * json.h — the one way qforge parses JSON that comes with a model (config.json, tokenizer*.json,
 * safetensors headers, shard indexes, signature files).
 *
 * Stricter than cJSON, so that qforge reads a file the way the tools that wrote and will read it do
 * (Python's json, serde_json) or refuses it, never silently differently:
 *   - a byte-order mark before the value is refused (cJSON skips it; Python's json.loads refuses it);
 *   - a key that appears twice in one object is refused (cJSON keeps the first, Python the last: a
 *     duplicate rope_theta would silently differ between qforge and transformers);
 *   - \u0000 in a string is refused (a C string would end there: "weight\u0000evil" would read as
 *     "weight"), and so are raw control characters inside strings (JSON forbids them; Python refuses);
 *   - anything but whitespace after the value is refused.
 * Memory is bounded before parsing: at most QF_JSON_MAX_BYTES of text and QF_JSON_MAX_VALUES values
 * (cJSON spends ~40 bytes per value plus its strings, so the tree stays below about 400 MiB whatever
 * the file holds). Messages are one line naming the file (`label`) and the key.
 */
#ifndef QF_JSON_H
#define QF_JSON_H

#include "qf_core.h"

#include <cjson/cJSON.h>

#define QF_JSON_MAX_BYTES (100u << 20) /* the safetensors header limit; real tokenizer.json files reach ~35 MB */
#define QF_JSON_MAX_VALUES (4u << 20)  /* a 262k-token vocabulary with its merges is ~2M values */

/* Parse len bytes of text. QF_E_INPUT for anything above (message names label and the key or byte),
 * QF_E_NOMEM when memory ran out while building the tree. *out is freed with cJSON_Delete. */
qf_status qf_json_parse(const char *label, const char *text, size_t len, cJSON **out, qf_error *err);
/* The same for files whose top level must be an object (config.json, the tokenizer files):
 * "<label>: top level is not a JSON object (it is an array)" otherwise. */
qf_status qf_json_parse_object(const char *label, const char *text, size_t len, cJSON **out, qf_error *err);

#endif
