/*
 * plan.h — what every output tensor becomes, decided before a byte of tensor data is read.
 *
 * A plan is a list of entries in output order (= source storage order, so sequential sources stream),
 * each naming its GGUF tensor, its source tensor (or a generated one), the stored type and why that
 * type was chosen. Recipes, --tensor-type overrides and (later) a size-targeting solver all fill the
 * same object; the executor (run.h) only follows it. --dry-run prints it (convert/plan_report.c).
 */
#ifndef QF_PLAN_H
#define QF_PLAN_H

#include "formats/arch.h"
#include "formats/hessian.h"
#include "formats/imatrix.h"
#include "formats/source.h"
#include "quantize/recipe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef enum qf_gen {
    QF_GEN_NONE = 0,     /* data comes from the source through the entry's tensor spec */
    QF_GEN_ROPE_LLAMA3,  /* rope_freqs.weight computed from the hyper-parameters */
} qf_gen;

/* The calibration data a tensor is quantized with (qf_plan_bind_calibration decides; the executor follows). */
typedef enum qf_calib {
    QF_CALIB_NONE = 0,  /* not quantized (F32/F16/BF16 storage, FP8 passed through): nothing to calibrate */
    QF_CALIB_RTN,       /* quantized without statistics (the type's plain error or magnitude weights) */
    QF_CALIB_WEIGHTED,  /* importance-weighted by its imatrix entry */
    QF_CALIB_GPTQ,      /* GPTQ error feedback with the Hessian of its input */
} qf_calib;

typedef struct qf_plan_entry {
    char name[96];        /* GGUF tensor name */
    const qf_tensor_spec *spec; /* where the rows come from (qf_plan.map), NULL for generated tensors */
    qf_gen gen;
    qf_role role;
    int layer;            /* block index or -1 */
    int ffn_down_index;   /* among the ffn_down tensors in llama.cpp's order (qf_recipe_query), or -1 */
    uint32_t n_dims;
    uint64_t ne[4];       /* GGUF order: ne[0] = row length */
    uint64_t n_rows;      /* product of ne[1..] */
    uint32_t type;        /* stored type id (kernels/qtypes.h) */
    uint64_t nbytes;
    char reason[160];      /* why this type: recipe rule, override, fallback, policy */
    int override;          /* index of the --tensor-type override that decided the type, or -1 */
    bool fp8_pass;         /* FP8 pass-through: the source's E4M3 codes and scales are written unchanged
                              (the type has e4m3_groups and every group of an output row has one source
                              scale); the executor never decodes, re-encodes, clamps or calibrates them */
    bool raw_pass;         /* stored-bytes pass-through: the type is F32/F16/BF16 and every source is that
                              type, unscaled (qf_src_plain_type), so the output's bytes are the source's
                              moved by the tensor's row map (decoding and re-encoding would give the same
                              bytes); the executor copies them and checks them for NaN and Inf */
    uint64_t clamped;      /* clamp mode: values beyond the type's range that the run clamps (surveyed) */
    qf_calib calib;        /* what it is quantized with; imx / hess point at the data (borrowed) */
    const qf_imatrix_entry *imx;
    const qf_hessian *hess;
    double predicted_kld;  /* the solver's predicted cost of this tensor's type (quantize/solve.h); NAN
                              where no solver chose it */
} qf_plan_entry;

typedef struct qf_plan {
    qf_plan_entry *e;
    size_t n;
    qf_tensor_map map;    /* the model's tensors and their sources (formats/arch.h) */
    uint64_t total_bytes;
    uint64_t total_params;
    uint32_t weight_type; /* the type asked for the bulk of weights (general.file_type) */
    int recipe_file_type; /* the recipe's llama.cpp file type, 0 = weight_type's */
    qf_expert_rule experts; /* how the imatrix weights routed experts that saw few tokens (the caller's) */
} qf_plan;

/* --tensor-type REGEX=TYPE: a PCRE2 regex (Perl syntax, as llama-quantize's std::regex ECMAScript
 * patterns: \d, \w, (a|b), ...) searched anywhere in the GGUF tensor name; first match wins and beats the
 * recipe. */
typedef struct qf_type_override {
    const char *spec;     /* the user's text, for reasons and provenance */
    pcre2_code *re;
    pcre2_match_data *md;
    uint32_t type;
} qf_type_override;

typedef struct qf_plan_opts {
    uint32_t type;        /* uniform type for 2-D weights when recipe is NULL */
    const qf_recipe *recipe;
    const qf_type_override *overrides;
    size_t n_overrides;
    bool calibrated;      /* an imatrix or Hessian will be bound: llama.cpp's i-quant mixes choose otherwise
                             without one */
} qf_plan_opts;

/* Parse "REGEX=TYPE" (the last '=' separates). Free with qf_type_override_free. */
qf_status qf_type_override_parse(const char *spec, qf_type_override *o, qf_error *err);
void qf_type_override_free(qf_type_override *o);

/* Build the plan for a source whose hyper-parameters are `hp`: the model's tensors (qf_tensor_map_hf
 * or _gguf: every tensor the architecture needs, with the shape the hyper-parameters imply; errors
 * name the tensor), each with its stored type and the reason for it. */
qf_status qf_plan_build(qf_source *src, const qf_hparams *hp, const qf_plan_opts *opts, qf_plan *plan, qf_error *err);
void qf_plan_free(qf_plan *plan);
/* Store entry e as `type` instead (the solver's choice), with `why` as its reason: the size, the totals
 * and FP8 pass-through follow. QF_E_INPUT when its rows do not hold whole blocks of the type. */
qf_status qf_plan_set_type(qf_source *src, qf_plan *plan, qf_plan_entry *e, uint32_t type, const char *why,
                           qf_error *err);
/* llama.cpp's general.file_type for the plan (LLAMA_FTYPE_* of its bulk type), or -1 when it has none
 * or the plan holds a type llama.cpp cannot load. */
int qf_plan_file_type(const qf_plan *plan);

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
