/*
 * baselogits.h — a base model's next-token distributions over a text, kept compactly so that verify can
 * gate any number of candidates against one base pass (`qforge verify --save-base F`, then
 * `--base-logits F`; llama.cpp's --kl-divergence-base idea, without storing every logit).
 *
 * Per scored token: the K most likely tokens with their log-probabilities, the probability mass of all
 * others (the tail), and -log p(next token). KL(base || model) is then computed over the K tokens plus
 * the tail as one outcome (verify/score.h): a lower bound of the full-softmax KL, exact when the model's
 * tail is proportional to the base's.
 *
 * A mixture-of-experts base also keeps, per scored token, the experts it routed the token to in every
 * MoE layer, so that verify --base-logits reports routing agreement as verify --base does.
 *
 * Layout (little-endian, no padding), version 2 (version 1, read still: no route fields, label_len at
 * offset 180, records without routes):
 *   0    char[8]  magic "QFBLOGIT"
 *   8    u32      version (2)
 *   12   u32      k          tokens kept per position, 1 .. min(n_vocab, 4096)
 *   16   u32      n_vocab    logits per position
 *   20   u32      ctx        tokens per chunk, 4 .. 2^20
 *   24   u32      n_chunks   chunks scored, >= 1
 *   28   u32      first      first scored position of a chunk (ctx / 2)
 *   32   u32      flags      bit 0: text read literally (--no-escape), bit 1: --act q8, bit 2: BOS added;
 *                            other bits 0
 *   36   u64      n_tokens   tokens of the whole text (>= n_chunks * ctx)
 *   44   u64      n_scored   n_chunks * (ctx - 1 - first)
 *   52   u8[32]   base       SHA-256 identifying the base model (verify/eval.c: model_identity)
 *   84   u8[32]   vocab      SHA-256 of the vocabulary (token count, then every token's text and a NUL)
 *   116  u8[32]   text       SHA-256 of the text file's bytes
 *   148  u8[32]   tokens     SHA-256 of the token stream (int32 each) the chunks were cut from
 *   180  u32      route_layers  MoE layers whose routes the records carry, 0 .. 1024 (0: a dense base)
 *   184  u32      route_k    experts per token, 1 .. min(n_expert, 256); 0 when route_layers is 0
 *   188  u32      n_expert   experts per layer, route_k .. 65536; 0 when route_layers is 0
 *   192  u32      label_len  bytes of the label, <= 4096
 *   196  label    the base model as given on the command line (for messages), no NUL inside
 *   then u32 layer[route_layers]: the MoE layers' numbers, ascending
 *   then n_scored records of 8 + 8k + 2 route_layers route_k bytes: f32 nll (-log p(next token), >= 0),
 *        f32 tail (mass outside the K, in [0, 1]), u32 id[k] (distinct, < n_vocab), f32 logp[k] (<= 0,
 *        non-increasing), u16 expert[route_layers][route_k] (per layer distinct, < n_expert, in the order
 *        of selection)
 *   then u8[32] SHA-256 of every byte before it.
 * The file size must be exactly what the header implies; the mass of the K plus the tail must be 1
 * within 1e-3 per record.
 */
#ifndef QF_BASELOGITS_H
#define QF_BASELOGITS_H

#include "qf_core.h"

#define QF_BASELOGITS_MAX_K 4096
#define QF_BASELOGITS_MAX_LABEL 4096
#define QF_BASELOGITS_MAX_ROUTE_LAYERS 1024
#define QF_BASELOGITS_MAX_ROUTE_K 256
#define QF_BASELOGITS_FLAG_NO_ESCAPE 1u
#define QF_BASELOGITS_FLAG_ACT_Q8 2u
#define QF_BASELOGITS_FLAG_BOS 4u

typedef struct qf_baselogits_header {
    uint32_t k, n_vocab, ctx, n_chunks, first, flags;
    uint64_t n_tokens, n_scored;
    uint8_t base[32], vocab[32], text[32], tokens[32];
    char label[QF_BASELOGITS_MAX_LABEL + 1]; /* NUL-terminated */
    uint32_t version;                        /* as read (1 or 2); the writer writes 2 */
    uint32_t route_layers, route_k, n_expert;
    uint32_t route_layer[QF_BASELOGITS_MAX_ROUTE_LAYERS];
} qf_baselogits_header;

/* One scored position, as stored (pointers into the file's bytes; ids/logp may be unaligned). */
typedef struct qf_baselogits_rec {
    float nll, tail;
    const uint8_t *ids, *logp; /* k little-endian u32 / f32 each */
    const uint8_t *experts;    /* route_layers * route_k little-endian u16 */
} qf_baselogits_rec;

typedef struct qf_baselogits {
    qf_baselogits_header h;
    uint8_t *bytes;        /* the whole file (owned when loaded from a path) */
    uint64_t size;
    bool owned;
    uint64_t rec_bytes;    /* 8 + 8k + 2 route_layers route_k */
    uint64_t rec_off;      /* offset of the first record */
} qf_baselogits;

/* Parse and validate a whole file held in memory (borrowed; must outlive *out). Errors name `label`. */
qf_status qf_baselogits_parse(const char *label, const uint8_t *bytes, uint64_t size, qf_baselogits *out, qf_error *err);
/* Read and parse a file (a regular file whose size the header justifies). */
qf_status qf_baselogits_load(const char *path, qf_baselogits *out, qf_error *err);
void qf_baselogits_free(qf_baselogits *b);
/* Record i (< n_scored) of a parsed file. */
qf_baselogits_rec qf_baselogits_at(const qf_baselogits *b, uint64_t i);
static inline uint32_t qf_baselogits_id(const qf_baselogits_rec *r, uint32_t j) {
    const uint8_t *p = r->ids + 4 * (size_t)j;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline float qf_baselogits_logp(const qf_baselogits_rec *r, uint32_t j) {
    const uint8_t *p = r->logp + 4 * (size_t)j;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Entry i (layer i / route_k, its (i % route_k)-th expert) of a record's routes. */
static inline uint16_t qf_baselogits_expert(const qf_baselogits_rec *r, uint32_t i) {
    const uint8_t *p = r->experts + 2 * (size_t)i;
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Streaming writer: records are appended in scored order; the file appears atomically at finish, which
 * checks that exactly h->n_scored records came. */
typedef struct qf_baselogits_writer qf_baselogits_writer;
qf_status qf_baselogits_writer_open(const char *path, const qf_baselogits_header *h, qf_baselogits_writer **out,
                                    qf_error *err);
/* Append one record: ids[k], logp[k], experts[route_layers * route_k] (NULL without routes), as they will
 * be stored. */
qf_status qf_baselogits_write(qf_baselogits_writer *w, float nll, float tail, const uint32_t *ids, const float *logp,
                              const uint16_t *experts, qf_error *err);
qf_status qf_baselogits_writer_finish(qf_baselogits_writer *w, qf_error *err); /* frees w */
void qf_baselogits_writer_abort(qf_baselogits_writer *w);                      /* frees w, no file */

#endif
