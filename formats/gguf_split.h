/*
 * gguf_split.h — llama.cpp's split GGUF layout (tools/gguf-split, llama_split_path, the model loader's
 * split handling): one model in files PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf. The
 * first part holds all metadata; every part holds its share of the tensors (whole tensors, in model
 * order) and three keys: split.no (u16, 0-based), split.count (u16) and split.tensors.count (i32, the
 * tensors of the whole set). llama.cpp is given the first part and finds the others by name.
 *
 * qforge adds qforge.split.set_sha256 to every part it writes: the identity of the set, a digest of
 * what every part can know before any tensor is computed (the first part's metadata and every part's
 * tensor table; docs/integrity.md), so a part can be written alone (--only-split) and parts of
 * different sets are never mixed. The pure rules live here; gguf.c writes and assembles sets.
 */
#ifndef QF_GGUF_SPLIT_H
#define QF_GGUF_SPLIT_H

#include "qf_core.h"

#define QF_SPLIT_KEY_NO "split.no"
#define QF_SPLIT_KEY_COUNT "split.count"
#define QF_SPLIT_KEY_TENSORS "split.tensors.count"
#define QF_SPLIT_KEY_SET "qforge.split.set_sha256"
#define QF_SPLIT_MAX_PARTS 65535u   /* split.count is a u16 in llama.cpp */
#define QF_SPLIT_ALIGNMENT 32u      /* gguf-split sizes parts by tensor bytes padded to GGUF's default */

/* How to cut a model into parts; both 0 = one file. At most one of the two is set (as gguf-split). */
typedef struct qf_split_opts {
    uint64_t max_bytes;   /* --split-max-size: tensor bytes per part (metadata not counted) */
    uint32_t max_tensors; /* --split-max-tensors */
} qf_split_opts;

/* A size as gguf-split spells it: a positive integer and M (10^6 bytes) or G (10^9). */
qf_status qf_split_parse_size(const char *s, uint64_t *bytes, qf_error *err);

/* The part each of n tensors (nbytes[i] each, in model order) goes to, as gguf-split decides: a new part
 * starts when the next tensor would take the current one's padded tensor bytes past max_bytes, or every
 * max_tensors tensors. A tensor is never cut, so a part holds at least one tensor and one larger than
 * max_bytes gets a part of its own. part_of[n]; *n_parts >= 1. QF_E_USAGE when it takes more than
 * QF_SPLIT_MAX_PARTS parts. */
qf_status qf_split_layout(const uint64_t *nbytes, size_t n, const qf_split_opts *o, uint32_t *part_of,
                          uint32_t *n_parts, qf_error *err);

/* The prefix of part names for an output path: the path without a trailing ".gguf". */
size_t qf_split_prefix_len(const char *out);
/* PREFIX-%05u-of-%05u.gguf for part k (0-based) of n, PREFIX the first prefix_len bytes of `prefix`
 * (malloc'd; NULL when out of memory). */
char *qf_split_part_path(const char *prefix, size_t prefix_len, uint32_t k, uint32_t n);
/* Whether path ends in -NNNNN-of-MMMMM.gguf (five digits each, as llama.cpp writes them): then the
 * prefix's length, the part (0-based) and the count the name says. */
bool qf_split_parse_name(const char *path, size_t *prefix_len, uint32_t *k, uint32_t *n);

/* The records of the first part that the set identity leaves out: split.no (it differs per part),
 * qforge.split.set_sha256 itself and the integrity digests of the file (formats/digest.h). */
bool qf_split_set_skips_key(const char *key);
/* The canonical record of one tensor in the set identity: u64 name length | name | u32 n_dims |
 * n_dims x u64 ne | u32 type. buf holds QF_SPLIT_TENSOR_RECORD_MAX bytes; returns the length. */
#define QF_SPLIT_TENSOR_RECORD_MAX (8 + 64 + 4 + 4 * 8 + 4)
size_t qf_split_tensor_record(const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint8_t *buf);

#endif
