/*
 * report_svg.h — the picture of a set of quantized files: one self-contained SVG 1.1 document (inline
 * text, no fonts, scripts or images from elsewhere) with two panels.
 *
 *   1. bits per weight (x, linear) against mean KLD to the base (y, log10), one marker per file, files
 *      grouped in series: QF_SERIES_CURVE joined in bpw order (a family of mixes: the size-targeting
 *      solver's, a sweep), QF_SERIES_POINTS each point labelled (fixed recipes), QF_SERIES_OTHER hollow
 *      squares, labelled (files another tool made: llama.cpp). Error bars are KLD's +/-; every marker
 *      carries a <title> (a tooltip in browsers) with its file and figures.
 *   2. the quant-type map of one GGUF: one row per layer (blk.N), one column per tensor role (attn_q,
 *      ffn_down_exps, ...), plus a row of the tensors outside the layers (token_embd, output), each cell
 *      coloured by its type; the legend gives each type's bits per weight and share of the weights.
 *
 * Same data, same bytes: nothing depends on time, locale or addresses (coordinates are printed with a
 * fixed number of decimals, the C locale's '.'). Text is XML-escaped, and bytes XML 1.0 cannot hold (C0
 * controls, invalid UTF-8) become '?', so any file name or metadata string gives a well-formed document.
 * Elements tests count: the chart's markers have class "pt" (the legend's "key"), map cells class "cell".
 */
#ifndef QF_REPORT_SVG_H
#define QF_REPORT_SVG_H

#include "qf_core.h"

struct qf_gguf;

typedef enum qf_series_style {
    QF_SERIES_CURVE = 0,  /* joined by a line, ordered by bpw; points unlabelled */
    QF_SERIES_POINTS = 1, /* filled circles, each labelled */
    QF_SERIES_OTHER = 2,  /* hollow squares, each labelled: files made by another tool */
} qf_series_style;

typedef struct qf_report_point {
    double bpw;          /* bits per weight over every tensor of the file */
    double kld, kld_pm;  /* mean KL(base || model) and its +/-; kld <= 0 sits on the axis floor */
    const char *label;   /* shown beside the marker (POINTS, OTHER); borrowed */
    const char *file;    /* the GGUF, for the tooltip; borrowed */
} qf_report_point;

typedef struct qf_report_series {
    const char *name;    /* legend text; borrowed */
    qf_series_style style;
    qf_report_point *pts;
    size_t n;
} qf_report_series;

/* One tensor of the map. */
typedef struct qf_map_cell {
    int64_t layer;       /* N of blk.N, or -1 for a tensor outside the layers */
    size_t col;          /* index into qf_quant_map.roles (layer tensors) */
    size_t type;         /* index into qf_quant_map.types */
    char *name;          /* the tensor's name */
} qf_map_cell;

typedef struct qf_map_type {
    char name[24];       /* kernels/qtypes.h spelling, e.g. "q4_K" */
    uint64_t bytes, elems;
} qf_map_type;

/* The quant-type map of a GGUF (every tensor of two or more dimensions: the weights; norms and
 * biases are 1-D). Types ordered by bits per weight, largest first, then by name. */
typedef struct qf_quant_map {
    char **roles;        /* column names in display order: known roles in a fixed order, then others as
                          * they first appear in the file */
    size_t n_roles;
    int64_t n_layers;    /* 1 + the largest N of blk.N (0 when no tensor is in a layer) */
    qf_map_cell *cells;
    size_t n_cells;
    qf_map_type *types;
    size_t n_types;
} qf_quant_map;

/* Build the map from an open GGUF (a split set: all its parts). QF_E_INPUT when the file has no
 * tensor of two or more dimensions; QF_E_NOMEM. *m is filled; free with qf_quant_map_free. */
qf_status qf_quant_map_build(const struct qf_gguf *g, qf_quant_map *m, qf_error *err);
void qf_quant_map_free(qf_quant_map *m);

typedef struct qf_report_doc {
    const char *title;          /* top line; borrowed */
    const qf_report_series *series;
    size_t n_series;
    const qf_quant_map *map;    /* NULL: no second panel */
    const char *map_title;      /* the second panel's heading (the file's name); borrowed */
} qf_report_doc;

/* Render the document: *out is a malloc'd NUL-terminated SVG of *len bytes. QF_E_INPUT when no series
 * holds a point or a value is not finite (naming the file); QF_E_NOMEM. */
qf_status qf_report_svg(const qf_report_doc *doc, char **out, size_t *len, qf_error *err);

/* Width and height of the document qf_report_svg writes for doc, in px (the root's width/height). */
void qf_report_svg_size(const qf_report_doc *doc, int *width, int *height);

#endif
