/*
 * report.h — how qforge shows text that came from a file, and the envelope of its JSON reports.
 *
 * Text: metadata strings, tensor names and keys come from files a user may not trust, and a terminal
 * acts on some bytes (ESC starts a control sequence, C1 controls and bidi overrides reorder or hide what
 * is shown). Everything qforge prints that did not come from qforge itself goes through qf_text_escape,
 * one definition for the whole CLI:
 *   - printable ASCII and valid UTF-8 are kept;
 *   - \n \t \r as those two-character escapes, other C0 controls and DEL as \xNN;
 *   - C1 controls (U+0080..U+009F), bidi and invisible format controls (U+061C, U+200B..U+200F,
 *     U+2028..U+202E, U+2060..U+2069, U+FEFF) as \u{XXXX};
 *   - bytes that are not well-formed UTF-8 (stray continuation bytes, overlong forms, surrogates, values
 *     past U+10FFFF, truncated sequences) as \xNN, one per byte;
 *   - QF_TEXT_QUOTED also escapes \ and " so that a quoted value reads back unambiguously.
 * QF_TEXT_JSON keeps controls (the JSON writer escapes C0 itself) and replaces only bytes that are not
 * UTF-8, so every report is valid JSON.
 *
 * Reports: every JSON object qforge prints carries "schema" ("qforge.<kind>/<version>", bumped when a
 * key changes meaning or disappears; new keys do not bump it), "qforge_version", and "inputs": per input
 * role its path and digests (sha256 of a file's bytes; source_sha256, the checkpoint identity qforge
 * writes as qforge.source_sha256, for model inputs).
 */
#ifndef QF_REPORT_H
#define QF_REPORT_H

#include "qf_core.h"
#include "qforge.h"

#include <cjson/cJSON.h>
#include <stdio.h>

enum { QF_TEXT_TERMINAL = 0, QF_TEXT_QUOTED = 1, QF_TEXT_JSON = 2 };

/* snprintf-like: writes at most cap-1 bytes and a NUL (cap > 0), returns the escaped length. */
size_t qf_text_escape(const char *s, size_t len, unsigned flags, char *out, size_t cap);
/* The escaped form of a NUL-terminated string, malloc'd; NULL when out of memory. */
char *qf_text_escaped(const char *s, unsigned flags);
/* Write the escaped form of s[0..len) to f. */
void qf_text_put(FILE *f, const char *s, size_t len, unsigned flags);

/* JSON values from file text: a string made valid UTF-8 (QF_TEXT_JSON); keys too. */
cJSON *qf_json_text(const char *s);
void qf_json_add_text(cJSON *obj, const char *key, const char *s);
void qf_json_add_item(cJSON *obj, const char *key, cJSON *item);

/* {"schema": schema, "qforge_version": ..., "inputs": {}}; NULL when out of memory. */
cJSON *qf_report_new(const char *schema);
/* inputs[role] = {"path", "sha256"}: a file's bytes (text, imatrix, a file being checked). */
qf_status qf_report_add_file(cJSON *report, const char *role, const char *path, qf_error *err);
/* inputs[role] = {"path", "source_sha256"[, "sha256"]}: a model, with the file's SHA-256 when the caller
 * took it (file_sha256 non-empty: perplexity and verify take it as they read the file). */
qf_status qf_report_add_model(cJSON *report, const char *role, const char *path, const char *file_sha256,
                              qf_error *err);
/* inputs[role] = {"path", "source_sha256": hex}: a model whose identity the caller already computed. */
void qf_report_add_model_digest(cJSON *report, const char *role, const char *path, const char *source_sha256);
/* Print the report (indented) and a newline to f, then free it. False when out of memory or on a write
 * error. */
bool qf_report_print(cJSON *report, FILE *f);

/* The --dry-run plan: a table on `out` (names and reasons escaped), or a report (schema qforge.plan/1:
 * every tensor's name, source tensor, shape, ne, type, bytes, reason, and totals); NULL when out of
 * memory. */
struct qf_plan;
struct qf_source;
void qf_plan_print_text(const struct qf_plan *plan, FILE *out);
cJSON *qf_plan_report(const struct qf_source *src, const struct qf_plan *plan, const char *source_sha256);

/* Routed-expert coverage of an imatrix (formats/imatrix.h): one line of totals and one per MoE layer
 * (experts under the floor with their token counts, the fewest and the median) and, when rule is
 * given, how quantize weights those experts; or a JSON object
 * {min_tokens, policy, experts, under, layers: [{layer, experts, under: [ids], tokens: [per expert]}]}. */
struct qf_expert_coverage;
struct qf_expert_rule;
void qf_expert_coverage_print(const struct qf_expert_coverage *cov, const struct qf_expert_rule *rule, FILE *out);
cJSON *qf_expert_coverage_json(const struct qf_expert_coverage *cov, const struct qf_expert_rule *rule);

#endif
