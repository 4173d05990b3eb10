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

typedef struct qf_convert_opts {
    const char *src;        /* HF directory, *.safetensors, model.safetensors.index.json, or archive */
    const char *out;        /* output GGUF path (written atomically) */
    const char *type;       /* uniform type for 2-D weights: "f32", "f16", "bf16", "q8_0", "q4_K", ... */
    const char *recipe;     /* named mix (qf_recipe_name); when set, `type` is ignored */
    const char *const *tensor_types; /* "REGEX=TYPE" overrides, first match wins, beat the recipe */
    size_t n_tensor_types;
    const char *imatrix;    /* llama.cpp-format GGUF importance matrix, or NULL */
    const char *method;     /* "rtn" or "weighted"; NULL = weighted with an imatrix, else rtn */
    int threads;            /* 0 = all online CPUs */
    bool dry_run;           /* print the plan, write nothing */
    qf_progress_fn progress;
    void *progress_user;
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
    const char *dir;        /* created if missing; files inside are replaced atomically */
    uint64_t seed;
    uint32_t n_layer, n_embd, n_ff, n_vocab;
    const char *dtype;      /* "f32", "f16" or "bf16" */
} qf_synth_opts;

/* Write a small random Llama checkpoint in Hugging Face layout: config.json, tokenizer.json (byte-level
 * BPE), tokenizer_config.json, model.safetensors. Same options -> same bytes. */
qf_status qf_synth_model(const qf_synth_opts *opts, qf_error *err);

#ifdef __cplusplus
}
#endif
#endif
