/*
 * qforge.h — the public API of libqforge.
 *
 * The qforge binary (convert/) is a thin front end over exactly this header: it parses arguments,
 * calls one operation, prints the error record and maps the status to an exit code.
 *
 * Ownership: every operation takes caller-owned option structs and a caller-owned qf_error; nothing
 * returned here needs freeing unless a *_free function says so.
 */
#ifndef QFORGE_H
#define QFORGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QF_VERSION_STRING "0.1.0"

/* Status codes. Values are pinned: scripts and tests may rely on them. */
typedef enum qf_status {
    QF_OK            = 0,
    QF_E_INPUT       = 1, /* malformed input file or data (names the file/tensor/key) */
    QF_E_IO          = 2, /* the OS refused a read, write, mmap, fsync or rename */
    QF_E_NOMEM       = 3, /* an allocation failed */
    QF_E_USAGE       = 4, /* bad option or argument */
    QF_E_UNSUPPORTED = 5, /* well-formed input that qforge does not handle (architecture, dtype) */
    QF_E_NOTFOUND    = 6, /* a named file, key or tensor is absent (often not an error to callers) */
    QF_E_CHECK       = 7, /* a verification threshold or integrity check failed */
    QF_E_INTERRUPTED = 8, /* a signal asked us to stop; outputs were removed */
    QF_E_INTERNAL    = 9, /* a bug in qforge */
} qf_status;

/* Caller-owned error record. The message is one line that names what was needed and what was found. */
typedef struct qf_error {
    qf_status status;
    char msg[768];
} qf_error;

const char *qf_status_name(qf_status st);

/* Exit code the CLI uses for a status: 0 ok, 1 check failed, 2 bad input/usage, 3 environment/IO. */
int qf_status_exit_code(qf_status st);

/* ---- convert / quantize -------------------------------------------------------------------------- */

/* Progress callback: called from the thread driving the run; done/total in bytes of output data. */
typedef void (*qf_progress_fn)(void *user, const char *tensor, uint64_t done, uint64_t total);
/* Warning callback: one line, no newline; the text may quote file contents (escape before printing). */
typedef void (*qf_warn_fn)(void *user, const char *msg);

typedef struct qf_convert_opts {
    const char *src;        /* HF directory, *.safetensors, model.safetensors.index.json, or archive */
    const char *out;        /* output GGUF path (written atomically) */
    const char *type;       /* uniform type for 2-D weights: "f32", "f16", "bf16", "q8_0", "q4_K", ... */
    const char *recipe;     /* named mix (qf_recipe_name); when set, `type` is ignored */
    const char *const *tensor_types; /* "REGEX=TYPE" overrides, first match wins, beat the recipe */
    size_t n_tensor_types;
    const char *imatrix;    /* llama.cpp-format GGUF importance matrix, or NULL */
    const char *method;     /* "rtn", "weighted" or "gptq"; NULL = weighted with an imatrix, else rtn */
    const char *hessian;    /* GPTQ Hessians (qforge calibrate --hessian); required by method "gptq" */
    double gptq_damp;       /* fraction of mean diag(H) added before inversion; 0 = 0.01 */
    bool gptq_block_order;  /* process blocks by descending input energy instead of left to right */
    int threads;            /* 0 = all online CPUs */
    bool dry_run;           /* print the plan, write nothing */
    bool json;              /* with dry_run: the plan as one JSON object on stdout (schema qforge.plan/1) */
    bool allow_requantize;  /* accept a GGUF source whose tensors are already quantized (llama-quantize's
                               --allow-requantize): each is dequantized and quantized again, which adds
                               the second rounding error to the first */
    bool strict;            /* a --tensor-type override that decides no tensor is an error, not a warning */
    const char *name;       /* general.name of the output; NULL = from the source (directory name; NAME of
                               an HF cache's models--ORG--NAME; a GGUF source's own) */
    const char *const *override_kv; /* "KEY=TYPE:VALUE" as llama-quantize --override-kv: TYPE int (u32, or
                               the key's integer type in a GGUF source), float (f32), bool, str */
    size_t n_override_kv;
    uint32_t expert_min_tokens; /* routed experts the imatrix gives fewer tokens are "under-covered"
                               (reported, and weighted as sparse_experts says); 0 = QF_EXPERT_MIN_TOKENS */
    const char *sparse_experts; /* "blend" (default), "pooled" or "own": formats/imatrix.h */
    bool clamp_overflow;    /* values beyond a type's range (the F16 scales of q8_0, f16 itself, ...) are
                               clamped into it, recorded in qforge.clamped and warned about on stderr;
                               default: such a tensor is refused (QF_E_INPUT naming it and what holds it) */
    /* Split output in llama.cpp's layout (llama-gguf-split): `out` names the set, whose parts are
     * OUT-00001-of-0000N.gguf ... (OUT without ".gguf"); at most one of the two limits. */
    uint64_t split_max_bytes;   /* tensor bytes per part (gguf-split's --split-max-size); 0 = no limit */
    uint32_t split_max_tensors; /* tensors per part (--split-max-tensors); 0 = no limit */
    uint32_t only_split;        /* 1-based: write this part alone, byte-identical to the whole run's; 0 = all */
    uint32_t *split_parts;      /* when not NULL, set to the number of parts of a split output */
    /* An automatic mix (quantize/solve.h): every tensor's type chosen from a sensitivity table
     * (qf_measure_model) to meet the targets given, instead of a type; with `recipe` the budget is the
     * recipe's tensor bytes (its size, measured allocation) and no size target may be given. */
    const char *sensitivity;    /* the table (qforge.sensitivity/1) */
    uint64_t target_size;       /* the output file's bytes at most; 0 = none */
    double target_bpw;          /* bits per weight over all tensors at most; 0 = none */
    double max_kld;             /* predicted mean KLD at most; 0 = none */
    bool allow_extension_types; /* the solver may choose types llama.cpp cannot load */
    double *predicted_kld;      /* when not NULL, set to the solved mix's predicted KLD (NAN without one) */
    double *recipe_kld;         /* when not NULL, set to the table's prediction for the recipe's own types
                                 * (NAN: no recipe, or a type of it the table has no candidate for) */
    qf_progress_fn progress;
    void *progress_user;
    qf_warn_fn warn;        /* NULL = "qforge: warning: MSG" on stderr */
    void *warn_user;
} qf_convert_opts;

/* Convert a checkpoint to GGUF, quantizing as the type/recipe/overrides say (qforge convert and
 * qforge quantize are both this call). */
qf_status qf_convert(const qf_convert_opts *opts, qf_error *err);

/* The i-th named recipe and its one-line summary; NULL past the end. */
const char *qf_recipe_name(size_t i, const char **summary);
/* The i-th type name this build can write (for --help); NULL past the end. */
const char *qf_writable_type_name(size_t i);

/* ---- inspect ------------------------------------------------------------------------------------- */

typedef struct qf_inspect_opts {
    const char *path;  /* GGUF file, safetensors file/dir/index, or archive */
    bool json;         /* machine-readable output */
    bool no_values;    /* omit long metadata arrays (vocabulary) from text output */
} qf_inspect_opts;

/* Print a description of a model file to `out` (a FILE*, typed void* to keep stdio out of the API). */
qf_status qf_inspect(const qf_inspect_opts *opts, void *out, qf_error *err);

/* ---- synth: the built-in default model ---------------------------------------------------------- */

typedef struct qf_synth_opts {
    const char *dir;        /* created if missing; must not hold a model already (synth never replaces one) */
    uint64_t seed;
    uint32_t n_layer, n_embd, n_ff, n_vocab;
    const char *dtype;      /* "f32", "f16" or "bf16" */
    const char *arch;       /* NULL/"llama", "mistral", "qwen2" (q/k/v biases), "qwen3" (q/k norms),
                               "mixtral", "qwen2moe", "qwen3moe", "deepseek-v2", "deepseek-v3" */
    bool tied;              /* tie_word_embeddings: no lm_head.weight */
    uint32_t n_expert, n_expert_used; /* MoE families; 0 = 16 and 2 */
    uint32_t n_ff_exp;      /* expert FFN width; 0 = n_ff / 2 */
    bool fp8;               /* DeepSeek-V3's released layout: linear weights F8_E4M3 with one F32
                               weight_scale_inv per 128x128 block, quantization_config in config.json */
    uint32_t n_shards;      /* 0/1: model.safetensors; more: model-0000k-of-0000N.safetensors + index */
    uint32_t n_mtp;         /* deepseek-v3: multi-token-prediction layers after the last, as released */
    uint32_t qk_nope_dim, v_head_dim; /* deepseek-v2/v3 head widths; 0 = 32 (kv_b_proj's split, tests) */
    bool v3_geometry;       /* deepseek-v3 at DeepSeek-V3's real widths (hidden 7168, 128 heads, MLA ranks
                               1536/512, heads 128+64/128, FFN 18432, 256 experts of 2048 in 8 groups, 8
                               used, vocab 129280); the layer count and the rest of the options stay yours.
                               ~15.8 GB in FP8 for one dense and one MoE layer: for benchmarks */
} qf_synth_opts;

/* Write a small random checkpoint of one of the supported families in Hugging Face layout: config.json,
 * tokenizer.json (byte-level BPE), tokenizer_config.json, safetensors (one file, or shards with an
 * index). Same options -> same bytes. */
qf_status qf_synth_model(const qf_synth_opts *opts, qf_error *err);

/* ---- perplexity and verify: the reference runtime ----------------------------------------------- */

/* Called after each chunk from the thread driving the run: chunk counts from 1; ppl is the running
 * perplexity of the model (verify: of the model under test) over the chunks so far. */
typedef void (*qf_chunk_fn)(void *user, uint32_t chunk, uint32_t n_chunks, double ppl);

/* Layer-major evaluation (perplexity, verify, calibrate): every token of a group of chunks goes through
 * layer l before layer l+1, so each layer's weights are read once per group and dropped from memory
 * after it (mapped pages released); resident memory is then one layer's weights (per model), the
 * hidden states of the group's tokens and one pass's buffers. Results are the normal mode's. */
typedef struct qf_layer_major_info {
    bool on;                   /* this run goes layer-major */
    bool automatic;            /* because the weights exceed the available memory (not asked for) */
    uint64_t weights_bytes;    /* stored weights of the model(s) */
    uint64_t mem_available;    /* /proc/meminfo MemAvailable (QF_MEM_AVAILABLE overrides); 0 unknown */
    uint64_t limit;            /* bound on the estimate: max_memory, else mem_available (0: none) */
    uint64_t layer_bytes;      /* the largest layer's weights (embedding/output count as one), summed over models */
    uint64_t buffer_bytes;     /* one pass's activations, logits, one layer's KV cache, copies the models hold */
    uint64_t chunk_bytes;      /* hidden state of one chunk, summed over models */
    uint64_t resident_bytes;   /* the estimate: layer + buffers + chunks_per_group * chunk */
    uint32_t n_chunks, chunks_per_group, n_groups;
} qf_layer_major_info;

typedef struct qf_layer_major_opts {
    bool on;                   /* --layer-major (also chosen when the weights exceed MemAvailable) */
    uint64_t max_memory;       /* bytes the estimate must stay within (implies on); 0 = not given */
    void (*on_plan)(void *user, const qf_layer_major_info *info); /* before the run; NULL = none */
    void *user;
} qf_layer_major_opts;

/* Where the forward passes of perplexity, verify and calibrate run. The CPU is the reference; the CUDA
 * backend (a build with QF_CUDA and a device) computes the same F32 products on the GPU. */
typedef enum qf_backend {
    QF_BACKEND_CPU = 0,  /* the default of a zeroed options struct */
    QF_BACKEND_CUDA = 1, /* refused (QF_E_UNSUPPORTED) without a usable device or without the CUDA build */
    QF_BACKEND_AUTO = 2, /* CUDA when usable (and no CPU-only option such as act_q8 is asked for), else CPU */
} qf_backend;

typedef struct qf_backend_opts {
    qf_backend want;
    /* once, when the run's work starts (its inputs checked): the backend taken, and when AUTO did not take
     * CUDA, why (one phrase; "" when it did, or when CPU was asked for); `device` names the GPU for CUDA
     * ("" otherwise). NULL = none */
    void (*on_choice)(void *user, qf_backend got, const char *why, const char *device);
    void *user;
} qf_backend_opts;

/* "auto", "cpu" or "cuda" (as --backend and QF_BACKEND spell them): false for anything else. */
bool qf_backend_parse(const char *s, qf_backend *out);
const char *qf_backend_name(qf_backend b);

/* A size such as 4096, 512K, 64M, 8G, 1T (binary units; a trailing B or iB allowed): false when s is
 * not one or is 0. */
bool qf_parse_size(const char *s, uint64_t *out);

typedef struct qf_perplexity_opts {
    const char *model;      /* GGUF file, or HF checkpoint (directory, .safetensors, shard index, archive) */
    const char *text_path;  /* UTF-8 text, read as llama-perplexity -f reads it (see qf_perplexity) */
    uint32_t ctx;           /* tokens per chunk; 0 = 512 */
    uint32_t chunks;        /* chunks to score; 0 = all that fit */
    uint32_t batch;         /* tokens per forward call; 0 = max(ctx, 1024), fewer where the logits buffer
                               would pass QF_VERIFY_LOGITS_BYTES (results do not depend on it) */
    int threads;            /* 0 = all online CPUs (results do not depend on it) */
    bool no_escape;         /* take the text literally instead of processing \n, \t, \xNN, ... */
    bool act_q8;            /* faster, inexact: activations quantized to 8 bits per 32-block, as llama.cpp
                               does, and integer products with Q8_0/Q4_K/Q6_K weights */
    qf_chunk_fn on_chunk;   /* may be NULL */
    void *user;
    qf_layer_major_opts layer_major;
    bool file_sha256;       /* also the SHA-256 of the model file (a regular file), for a report: read in
                               step with a layer-major run, so that it reads the file once */
    qf_backend_opts backend;
} qf_perplexity_opts;

typedef struct qf_perplexity_result {
    double ppl;             /* exp(mean NLL) over all scored tokens */
    double ppl_err;         /* llama-perplexity's +/- estimate: ppl * stddev(NLL) / sqrt(n_scored - 1) */
    double mean_nll;
    uint32_t ctx, n_chunks;
    uint64_t n_tokens;      /* tokens in the whole text, BOS included */
    uint64_t n_scored;      /* n_chunks * (ctx - 1 - ctx/2) */
    double eval_seconds;    /* forward passes only (no tokenization, no scoring) */
    double tokens_per_second; /* prompt processing: n_chunks * ctx / eval_seconds */
    char model_sha256[65];  /* with file_sha256 and a regular file: its SHA-256 in hex; else "" */
} qf_perplexity_result;

/* llama-perplexity's protocol: the file's text minus one trailing newline, backslash escapes processed
 * (unless no_escape), tokenized whole with BOS when the vocabulary asks for it, cut into non-overlapping
 * chunks of ctx tokens whose first token is replaced by BOS; positions ctx/2 .. ctx-2 of each chunk are
 * scored on predicting the next token. QF_E_INPUT when the text has fewer than 2*ctx tokens. */
qf_status qf_perplexity(const qf_perplexity_opts *opts, qf_perplexity_result *res, qf_error *err);

/* The default batch keeps each model's logits buffer (4 bytes x n_vocab x batch) within this. */
#define QF_VERIFY_LOGITS_BYTES (64u << 20)

typedef struct qf_verify_opts {
    const char *model;      /* the model under test */
    const char *base;       /* the reference it is compared with (same vocabulary); may be NULL with
                               base_logits, else checked to be the base that file was made from */
    const char *text_path;
    const char *save_base;  /* also write the base's compact logits here (formats/baselogits.h) */
    const char *base_logits; /* compare with such a file instead of running the base: ctx and chunks
                               default to the file's, and a file made for another text, tokenization,
                               vocabulary, --act/--no-escape or base is refused (QF_E_INPUT) */
    uint32_t base_topk;     /* tokens kept per position by save_base; 0 = 1024 (the vocabulary if smaller) */
    uint32_t ctx, chunks, batch;
    int threads;
    bool no_escape;
    bool act_q8;            /* as qf_perplexity_opts, for both models */
    /* thresholds; a negative value means "not checked" */
    double max_kld;           /* mean KL(base || model) per token, nats */
    double max_ppl_increase;  /* percent: 100 * (ppl_model / ppl_base - 1) */
    double min_top1;          /* percent of tokens whose most likely next token agrees */
    double min_route_agree;   /* mixture-of-experts models: routing agreement (0..1, see qf_verify_result)
                                 of the worst MoE layer; checked when > 0 (0, the default, is no check,
                                 and no check is needed to get the figures). Models whose routes cannot
                                 be compared (dense, or route_none) are refused (QF_E_INPUT) */
    qf_chunk_fn on_chunk;
    void *user;
    qf_layer_major_opts layer_major; /* both models in lockstep, layer by layer */
    bool file_sha256;         /* also the SHA-256 of the model and base files, as qf_perplexity_opts's */
    qf_backend_opts backend;         /* both models on it */
} qf_verify_opts;

typedef enum qf_verify_check_id {
    QF_CHECK_KLD = 0, QF_CHECK_PPL, QF_CHECK_TOP1, QF_CHECK_ROUTE, QF_CHECK_COUNT
} qf_verify_check_id;

typedef struct qf_verify_check {
    const char *name;       /* "max_kld", "max_ppl_increase", "min_top1", "min_route_agree" */
    bool given;             /* the threshold was set */
    bool pass;
    double limit, value;    /* value in the threshold's unit */
} qf_verify_check;

/* Routing agreement of one mixture-of-experts layer over the scored tokens: for each token, the k
 * experts the model chose (the runtime's selection, before weighting) against the base's at the same
 * position of the same batch. */
typedef struct qf_verify_route {
    uint32_t layer;
    double agree;            /* mean over tokens of |experts(model) ∩ experts(base)| / k, in [0, 1] */
    double same;             /* fraction of tokens whose k experts are exactly the base's */
    bool below;              /* agree < min_route_agree (the gate given): this layer fails the run */
} qf_verify_route;

typedef struct qf_verify_result {
    double ppl_model, ppl_model_err, ppl_base, ppl_base_err;
    double ppl_ratio;        /* ppl_model / ppl_base */
    double kld_mean, kld_median, kld_p99, kld_max; /* per scored token, nats, computed in double */
    double kld_mean_err;     /* llama-perplexity's +/- of the mean KLD: sqrt(var / (n - 1)), 0 for n <= 10 */
    uint32_t kld_topk;       /* 0: KLD over the full softmax; K: from a base-logits file keeping K tokens
                                and the tail (a lower bound; README, "Saved base logits") */
    double base_tail_mean;   /* with kld_topk: the base's mean probability mass outside the K tokens */
    double top1_pct;         /* percent of scored tokens with the same argmax */
    double dp_rms_pct;       /* RMS over tokens of p_model(correct) - p_base(correct), percent */
    uint32_t ctx, n_chunks;
    uint64_t n_tokens, n_scored;
    double eval_seconds;     /* forward passes of both models */
    /* mixture-of-experts models (both MoE alike); dense models: route_n_layers 0, route_none "" */
    uint32_t route_n_layers; /* MoE layers compared; 0 also when route_none says why they could not be */
    qf_verify_route *route;  /* [route_n_layers], layers ascending; freed by qf_verify_result_free */
    uint32_t route_k, route_n_expert;     /* experts per token, experts per layer */
    double route_agree_mean;              /* mean of the layers' agree (= over all layers' tokens) */
    double route_agree_min;               /* the worst layer's agree ... */
    uint32_t route_agree_min_layer;       /* ... and that layer */
    double route_same_mean;               /* mean of the layers' same */
    uint32_t route_n_below;               /* layers below min_route_agree (0 without the gate) */
    char route_none[192];    /* MoE models whose routing was not compared: why; "" otherwise */
    qf_verify_check checks[QF_CHECK_COUNT];
    bool pass;               /* every given threshold holds */
    char model_sha256[65], base_sha256[65]; /* with file_sha256, as qf_perplexity_result's */
} qf_verify_result;

/* Run base and model side by side on the same tokens (perplexity's protocol, tokenized with the base's
 * vocabulary) and compare their full next-token distributions; or compare the model with a base-logits
 * file (opts->base_logits), running the model alone. The vocabularies must agree in size and
 * in every token's text (QF_E_INPUT otherwise). Returns QF_E_CHECK, with *res filled in and a message
 * naming the failed thresholds, when one does not hold. */
qf_status qf_verify(const qf_verify_opts *opts, qf_verify_result *res, qf_error *err);
/* Release what qf_verify allocated in *res (whatever it returned; also on a zeroed result). */
void qf_verify_result_free(qf_verify_result *res);

/* ---- calibrate ----------------------------------------------------------------------------------- */

typedef struct qf_calibrate_opts {
    const char *model;      /* GGUF or HF checkpoint, as for qf_perplexity */
    const char *text_path;  /* calibration text, read as llama-imatrix -f reads it */
    const char *out;        /* importance matrix (llama.cpp GGUF imatrix layout) */
    const char *hessian_out; /* also write GPTQ Hessians here (NULL = no); 4 n^2 bytes per layer input */
    uint32_t ctx;           /* tokens per chunk; 0 = 512 */
    uint32_t chunks;        /* chunks to run; 0 = all that fit */
    int threads;            /* 0 = all online CPUs */
    bool no_escape;
    qf_progress_fn progress; /* done/total in chunks */
    void *progress_user;
    uint32_t expert_min_tokens;  /* for *coverage; 0 = QF_EXPERT_MIN_TOKENS */
    struct qf_expert_coverage *coverage; /* out, when non-NULL: tokens per routed expert per layer and the
                                    experts below expert_min_tokens (free with qf_expert_coverage_free) */
    qf_layer_major_opts layer_major; /* the same statistics, byte for byte */
    qf_backend_opts backend;
} qf_calibrate_opts;

/* Run the model over the text in chunks (BOS first, like llama-imatrix) and record, for every linear
 * weight's input, the per-column sum of squared activations and the token count; optionally the full
 * second-moment matrix per input for GPTQ. */
qf_status qf_calibrate(const qf_calibrate_opts *opts, qf_error *err);

/* ---- measure: the sensitivity table of an automatic mix ------------------------------------------- */

typedef struct qf_measure_model_opts {
    const char *src;        /* the unquantized checkpoint (HF directory, F16/BF16/F32 GGUF, ...) */
    const char *imatrix;    /* the importance matrix the mix will be quantized with; NULL = none */
    const char *text_path;  /* text the true effects are measured on (a few chunks are enough) */
    const char *out;        /* the table (qforge.sensitivity/1) */
    const char *const *types; /* candidate types; NULL = q2_K, q3_K, q4_K, q5_K, q6_K, q8_0 */
    size_t n_types;
    const char *probe;      /* the type whose true effect is measured for every tensor; NULL = q3_K */
    const char *work_dir;   /* where the candidates are written, removed at the end; NULL = the output's
                               directory */
    uint32_t ctx, chunks;   /* 0 = 512, and 4 chunks */
    int threads;
    bool no_escape;
    bool check;             /* measure every candidate's true effect too (validation: n_types x the time) */
    qf_progress_fn progress; /* quantizing the candidates, in bytes */
    qf_progress_fn count_progress; /* then measuring, in forward passes (tensors x chunks) */
    void *progress_user;    /* both's */
    qf_warn_fn warn;
    void *warn_user;
} qf_measure_model_opts;

typedef struct qf_measure_model_result {
    size_t tensors;
    double rank_proxy, rank_check; /* formats/sensitivity.h; NAN where not measured */
    uint64_t candidate_bytes;      /* disk the candidates took while they existed */
    double quantize_seconds, measure_seconds;
} qf_measure_model_result;

/* Quantize the checkpoint once per candidate type (with the imatrix), measure every tensor's cost at
 * each (verify/sensitivity.h), write the table. */
qf_status qf_measure_model(const qf_measure_model_opts *opts, qf_measure_model_result *res, qf_error *err);

/* ---- trust: integrity digests, signatures, transport packs (docs/integrity.md) ------------------- */

typedef enum qf_sig_state {
    QF_SIG_NOT_CHECKED = 0, /* no public key given */
    QF_SIG_OK,
    QF_SIG_BAD,             /* the signature does not match the file's digests */
    QF_SIG_WRONG_KEY,       /* made with another key (fingerprints differ) */
} qf_sig_state;

typedef struct qf_integrity_opts {
    const char *path;   /* GGUF carrying qforge.integrity.* digests (every GGUF qforge writes does) */
    const char *pubkey; /* PEM Ed25519 public key: also check the detached signature; NULL = do not */
    const char *sig;    /* signature file; NULL = "<path>.sig" */
    int threads;        /* hashing threads across tensors; 0 = all online CPUs */
    qf_progress_fn progress; /* bytes hashed of the tensors' total, from the calling thread; NULL = none */
    void *progress_user;
} qf_integrity_opts;

/* What became of a tensor since qforge wrote the file. */
typedef enum qf_tensor_verdict {
    QF_TENSOR_OK = 0,    /* its bytes are the ones its digest describes */
    QF_TENSOR_CHANGED,   /* same tensor, same type, other bytes */
    QF_TENSOR_RETYPED,   /* stored in another type than qforge wrote (re-encoded by another tool) */
    QF_TENSOR_UNCOVERED, /* no digest belongs to it (added by another tool) */
} qf_tensor_verdict;

typedef struct qf_integrity_report {
    int scheme;            /* 2: every byte covered; 1 (older files): padding and the file's length not covered */
    bool header_ok;        /* header, metadata, tensor infos (scheme 2: and padding, file length) match */
    bool rewritten;        /* another tool rewrote the file (tensors reordered, re-encoded, added or removed,
                              keys after the digests): its digests describe the file qforge wrote */
    size_t n_tensors;
    size_t n_parts;        /* files checked: a split set's parts (every part has its own digests), else 1 */
    size_t n_bad;          /* tensors that are not as their digests describe */
    char **bad;            /* their names, in file order (owned; qf_integrity_report_free) */
    qf_tensor_verdict *bad_verdict; /* and what became of each */
    char **bad_file;       /* and the file that holds it: a split set's part, else the file itself (owned) */
    size_t n_missing;      /* tensors the digests describe that the file no longer has */
    uint64_t bytes_hashed;
    qf_sig_state sig;
} qf_integrity_report;

/* Re-hash a GGUF's header and every tensor (streaming from the mapping) and compare with the digests
 * it carries (matched by name in scheme 2, so a file another tool rewrote is reported as rewritten,
 * tensor by tensor); with a public key also check the signature. QF_OK: all match. QF_E_CHECK:
 * something changed or the signature fails (rep says what). QF_E_NOTFOUND: the file has no qforge digests;
 * QF_E_INPUT: malformed file or signature file. rep is filled for QF_OK and QF_E_CHECK. */
qf_status qf_verify_integrity(const qf_integrity_opts *o, qf_integrity_report *rep, qf_error *err);
void qf_integrity_report_free(qf_integrity_report *rep);

typedef struct qf_sign_opts {
    const char *path; /* GGUF to sign; its digests are verified first and a mismatch refuses to sign */
    const char *key;  /* PEM Ed25519 private key (openssl genpkey -algorithm ed25519) */
    const char *out;  /* signature file (written atomically); NULL = "<path>.sig" */
    int threads;
    qf_progress_fn progress; /* the re-verification's bytes hashed, as qf_integrity_opts */
    void *progress_user;
} qf_sign_opts;

/* Write a detached Ed25519 signature over the file's digest manifest. */
qf_status qf_sign(const qf_sign_opts *o, qf_error *err);

typedef struct qf_pack_opts {
    const char *src;  /* pack: any regular file (a GGUF); unpack: a .qfz pack */
    const char *out;  /* written atomically */
    int threads;      /* 0 = all online CPUs; output bytes do not depend on it */
    int level;        /* zstd level for pack; 0 = 3 */
    uint32_t chunk_mib; /* pack: uncompressed bytes per frame in MiB; 0 = 4 */
    qf_progress_fn progress; /* uncompressed bytes written (pack: read) of the total, from the calling
                                thread; unpack then reports the output's digest check from 0 again */
    void *progress_user;
} qf_pack_opts;

typedef struct qf_pack_stats {
    uint64_t raw_bytes, packed_bytes, frames;
    bool gguf_checked; /* unpack: the output's own qforge.integrity digests were verified */
} qf_pack_stats;

/* zstd transport pack: independent frames with an index of offsets and per-frame SHA-256, so unpack
 * runs in parallel and checks every frame as it streams. */
qf_status qf_pack(const qf_pack_opts *o, qf_pack_stats *stats, qf_error *err);
qf_status qf_unpack(const qf_pack_opts *o, qf_pack_stats *stats, qf_error *err);

#ifdef __cplusplus
}
#endif
#endif
