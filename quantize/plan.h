/*
 * plan.h — what every output tensor becomes, decided before a byte of tensor data is read.
 *
 * A plan is a list of entries in output order (= source storage order, so sequential sources stream),
 * each naming its GGUF tensor, its source tensor (or a generated one), the stored type and why that
 * type was chosen. Recipes, --tensor-type overrides and (later) a size-targeting solver all fill the
 * same object; the executor (run.h) only follows it. --dry-run prints it.
 */
#ifndef QF_PLAN_H
#define QF_PLAN_H

#include "formats/arch.h"
#include "formats/hessian.h"
#include "formats/imatrix.h"
#include "formats/source.h"
#include "quantize/recipe.h"

#include <regex.h>

typedef enum qf_gen {
    QF_GEN_NONE = 0,     /* data comes from the source tensor */
    QF_GEN_ROPE_LLAMA3,  /* rope_freqs.weight computed from the hyper-parameters */
} qf_gen;

/* The calibration data a tensor is quantized with (qf_plan_bind_calibration decides; the executor follows). */
typedef enum qf_calib {
    QF_CALIB_NONE = 0,  /* not quantized (F32/F16/BF16 storage): nothing to calibrate */
    QF_CALIB_RTN,       /* quantized without statistics (the type's plain error or magnitude weights) */
    QF_CALIB_WEIGHTED,  /* importance-weighted by its imatrix entry */
    QF_CALIB_GPTQ,      /* GPTQ error feedback with the Hessian of its input */
} qf_calib;

typedef struct qf_plan_entry {
    char name[96];        /* GGUF tensor name */
    long src;             /* source tensor index, -1 for generated tensors */
    qf_gen gen;
    qf_role role;
    int layer;            /* block index or -1 */
    uint32_t n_dims;
    uint64_t ne[4];       /* GGUF order: ne[0] = row length */
    uint64_t n_rows;      /* product of ne[1..] */
    uint32_t type;        /* stored type id (kernels/qtypes.h) */
    uint64_t nbytes;
    uint32_t permute_heads; /* >0: reorder rows rotate-half -> interleaved with this many heads */
    char reason[160];      /* why this type: recipe rule, override, fallback, policy */
    uint64_t clamped;      /* clamp mode: values beyond the type's range that the run clamps (surveyed) */
    qf_calib calib;        /* what it is quantized with; imx / hess point at the data (borrowed) */
    const qf_imatrix_entry *imx;
    const qf_hessian *hess;
} qf_plan_entry;

typedef struct qf_plan {
    qf_plan_entry *e;
    size_t n;
    uint64_t total_bytes;
    uint64_t total_params;
    uint32_t weight_type; /* the type asked for the bulk of weights (general.file_type) */
} qf_plan;

/* --tensor-type REGEX=TYPE: POSIX extended regex searched in the GGUF tensor name; first match wins
 * and beats the recipe. */
typedef struct qf_type_override {
    const char *spec;     /* the user's text, for reasons and provenance */
    regex_t re;
    uint32_t type;
} qf_type_override;

typedef struct qf_plan_opts {
    uint32_t type;        /* uniform type for 2-D weights when recipe is NULL */
    const qf_recipe *recipe;
    const qf_type_override *overrides;
    size_t n_overrides;
} qf_plan_opts;

/* Parse "REGEX=TYPE" (the last '=' separates). Free with qf_type_override_free. */
qf_status qf_type_override_parse(const char *spec, qf_type_override *o, qf_error *err);
void qf_type_override_free(qf_type_override *o);

/* Build the plan for a source whose hyper-parameters are `hp`. Checks that every tensor the
 * architecture needs is present with the shape config.json implies; errors name the tensor. */
qf_status qf_plan_build(qf_source *src, const qf_hparams *hp, const qf_plan_opts *opts, qf_plan *plan, qf_error *err);
void qf_plan_free(qf_plan *plan);
/* Human-readable table (tensor, shape, type, bytes, reason) and totals. */
void qf_plan_print(const qf_plan *plan, FILE *out);
/* llama.cpp's general.file_type for a bulk weight type (LLAMA_FTYPE_*), or -1 if it has none. */
int qf_plan_file_type(uint32_t type);

/* How far calibration data reached, in tensors: quantized by the plan; of those, inside layers (what
 * calibration observes: token embeddings are a lookup, llama-imatrix skips the output) and with an
 * imatrix entry; with an imatrix entry anywhere; GPTQ-able (2-D layer weights of a block type) and
 * bound to a Hessian. */
typedef struct qf_calib_coverage {
    size_t quantized, layer_quantized, imatrix_layer, imatrix_any, gptq_able, gptq;
} qf_calib_coverage;

/* Decide every entry's calibration: GPTQ where `hs` has a Hessian for its input, else importance
 * weights where `im` has its entry, else none (im / hs NULL: not used). An entry or a Hessian of the
 * wrong shape, or an imatrix / Hessian set (labels im_label / hs_label, for messages) that matches
 * nothing the plan quantizes, is QF_E_INPUT: such data was made for another model. Partial coverage is
 * not an error; *cov says how much. */
qf_status qf_plan_bind_calibration(qf_plan *plan, const qf_imatrix *im, const char *im_label, const qf_hessian_set *hs,
                                   const char *hs_label, qf_calib_coverage *cov, qf_error *err);
/* What each tensor class used, one line per class in plan order, e.g. "attn_q: gptq 2",
 * "ffn_down: gptq 1, weighted 1", "token_embd: rtn 1"; classes with nothing quantized are left out.
 * lines and their strings are malloc'd: free with qf_plan_methods_free. */
qf_status qf_plan_methods(const qf_plan *plan, char ***lines, size_t *n, qf_error *err);
void qf_plan_methods_free(char **lines, size_t n);

#endif
