/* The report picture: bpw vs KLD and the quant-type map as one SVG document (report_svg.h). */
#include "verify/report_svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing text buffer ---------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

static void grow(buf *b, size_t need) {
    if (b->oom || b->len + need + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + need + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return; }
    b->p = p;
    b->cap = cap;
}

static QF_PRINTF(2, 3) void out(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = true; return; }
    grow(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void put_char(buf *b, char c) {
    grow(b, 1);
    if (b->oom) return;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

/* Length of the well-formed UTF-8 sequence at s that XML allows (no surrogates, U+FFFE/U+FFFF), or 0. */
static size_t xml_utf8(const unsigned char *s) {
    unsigned char c = s[0];
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    uint32_t cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    bool shortest = len == 2 || (len == 3 && cp >= 0x800) || (len == 4 && cp >= 0x10000 && cp <= 0x10ffff);
    if (!len || !shortest || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff) return 0;
    return len;
}

/* Text as XML character data or an attribute value. */
static void put_text(buf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    while (*u) {
        if (*u < 0x80) {
            if (*u == '<') out(b, "&lt;");
            else if (*u == '>') out(b, "&gt;");
            else if (*u == '&') out(b, "&amp;");
            else if (*u == '"') out(b, "&quot;");
            else put_char(b, *u < 0x20 || *u == 0x7f ? '?' : (char)*u);
            u++;
            continue;
        }
        size_t n = xml_utf8(u);
        if (!n) { put_char(b, '?'); u++; continue; }
        for (size_t i = 0; i < n; i++) put_char(b, (char)u[i]);
        u += n;
    }
}

/* Text width estimate for layout (a sans-serif averages ~0.58 em per character; counted in code points). */
static double text_w(const char *s, double size) {
    size_t n = 0;
    for (const unsigned char *u = (const unsigned char *)(s ? s : ""); *u; u++) n += (*u & 0xc0) != 0x80;
    return 0.58 * size * (double)n;
}

/* ---- layout ------------------------------------------------------------------------------------- */

#define WIDTH 960
#define TITLE_H 44
/* panel 1: plot area, and the legend to its right */
#define P1_X0 84.0
#define P1_X1 690.0
#define P1_Y0 (TITLE_H + 34.0)
#define P1_Y1 (TITLE_H + 384.0)
#define P1_H 440 /* the panel with its axis labels */
#define LEG_X 712.0
/* panel 2 */
#define P2_GAP 24
#define MAP_X0 84.0
#define MAP_X1 690.0
#define HEAD_H 84.0 /* rotated column names */

static const char *const series_colors[] = {"#1b6ca8", "#d1495b", "#2a9d8f", "#e9a03b", "#6a4c93", "#5c6b73", "#8c5e3c", "#c2185b"};
#define N_SERIES_COLORS (sizeof series_colors / sizeof series_colors[0])

static int cell_h(const qf_quant_map *m) { return m->n_layers > 48 ? 10 : 14; }

static double other_row_h(const qf_quant_map *m) {
    for (size_t i = 0; i < m->n_cells; i++)
        if (m->cells[i].layer < 0) return 22;
    return 0;
}

static int map_height(const qf_report_doc *d) {
    if (!d->map) return 0;
    const qf_quant_map *m = d->map;
    double rows = other_row_h(m) + (other_row_h(m) ? 8 : 0) + (double)m->n_layers * cell_h(m);
    double legend = 30 + 18.0 * (double)m->n_types;
    double body = HEAD_H + rows;
    return P2_GAP + 30 + (int)ceil(body > legend ? body : legend) + 40;
}

void qf_report_svg_size(const qf_report_doc *d, int *width, int *height) {
    *width = WIDTH;
    *height = TITLE_H + P1_H + map_height(d);
}

/* ---- panel 1: bits per weight against KLD --------------------------------------------------------- */

typedef struct axes {
    double x_lo, x_hi, x_step;  /* bpw */
    int y_lo, y_hi;             /* log10 KLD, whole decades */
    double floor_kld;           /* where kld <= 0 is drawn */
} axes;

static double px(const axes *a, double bpw) { return P1_X0 + (bpw - a->x_lo) / (a->x_hi - a->x_lo) * (P1_X1 - P1_X0); }

static double py(const axes *a, double kld) {
    double l = kld > 0 ? log10(kld) : (double)a->y_lo;
    if (l < a->y_lo) l = a->y_lo;
    if (l > a->y_hi) l = a->y_hi;
    return P1_Y1 - (l - a->y_lo) / (double)(a->y_hi - a->y_lo) * (P1_Y1 - P1_Y0);
}

static axes fit_axes(const qf_report_doc *d) {
    double bmin = INFINITY, bmax = -INFINITY, kmin = INFINITY, kmax = -INFINITY;
    for (size_t s = 0; s < d->n_series; s++)
        for (size_t i = 0; i < d->series[s].n; i++) {
            const qf_report_point *p = &d->series[s].pts[i];
            bmin = fmin(bmin, p->bpw);
            bmax = fmax(bmax, p->bpw);
            if (p->kld > 0) {
                double lo = p->kld - p->kld_pm > 0 ? p->kld - p->kld_pm : p->kld;
                kmin = fmin(kmin, lo);
                kmax = fmax(kmax, p->kld + p->kld_pm);
            }
        }
    axes a;
    double span = bmax - bmin;
    a.x_step = span > 24 ? 4 : span > 12 ? 2 : span > 3 ? 1 : 0.5;
    a.x_lo = floor((bmin - 0.3) / a.x_step) * a.x_step;
    a.x_hi = ceil((bmax + 0.3) / a.x_step) * a.x_step;
    if (a.x_lo < 0) a.x_lo = 0;
    if (!isfinite(kmin)) { kmin = 1e-6; kmax = 1e-5; }
    a.y_lo = (int)floor(log10(kmin));
    a.y_hi = (int)ceil(log10(kmax));
    if (a.y_hi <= a.y_lo) a.y_hi = a.y_lo + 1;
    a.floor_kld = pow(10, a.y_lo);
    return a;
}

/* 10^k as a person writes it: 0.001, 1, 100; 1e-6 beyond four decimals or five digits. */
static void decade_label(int k, char *s, size_t n) {
    if (k < -4 || k > 4) snprintf(s, n, "1e%d", k);
    else if (k < 0) snprintf(s, n, "%.*f", -k, pow(10, k));
    else snprintf(s, n, "%.0f", pow(10, k));
}

static void minor_label(int k, int m, char *s, size_t n) {
    if (k < -4 || k > 4) snprintf(s, n, "%de%d", m, k);
    else if (k < 0) snprintf(s, n, "%.*f", -k, m * pow(10, k));
    else snprintf(s, n, "%.0f", m * pow(10, k));
}

static void draw_axes(buf *b, const axes *a) {
    out(b, "<g class=\"axes\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fbfbfd\" stroke=\"#888\"/>\n",
        P1_X0, P1_Y0, P1_X1 - P1_X0, P1_Y1 - P1_Y0);
    bool few = a->y_hi - a->y_lo <= 2; /* label 2 and 5 too when the range is short */
    for (int k = a->y_lo; k <= a->y_hi; k++) {
        char lab[32];
        double y = py(a, pow(10, k));
        decade_label(k, lab, sizeof lab);
        out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c8c8d0\"/>\n", P1_X0, y, P1_X1, y);
        out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%s</text>\n", P1_X0 - 6, y + 4, lab);
        for (int m = 2; m <= 9 && k < a->y_hi; m++) {
            double ym = py(a, m * pow(10, k));
            out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ececf0\"/>\n", P1_X0, ym, P1_X1, ym);
            if (few && (m == 2 || m == 5)) {
                minor_label(k, m, lab, sizeof lab);
                out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\" fill=\"#666\">%s</text>\n", P1_X0 - 6, ym + 3.5, lab);
            }
        }
    }
    for (double x = a->x_lo; x <= a->x_hi + 1e-9; x += a->x_step) {
        double X = px(a, x);
        out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e8\"/>\n", X, P1_Y0, X, P1_Y1);
        out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%g</text>\n", X, P1_Y1 + 17, x);
    }
    out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">bits per weight (all tensors)</text>\n",
        (P1_X0 + P1_X1) / 2, P1_Y1 + 38);
    out(b, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">mean KL divergence to the base (log scale; lower is better)</text>\n",
        P1_X0 - 56, (P1_Y0 + P1_Y1) / 2);
    out(b, "</g>\n");
}

/* Boxes already taken by markers and labels, so a label goes where it covers nothing. */
typedef struct box { double x0, y0, x1, y1; } box;
typedef struct boxes { box *v; size_t n, cap; } boxes;

static void take(boxes *t, box r) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        box *v = realloc(t->v, cap * sizeof *v);
        if (!v) return; /* a missed box only risks an overlap */
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = r;
}

static bool clear(const boxes *t, box r) {
    if (r.x0 < P1_X0 || r.x1 > P1_X1 || r.y0 < P1_Y0 || r.y1 > P1_Y1) return false;
    for (size_t i = 0; i < t->n; i++)
        if (r.x0 < t->v[i].x1 && t->v[i].x0 < r.x1 && r.y0 < t->v[i].y1 && t->v[i].y0 < r.y1) return false;
    return true;
}

/* A label beside (X, Y): the first clear place among right, left, above, below and the diagonals. */
static void place_label(buf *b, boxes *t, double X, double Y, const char *text, const char *color) {
    const double fs = 11, w = text_w(text, fs), h = fs;
    static const double dx[] = {8, -8, 0, 0, 8, 8, -8, -8, 16, -16};
    static const double dy[] = {4, 4, -9, 16, -8, 14, -8, 14, 4, 4};
    static const int anchor[] = {0, 2, 1, 1, 0, 0, 2, 2, 0, 2}; /* start, middle, end */
    static const char *const anchors[] = {"start", "middle", "end"};
    size_t pick = 0;
    box at = {0};
    for (size_t i = 0; i < sizeof dx / sizeof dx[0]; i++) {
        double x0 = X + dx[i] - (anchor[i] == 1 ? w / 2 : anchor[i] == 2 ? w : 0);
        box r = {x0, Y + dy[i] - h + 1, x0 + w, Y + dy[i] + 2};
        if (i == 0) at = r;
        if (clear(t, r)) { pick = i; at = r; break; }
    }
    take(t, at);
    out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"11\" fill=\"%s\">", X + dx[pick], Y + dy[pick],
        anchors[anchor[pick]], color);
    put_text(b, text);
    out(b, "</text>\n");
}

static void marker(buf *b, const char *cls, qf_series_style style, double X, double Y, const char *color) {
    if (style == QF_SERIES_OTHER)
        out(b, "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"2\">",
            cls, X - 4.5, Y - 4.5, color);
    else
        out(b, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\">", cls, X, Y,
            style == QF_SERIES_CURVE ? "4" : "5", color);
}

static void tooltip(buf *b, const qf_report_point *p, const char *series) {
    out(b, "<title>");
    put_text(b, p->label && p->label[0] ? p->label : series);
    out(b, ": %.3f bpw, KLD %.6g", p->bpw, p->kld);
    if (p->kld_pm > 0) out(b, " \xc2\xb1 %.2g", p->kld_pm);
    out(b, " (");
    put_text(b, p->file);
    out(b, ")</title>");
}

/* Order of a curve's points by bpw (indices; stable for equal bpw). */
static size_t *by_bpw(const qf_report_series *s) {
    size_t *o = qf_malloc_n(s->n ? s->n : 1, sizeof *o);
    if (!o) return NULL;
    for (size_t i = 0; i < s->n; i++) o[i] = i;
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0 && s->pts[o[j]].bpw < s->pts[o[j - 1]].bpw; j--) {
            size_t t = o[j]; o[j] = o[j - 1]; o[j - 1] = t;
        }
    return o;
}

static void draw_series(buf *b, const axes *a, const qf_report_series *s, const char *color, boxes *taken) {
    out(b, "<g class=\"series\">\n");
    size_t *o = by_bpw(s);
    if (!o) { b->oom = true; return; }
    if (s->style == QF_SERIES_CURVE && s->n > 1) {
        out(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t i = 0; i < s->n; i++)
            out(b, "%s%.1f,%.1f", i ? " " : "", px(a, s->pts[o[i]].bpw), py(a, s->pts[o[i]].kld));
        out(b, "\"/>\n");
    }
    for (size_t i = 0; i < s->n; i++) {
        const qf_report_point *p = &s->pts[o[i]];
        double X = px(a, p->bpw), Y = py(a, p->kld);
        if (p->kld > 0 && p->kld_pm > 0)
            out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.2\"/>\n", X,
                py(a, p->kld - p->kld_pm > 0 ? p->kld - p->kld_pm : a->floor_kld), X, py(a, p->kld + p->kld_pm), color);
        marker(b, "pt", s->style, X, Y, color);
        tooltip(b, p, s->name);
        out(b, s->style == QF_SERIES_OTHER ? "</rect>\n" : "</circle>\n");
        take(taken, (box){X - 6, Y - 6, X + 6, Y + 6});
    }
    for (size_t i = 0; i < s->n && s->style != QF_SERIES_CURVE; i++) {
        const qf_report_point *p = &s->pts[o[i]];
        char lab[200];
        snprintf(lab, sizeof lab, "%s%s", p->label ? p->label : "", p->kld > 0 ? "" : " (KLD 0)");
        place_label(b, taken, px(a, p->bpw), py(a, p->kld), lab, color);
    }
    free(o);
    out(b, "</g>\n");
}

static void series_legend(buf *b, const qf_report_doc *d) {
    double y = P1_Y0 + 6;
    out(b, "<g class=\"legend\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">series</text>\n", LEG_X, y);
    for (size_t s = 0; s < d->n_series; s++) {
        const char *color = series_colors[s % N_SERIES_COLORS];
        y += 22;
        if (d->series[s].style == QF_SERIES_CURVE)
            out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n", LEG_X, y - 4, LEG_X + 22, y - 4, color);
        marker(b, "key", d->series[s].style, LEG_X + 11, y - 4, color);
        out(b, d->series[s].style == QF_SERIES_OTHER ? "</rect>\n" : "</circle>\n");
        out(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", LEG_X + 30, y);
        put_text(b, d->series[s].name);
        out(b, " (%zu)</text>\n", d->series[s].n);
    }
    y += 26;
    out(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#666\">bars: KLD \xc2\xb1; hover a marker for its file</text>\n", LEG_X, y);
    out(b, "</g>\n");
}

static void draw_chart(buf *b, const qf_report_doc *d) {
    axes a = fit_axes(d);
    boxes taken = {0};
    draw_axes(b, &a);
    for (size_t s = 0; s < d->n_series; s++) draw_series(b, &a, &d->series[s], series_colors[s % N_SERIES_COLORS], &taken);
    free(taken.v);
    series_legend(b, d);
}

/* ---- panel 2: the quant-type map ------------------------------------------------------------------ */

/* Colours by family, darker to lighter with more bits within a family, so that neighbours in bpw are
 * told apart: reds for 1-2 bits, oranges 3, yellows 4, greens 5-6, blues 8, greys and violets for floats. */
typedef struct type_color { const char *name, *fill; } type_color;
static const type_color type_colors[] = {
    {"iq1_s", "#67001f"}, {"iq1_m", "#8e0b2e"}, {"iq2_xxs", "#a50f35"}, {"iq2_xs", "#b8213f"}, {"iq2_s", "#c9374b"},
    {"q2_K", "#d73027"}, {"iq3_xxs", "#e34a33"}, {"iq3_s", "#ef6548"}, {"q3_K", "#f46d43"},
    {"q4_0", "#fdae61"}, {"q4_1", "#fdc07a"}, {"iq4_nl", "#f9a94b"}, {"iq4_xs", "#f7b955"}, {"mxfp4", "#e8983a"},
    {"q4_K", "#fee08b"}, {"q5_0", "#d9ef8b"}, {"q5_1", "#c7e77f"}, {"q5_K", "#a6d96a"}, {"q6_K", "#4dac62"},
    {"q8_0", "#74add1"}, {"e4m3_b32", "#5e9fd0"}, {"e5m2_b32", "#4a8fc7"}, {"e4m3_row", "#3f7fbf"},
    {"e4m3_b128", "#3575b5"}, {"bf16", "#8073ac"}, {"f16", "#9e9ac8"}, {"f32", "#bdbdbd"},
};

static const char *type_fill(const char *name) {
    for (size_t i = 0; i < sizeof type_colors / sizeof type_colors[0]; i++)
        if (!strcmp(type_colors[i].name, name)) return type_colors[i].fill;
    return "#e7e1ef";
}

/* Black or white text on a fill, whichever contrasts more (Rec. 709 luma of the sRGB values). */
static const char *ink_on(const char *fill) {
    unsigned r, g, bl;
    if (sscanf(fill, "#%2x%2x%2x", &r, &g, &bl) != 3) return "#000";
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl > 140 ? "#000" : "#fff";
}

static double map_bpw(const qf_map_type *t) { return t->elems ? 8.0 * (double)t->bytes / (double)t->elems : 0; }

static void cell_title(buf *b, const qf_quant_map *m, const qf_map_cell *c) {
    out(b, "<title>");
    put_text(b, c->name);
    out(b, ": ");
    put_text(b, m->types[c->type].name);
    out(b, "</title>");
}

static double map_cell_w(const qf_quant_map *m) {
    double w = m->n_roles ? (MAP_X1 - MAP_X0) / (double)m->n_roles : 40;
    return w > 46 ? 46 : w;
}

/* The row of tensors outside the layers: named cells, as wide as their names. */
static double draw_other_row(buf *b, const qf_quant_map *m, double y) {
    if (!other_row_h(m)) return y;
    double x = MAP_X0, h = other_row_h(m);
    out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">other</text>\n", MAP_X0 - 6, y + h / 2 + 4);
    for (size_t i = 0; i < m->n_cells; i++) {
        const qf_map_cell *c = &m->cells[i];
        if (c->layer >= 0) continue;
        char shown[80];
        size_t n = strlen(c->name);
        snprintf(shown, sizeof shown, "%.*s", (int)(n > 7 && !strcmp(c->name + n - 7, ".weight") ? n - 7 : n), c->name);
        double w = text_w(shown, 10) + 12;
        if (w < 2 * map_cell_w(m)) w = 2 * map_cell_w(m);
        const char *fill = type_fill(m->types[c->type].name);
        out(b, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#fff\">", x, y, w, h, fill);
        cell_title(b, m, c);
        out(b, "</rect>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\" fill=\"%s\">", x + w / 2, y + h / 2 + 3.5, ink_on(fill));
        put_text(b, shown);
        out(b, "</text>\n");
        x += w + 2;
    }
    return y + h + 8;
}

static void draw_layer_grid(buf *b, const qf_quant_map *m, double y0) {
    double cw = map_cell_w(m), ch = cell_h(m);
    int every = m->n_layers > 48 ? 5 : m->n_layers > 24 ? 2 : 1;
    for (int64_t l = 0; l < m->n_layers; l++) {
        double y = y0 + (double)l * ch;
        out(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", MAP_X0, y, cw * (double)m->n_roles, ch,
            l % 2 ? "#f4f4f6" : "#fafafb");
        if (l % every == 0)
            out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%d\">blk.%lld</text>\n", MAP_X0 - 6, y + ch - 3,
                ch >= 14 ? 11 : 9, (long long)l);
    }
    for (size_t i = 0; i < m->n_cells; i++) {
        const qf_map_cell *c = &m->cells[i];
        if (c->layer < 0) continue;
        out(b, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\">",
            MAP_X0 + (double)c->col * cw, y0 + (double)c->layer * ch, cw, ch, type_fill(m->types[c->type].name));
        cell_title(b, m, c);
        out(b, "</rect>\n");
    }
}

static void draw_column_heads(buf *b, const qf_quant_map *m, double y) {
    double cw = map_cell_w(m);
    for (size_t r = 0; r < m->n_roles; r++) {
        double x = MAP_X0 + ((double)r + 0.5) * cw + 3;
        out(b, "<text transform=\"translate(%.1f %.1f) rotate(-55)\" font-size=\"11\">", x, y - 4);
        put_text(b, m->roles[r]);
        out(b, "</text>\n");
    }
}

static void type_legend(buf *b, const qf_quant_map *m, double y) {
    uint64_t total = 0;
    for (size_t i = 0; i < m->n_types; i++) total += m->types[i].elems;
    out(b, "<g class=\"legend\" font-size=\"12\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">type</text>\n"
           "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"13\" font-weight=\"bold\">bpw</text>\n"
           "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"13\" font-weight=\"bold\">weights</text>\n",
        LEG_X + 30, y, LEG_X + 150, y, LEG_X + 226, y);
    for (size_t i = 0; i < m->n_types; i++) {
        const qf_map_type *t = &m->types[i];
        y += 18;
        out(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"22\" height=\"12\" fill=\"%s\" stroke=\"#999\" stroke-width=\"0.5\"/>\n", LEG_X, y - 10, type_fill(t->name));
        out(b, "<text x=\"%.1f\" y=\"%.1f\">", LEG_X + 30, y);
        put_text(b, t->name);
        out(b, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", LEG_X + 150, y, map_bpw(t));
        out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f%%</text>\n", LEG_X + 226, y,
            total ? 100.0 * (double)t->elems / (double)total : 0);
    }
    out(b, "</g>\n");
}

static void draw_map(buf *b, const qf_report_doc *d, double top) {
    const qf_quant_map *m = d->map;
    out(b, "<g class=\"map\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">", MAP_X0 - 60, top + 20);
    put_text(b, d->map_title ? d->map_title : "quant types");
    out(b, "</text>\n");
    double y = top + 30 + HEAD_H;
    draw_column_heads(b, m, y);
    y = draw_other_row(b, m, y);
    draw_layer_grid(b, m, y);
    type_legend(b, m, top + 30 + HEAD_H);
    out(b, "</g>\n");
}

/* ---- the document ------------------------------------------------------------------------------ */

static qf_status check_doc(const qf_report_doc *d, qf_error *err) {
    size_t n = 0;
    for (size_t s = 0; s < d->n_series; s++)
        for (size_t i = 0; i < d->series[s].n; i++, n++) {
            const qf_report_point *p = &d->series[s].pts[i];
            if (!isfinite(p->bpw) || p->bpw <= 0 || !isfinite(p->kld) || !isfinite(p->kld_pm) || p->kld_pm < 0)
                return qf_fail(err, QF_E_INPUT, "%s: bits per weight %g, KLD %g +/- %g: not a point to draw",
                               p->file ? p->file : "?", p->bpw, p->kld, p->kld_pm);
        }
    return n ? QF_OK : qf_fail(err, QF_E_INPUT, "no point to draw");
}

qf_status qf_report_svg(const qf_report_doc *d, char **svg, size_t *len, qf_error *err) {
    qf_status st = check_doc(d, err);
    if (st) return st;
    int w, h;
    qf_report_svg_size(d, &w, &h);
    buf b = {0};
    out(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\">\n", w, h, w, h);
    out(&b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<text x=\"24\" y=\"30\" font-size=\"17\" font-weight=\"bold\">", w, h);
    put_text(&b, d->title ? d->title : "qforge report: bits per weight vs KLD");
    out(&b, "</text>\n");
    draw_chart(&b, d);
    if (d->map) draw_map(&b, d, TITLE_H + P1_H);
    out(&b, "</svg>\n");
    if (b.oom) { free(b.p); return qf_fail(err, QF_E_NOMEM, "out of memory for the SVG"); }
    *svg = b.p;
    *len = b.len;
    return QF_OK;
}
