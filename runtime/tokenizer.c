/*
 * tokenizer.c — llama.cpp's tokenizer (src/llama-vocab.cpp, src/unicode.cpp) for SPM and BPE.
 *
 * Pipeline (llama_vocab::impl::tokenize):
 *   1. special tokens are cut out of the raw text, longest first ("fragments"): user-defined ones always,
 *      control and unknown ones only with parse_special;
 *   2. SPM: each raw fragment gets the dummy space prefix when it starts the text or follows a token,
 *      spaces become U+2581, and UTF-8 characters are merged pairwise, highest-scoring pair first;
 *      pieces that are no token fall back to <0xNN> byte tokens;
 *   3. BPE: each raw fragment is split by the pre-tokenizer regexes in turn (matches and the text between
 *      them both become words), each word is mapped byte by byte to GPT-2's printable code points (or,
 *      for SentencePiece-style BPE, kept as UTF-8 after spaces became U+2581), and adjacent symbols are
 *      merged lowest merge rank first; what stays no token falls back to single-byte tokens.
 * Ties break as llama.cpp's priority queues do: equal score/rank -> leftmost pair first.
 */
#include "runtime/tokenizer.h"

#include "qf_core.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* llama.cpp's token attributes, derived from tokenizer.ggml.token_type. */
enum { A_NORMAL = 1, A_UNKNOWN = 2, A_CONTROL = 4, A_USER = 8, A_UNUSED = 16, A_BYTE = 32 };
enum { KIND_SPM, KIND_BPE };
#define MAX_REGEX 6

struct qf_tokenizer {
    int kind;
    uint32_t n;              /* tokens */
    /* Interned strings: ids below n are the tokens; ids from n up are texts the BPE merges name that are no
     * token (llama.cpp ranks merges by their strings, so a merge may name or make such text). */
    uint32_t n_str;
    uint64_t str_cap;
    char *pool;              /* all texts, each NUL-terminated */
    uint64_t pool_len, pool_cap;
    uint64_t *off;           /* [n_str] offset of string i in pool */
    uint32_t *len;           /* [n_str] bytes, without the NUL */
    float *score;            /* [n] SPM merge priority */
    uint8_t *attr;           /* [n] A_* bits */
    int32_t *slot;           /* text -> id hash table, open addressing, -1 = empty */
    uint64_t slot_mask;
    /* BPE merges keyed by the string ids of both halves: rank (first listing wins) and merged string id. */
    uint64_t *pair_key;      /* (left+1) << 32 | (right+1); 0 = empty */
    int32_t *pair_rank, *pair_id;
    uint64_t pair_mask;
    int32_t byte_tok[256];   /* SPM: <0xNN> (or the raw byte); BPE: the one-byte string, -1 = none */
    char gpt2[256][3];       /* BPE: byte -> UTF-8 of its GPT-2 code point */
    uint8_t gpt2_len[256];
    pcre2_code *re[MAX_REGEX];
    int n_re;
    bool ignore_merges;      /* BPE: a word that is itself a token skips merging (llama3 and kin) */
    bool byte_encode;        /* BPE: words go through GPT-2's byte mapping (false: SentencePiece-style BPE) */
    bool escape_spaces;      /* BPE: ' ' becomes U+2581 before splitting (SentencePiece-style BPE) */
    bool newline_words;      /* BPE: a word of only '\n' that is a token stays whole (gemma4) */
    bool force_bos;          /* BPE: add_bos is on whatever the vocab says (gemma4) */
    bool space_prefix;       /* SPM: add_space_prefix */
    bool wants_bos, wants_eos;
    int32_t bos, eos, unk;
    int32_t *special;        /* control, user-defined and unknown tokens, cut out first, longest first */
    uint32_t n_special;
};

/* ---- growable id output ------------------------------------------------------------------------- */

typedef struct { int32_t *v; size_t n, cap; } idvec;

static bool idvec_push(idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return false;
        o->v = v, o->cap = cap;
    }
    o->v[o->n++] = id;
    return true;
}

/* ---- text -> id hash ---------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a: short keys, no need for anything stronger */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const char *tok_str(const qf_tokenizer *t, int32_t id) { return t->pool + t->off[id]; }

/* The string id of s[0..n) (token or merge text), or -1. */
static int32_t find_str(const qf_tokenizer *t, const char *s, size_t n) {
    for (uint64_t i = hash_bytes(s, n) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t id = t->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(tok_str(t, id), s, n) == 0) return id;
    }
}

/* The token whose text is s[0..n), or -1. */
static int32_t lookup(const qf_tokenizer *t, const char *s, size_t n) {
    int32_t id = find_str(t, s, n);
    return (uint32_t)id < t->n ? id : -1;
}

/* Later duplicates replace earlier ones, as token_to_id[word] = i does in llama.cpp. */
static void insert_token(qf_tokenizer *t, int32_t id) {
    const char *s = tok_str(t, id);
    for (uint64_t i = hash_bytes(s, t->len[id]) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t o = t->slot[i];
        if (o < 0 || (t->len[o] == t->len[id] && memcmp(tok_str(t, o), s, t->len[id]) == 0)) {
            t->slot[i] = id;
            return;
        }
    }
}

static uint64_t table_size(uint64_t n) {
    uint64_t cap = 16;
    while (cap < n * 2) cap *= 2;
    return cap;
}

/* ---- vocab copy --------------------------------------------------------------------------------- */

static qf_status oom(qf_error *err) { return qf_fail(err, QF_E_NOMEM, "tokenizer: out of memory"); }

/* Copy token texts into one pool; empty tokens get llama.cpp's "[EMPTY_<i>]" name. */
static qf_status copy_tokens(qf_tokenizer *t, const qf_vocab *v, qf_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        if (!v->tokens || !v->tokens[i]) return qf_fail(err, QF_E_INPUT, "tokenizer: token %u has no text", i);
        size_t l = strlen(v->tokens[i]);
        if (!qf_add_ok(total, (l ? l : 24) + 1, &total) || l > UINT32_MAX)
            return qf_fail(err, QF_E_INPUT, "tokenizer: token texts too large");
    }
    t->pool = qf_malloc_n(total, 1);
    t->off = qf_malloc_n(v->n_tokens, sizeof *t->off);
    t->len = qf_malloc_n(v->n_tokens, sizeof *t->len);
    if (!t->pool || !t->off || !t->len) return oom(err);
    t->pool_len = t->pool_cap = total;
    t->n_str = t->str_cap = v->n_tokens;
    uint64_t at = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        char *dst = t->pool + at;
        size_t l = strlen(v->tokens[i]);
        if (l) memcpy(dst, v->tokens[i], l + 1);
        else l = (size_t)snprintf(dst, 25, "[EMPTY_%u]", i);
        t->off[i] = at, t->len[i] = (uint32_t)l;
        at += l + 1;
    }
    return QF_OK;
}

/* (Re)build the text -> id table over every interned string, at most half full. */
static qf_status build_index(qf_tokenizer *t, qf_error *err) {
    uint64_t cap = table_size((uint64_t)t->n_str + 1);
    int32_t *slot = qf_malloc_n(cap, sizeof *slot);
    if (!slot) return oom(err);
    free(t->slot);
    t->slot = slot;
    memset(t->slot, 0xff, cap * sizeof *t->slot);
    t->slot_mask = cap - 1;
    for (uint32_t i = 0; i < t->n_str; i++) insert_token(t, (int32_t)i);
    return QF_OK;
}

static bool grow(void **p, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return true;
    uint64_t c = QF_MAX(need, 2 * *cap);
    void *q = c <= SIZE_MAX / elem ? realloc(*p, (size_t)(c * elem)) : NULL;
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* The string id of s[0..n), interning it when it is new. */
static qf_status intern(qf_tokenizer *t, const char *s, size_t n, int32_t *id, qf_error *err) {
    if ((*id = find_str(t, s, n)) >= 0) return QF_OK;
    if (t->n_str >= INT32_MAX || n > UINT32_MAX) return qf_fail(err, QF_E_INPUT, "tokenizer.ggml.merges: too many texts");
    if (!grow((void **)&t->pool, &t->pool_cap, t->pool_len + n + 1, 1)) return oom(err);
    if (t->n_str == t->str_cap) { /* off and len share one capacity */
        uint64_t off_cap = t->str_cap, len_cap = t->str_cap;
        if (!grow((void **)&t->off, &off_cap, t->str_cap + 1, sizeof *t->off) ||
            !grow((void **)&t->len, &len_cap, t->str_cap + 1, sizeof *t->len))
            return oom(err);
        t->str_cap = QF_MIN(off_cap, len_cap);
    }
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = '\0';
    t->off[t->n_str] = t->pool_len, t->len[t->n_str] = (uint32_t)n;
    t->pool_len += n + 1;
    *id = (int32_t)t->n_str++;
    if (2 * ((uint64_t)t->n_str + 1) > t->slot_mask + 1) return build_index(t, err);
    insert_token(t, *id);
    return QF_OK;
}

static int32_t find_cstr(const qf_tokenizer *t, const char *s) { return lookup(t, s, strlen(s)); }

/* Token texts llama.cpp marks as end-of-generation or fill-in-the-middle by name; it forces CONTROL on
 * them, which takes them out of the user-defined split when special parsing is off. */
static const char *const k_forced_control[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
    "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
    "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

static uint8_t attr_of_type(int32_t type) {
    switch (type) {
        case QF_TOK_NORMAL: return A_NORMAL;
        case QF_TOK_UNKNOWN: return A_UNKNOWN;
        case QF_TOK_CONTROL: return A_CONTROL;
        case QF_TOK_USER_DEFINED: return A_USER;
        case QF_TOK_UNUSED: return A_UNUSED;
        case QF_TOK_BYTE: return A_BYTE;
        default: return 0; /* llama.cpp's UNDEFINED */
    }
}

/* Token attributes after llama.cpp's load-time fix-ups that change how text is split (llama-vocab.cpp
 * load: forced CONTROL by name, gpt-oss USER_DEFINED overrides, the o200k "<|end|>" and gemma4 "</s>"
 * workarounds). */
static void set_attrs(qf_tokenizer *t, const qf_vocab *v) {
    for (uint32_t i = 0; i < t->n; i++) t->attr[i] = v->types ? attr_of_type(v->types[i]) : A_NORMAL;
    for (size_t k = 0; k < QF_ARRAY_LEN(k_forced_control); k++) {
        int32_t id = find_cstr(t, k_forced_control[k]);
        if (id >= 0) t->attr[id] |= A_CONTROL;
    }
    static const char *const gpt_oss[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>" };
    for (size_t k = 0; k < QF_ARRAY_LEN(gpt_oss); k++) {
        int32_t id = find_cstr(t, gpt_oss[k]);
        if (id >= 0) t->attr[id] = A_USER;
    }
    int32_t end = find_cstr(t, "<|end|>");
    bool has_call = find_cstr(t, "<|call|>") >= 0 || find_cstr(t, "<|calls|>") >= 0;
    bool has_ret_or_flush = find_cstr(t, "<|return|>") >= 0 || find_cstr(t, "<|flush|>") >= 0;
    if (end >= 0 && has_call && has_ret_or_flush) t->attr[end] = A_USER;
    int32_t eos_s = find_cstr(t, "</s>");
    if (eos_s >= 0 && find_cstr(t, "<|tool_response>") >= 0) t->attr[eos_s] = A_NORMAL;
}

static int cmp_special(const void *pa, const void *pb, void *ctx) {
    const qf_tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (t->len[a] != t->len[b]) return t->len[a] > t->len[b] ? -1 : 1;
    return (a > b) - (a < b); /* llama.cpp's std::sort leaves equal lengths unordered; take id order */
}

/* llama.cpp's cache_special_tokens: every control, user-defined or unknown token, longest first. Without
 * parse_special only the user-defined ones that are neither control nor unknown are cut out. */
static qf_status collect_special_tokens(qf_tokenizer *t, qf_error *err) {
    if (!(t->special = qf_malloc_n(t->n, sizeof *t->special))) return oom(err);
    for (uint32_t i = 0; i < t->n; i++)
        if (t->attr[i] & (A_CONTROL | A_USER | A_UNKNOWN)) t->special[t->n_special++] = (int32_t)i;
    qsort_r(t->special, t->n_special, sizeof *t->special, cmp_special, t);
    return QF_OK;
}

/* ---- BPE merges --------------------------------------------------------------------------------- */

static uint64_t pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1); }

static uint64_t pair_slot(const qf_tokenizer *t, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint64_t i = (h ^ (h >> 31)) & t->pair_mask;
    while (t->pair_key[i] && t->pair_key[i] != key) i = (i + 1) & t->pair_mask;
    return i;
}

/* Rank of merging left and right (token ids), or -1. */
static int32_t pair_rank(const qf_tokenizer *t, int32_t l, int32_t r, int32_t *merged) {
    if (l < 0 || r < 0 || !t->pair_key) return -1;
    uint64_t i = pair_slot(t, pair_key(l, r));
    if (!t->pair_key[i]) return -1;
    *merged = t->pair_id[i];
    return t->pair_rank[i];
}

/* One merge line "left right" (split at the first space after position 0, as llama.cpp does). Its parts
 * and result need not be tokens: the converter rewrites some added tokens (U+2581 -> ' ') that merges
 * still name, and llama.cpp matches merges by text. */
static qf_status add_merge(qf_tokenizer *t, const char *m, uint64_t rank, char **buf, size_t *cap, qf_error *err) {
    const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
    if (!sp) return qf_fail(err, QF_E_INPUT, "tokenizer.ggml.merges[%llu]: '%.60s' is not two space-separated tokens",
                            (unsigned long long)rank, m);
    size_t ll = (size_t)(sp - m), rl = strlen(sp + 1);
    if (ll + rl + 1 > *cap) {
        char *nb = realloc(*buf, ll + rl + 1);
        if (!nb) return oom(err);
        *buf = nb, *cap = ll + rl + 1;
    }
    memcpy(*buf, m, ll);
    memcpy(*buf + ll, sp + 1, rl);
    int32_t l, r, merged;
    qf_status st = intern(t, m, ll, &l, err);
    if (!st) st = intern(t, sp + 1, rl, &r, err);
    if (!st) st = intern(t, *buf, ll + rl, &merged, err);
    if (st) return st;
    uint64_t i = pair_slot(t, pair_key(l, r));
    if (t->pair_key[i]) return QF_OK; /* first listing keeps its rank (bpe_ranks.emplace) */
    t->pair_key[i] = pair_key(l, r);
    t->pair_rank[i] = (int32_t)rank;
    t->pair_id[i] = merged;
    return QF_OK;
}

static qf_status build_merges(qf_tokenizer *t, const qf_vocab *v, qf_error *err) {
    if (v->n_merges > INT32_MAX) return qf_fail(err, QF_E_INPUT, "tokenizer.ggml.merges: %llu merges is too many",
                                                (unsigned long long)v->n_merges);
    if (v->n_merges && !v->merges) return qf_fail(err, QF_E_INPUT, "tokenizer.ggml.merges: missing");
    uint64_t cap = table_size(v->n_merges);
    t->pair_key = qf_calloc_n(cap, sizeof *t->pair_key);
    t->pair_rank = qf_malloc_n(cap, sizeof *t->pair_rank);
    t->pair_id = qf_malloc_n(cap, sizeof *t->pair_id);
    if (!t->pair_key || !t->pair_rank || !t->pair_id) return oom(err);
    t->pair_mask = cap - 1;
    char *buf = NULL;
    size_t bcap = 0;
    qf_status st = QF_OK;
    for (uint64_t i = 0; i < v->n_merges && !st; i++) {
        if (!v->merges[i]) st = qf_fail(err, QF_E_INPUT, "tokenizer.ggml.merges[%llu]: missing", (unsigned long long)i);
        else st = add_merge(t, v->merges[i], i, &buf, &bcap, err);
    }
    free(buf);
    return st;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100.. */
static void build_gpt2_bytes(qf_tokenizer *t) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = keep ? b : next++;
        if (cp < 0x80) { t->gpt2[b][0] = (char)cp; t->gpt2_len[b] = 1; }
        else {
            t->gpt2[b][0] = (char)(0xC0 | (cp >> 6));
            t->gpt2[b][1] = (char)(0x80 | (cp & 0x3F));
            t->gpt2_len[b] = 2;
        }
    }
}

/* Single-byte fallback tokens: SPM looks up "<0xNN>" then the raw byte; byte-level BPE the raw byte
 * string (which llama.cpp looks up per byte of the GPT-2-encoded text, so usually only ASCII bytes hit);
 * SentencePiece-style BPE only "<0xNN>". */
static void build_byte_tokens(qf_tokenizer *t) {
    bool hex = t->kind == KIND_SPM || !t->byte_encode, raw_too = t->kind == KIND_SPM || t->byte_encode;
    for (int b = 0; b < 256; b++) {
        char s[8];
        char raw = (char)b;
        int32_t id = -1;
        if (hex) {
            snprintf(s, sizeof s, "<0x%02X>", b);
            id = lookup(t, s, 6);
        }
        t->byte_tok[b] = id >= 0 || !raw_too ? id : lookup(t, &raw, 1);
    }
}

/* ---- pre-tokenizer regexes ---------------------------------------------------------------------- */

/* llama.cpp's regex lists per tokenizer.ggml.pre (llm_tokenizer_bpe's constructor), in its spelling.
 * compile_regex() adapts them to PCRE2. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"

/* What a pre-tokenizer type changes besides its regexes (llama_vocab::impl::load, llm_tokenizer_bpe). */
enum {
    PRE_IGNORE_MERGES = 1, /* a word that is itself a token is not merged */
    PRE_ADD_BOS = 2,       /* add_bos defaults to true */
    PRE_NO_BOS = 4,        /* the default BOS id is cleared */
    PRE_RAW_UTF8 = 8,      /* SentencePiece-style BPE: spaces become U+2581, no GPT-2 byte mapping, <0xNN> bytes */
    PRE_GEMMA4 = 16,       /* a word of only newlines that is a token stays whole; add_bos forced on */
};

typedef struct {
    const char *names;             /* space-separated tokenizer.ggml.pre values */
    unsigned flags;                /* PRE_* */
    const char *re[MAX_REGEX];
} pre_def;

static const pre_def k_pre[] = {
    { "default", 0,
      { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" } },
    { "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", PRE_IGNORE_MERGES | PRE_ADD_BOS,
      { RE_LLAMA3 } },
    { "dbrx smaug-bpe", 0, { RE_LLAMA3 } },
    { "deepseek-llm", 0,
      { "[\r\n]",
        "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
        /* llama.cpp's class ends in U+3000-U+3002, but it maps U+3000 to \v before matching (std::wregex
         * has no Unicode \s), so the ideographic space never matches the class: start the range at U+3001. */
        "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x81-\xe3\x80\x82]+",
        "\\s+$",
        "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
        "\\p{N}+" } },
    { "deepseek-v3 joyai-llm hunyuan-dense hy_v4", 0,
      { "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+" } },
    { "deepseek-coder", 0,
      { "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
        "\\p{N}" } },
    { "falcon", 0,
      { "[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]" } },
    { "starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", 0,
      { "\\p{N}", RE_GPT2 } },
    { "gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert jina-v1-en "
      "jina-v2-code roberta-bpe exaone4 mpt olmo jais trillion granite-docling", 0,
      { RE_GPT2 } },
    { "qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open", 0,
      { RE_QWEN2 } },
    { "qwen35", 0,
      { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "glm4 chatglm-bpe", PRE_NO_BOS,
      { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "poro-chat bloom gpt3-finnish", 0, { RE_PORO } },
    { "viking", 0, { RE_PORO, "\\p{N}" } },
    { "tekken", PRE_IGNORE_MERGES | PRE_ADD_BOS,
      { "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "seed-coder", 0,
      { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "grok-2", 0, { RE_QWEN2 } },
    { "ufakzeka", 0,
      { "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "bailingmoe bailingmoe2 llada-moe", 0,
      { "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+" } },
    /* SentencePiece-style BPE (Gemma's tokenizer.json): no word splitting beyond newline runs */
    { "gemma4 granite-embed-multi-311m", PRE_RAW_UTF8 | PRE_GEMMA4, { "[^\\n]+|[\\n]+" } },
    { "sarvam-moe", PRE_RAW_UTF8, { "[^\\n]+|[\\n]+" } },
    { "minicpm5", PRE_IGNORE_MERGES,
      { "\\p{N}{1,3}",
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
};

static bool name_in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        p += l + (e != NULL);
    }
    return false;
}

/* llama.cpp's \s: what unicode_cpt_flags calls whitespace (Unicode White_Space) — std::regex sees these
 * because llama.cpp rewrites non-ASCII whitespace to \v first. PCRE2's own \s lacks U+0085. */
#define WS_MEMBERS "\\t\\n\\x0B\\f\\r \\x{85}\\p{Z}"

/* Append n bytes to a bounded buffer; false when it would overflow. */
static bool put(char *dst, size_t cap, size_t *at, const char *s, size_t n) {
    if (*at + n >= cap) return false;
    memcpy(dst + *at, s, n);
    *at += n;
    dst[*at] = '\0';
    return true;
}

/* Rewrite a llama.cpp regex for PCRE2: \s and \S become llama.cpp's whitespace set, and \p{Lu} etc. become
 * \p{L} (llama.cpp collapses every letter to one class before matching, so it cannot tell them apart). */
static bool adapt_regex(const char *re, char *out, size_t cap) {
    size_t at = 0;
    bool inside = false;
    out[0] = '\0';
    for (const char *p = re; *p; p++) {
        bool ok = true;
        if (p[0] == '\\' && (p[1] == 's' || p[1] == 'S')) {
            if (p[1] == 'S' && inside) return false; /* no llama.cpp pattern needs this */
            const char *open = p[1] == 's' ? "[" : "[^";
            if (!inside) ok = put(out, cap, &at, open, strlen(open));
            ok = ok && put(out, cap, &at, WS_MEMBERS, strlen(WS_MEMBERS));
            if (!inside) ok = ok && put(out, cap, &at, "]", 1);
            p++;
        } else if (p[0] == '\\' && p[1] == 'p' && p[2] == '{' && p[3] == 'L' && p[4] && p[4] != '}' && p[5] == '}') {
            ok = put(out, cap, &at, "\\p{L}", 5);
            p += 5;
        } else if (p[0] == '\\' && p[1]) {
            ok = put(out, cap, &at, p, 2);
            p++;
        } else {
            if (p[0] == '[' && !inside) inside = true;
            else if (p[0] == ']' && inside) inside = false;
            ok = put(out, cap, &at, p, 1);
        }
        if (!ok) return false;
    }
    return true;
}

static qf_status compile_regex(qf_tokenizer *t, const char *re, qf_error *err) {
    char buf[4096];
    if (!adapt_regex(re, buf, sizeof buf))
        return qf_fail(err, QF_E_INTERNAL, "tokenizer: cannot adapt pre-tokenizer regex '%.80s'", re);
    int code;
    PCRE2_SIZE at;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)buf, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &code,
                                  &at, NULL);
    if (!c) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return qf_fail(err, QF_E_INTERNAL, "tokenizer: PCRE2 rejects '%.80s' at %zu: %s", buf, (size_t)at, (char *)msg);
    }
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* interpreted matching is the fallback */
    t->re[t->n_re++] = c;
    return QF_OK;
}

static qf_status setup_pre(qf_tokenizer *t, const char *pre, qf_error *err) {
    const char *name = pre[0] ? pre : "default";
    for (size_t i = 0; i < QF_ARRAY_LEN(k_pre); i++) {
        const pre_def *d = &k_pre[i];
        if (!name_in_list(d->names, name)) continue;
        t->ignore_merges = d->flags & PRE_IGNORE_MERGES;
        t->wants_bos = d->flags & PRE_ADD_BOS;
        if (d->flags & PRE_NO_BOS) t->bos = -1;
        t->byte_encode = !(d->flags & PRE_RAW_UTF8);
        t->escape_spaces = d->flags & PRE_RAW_UTF8;
        t->newline_words = t->force_bos = d->flags & PRE_GEMMA4;
        qf_status st = QF_OK;
        for (int k = 0; k < MAX_REGEX && d->re[k] && !st; k++) st = compile_regex(t, d->re[k], err);
        return st;
    }
    return qf_fail(err, QF_E_UNSUPPORTED, "tokenizer.ggml.pre '%s': pre-tokenizer not supported", pre);
}

/* ---- construction ------------------------------------------------------------------------------- */

/* A default special id, dropped when the vocab is too small for it (as llama.cpp disables it). */
static int32_t default_id(const qf_tokenizer *t, int32_t id) { return id >= 0 && (uint32_t)id < t->n ? id : -1; }

/* Special ids and flags: llama.cpp's per-model defaults, then the vocab's keys (apply_vocab_flags). */
static qf_status setup_specials(qf_tokenizer *t, const qf_vocab *v, qf_error *err) {
    bool spm = t->kind == KIND_SPM;
    t->bos = default_id(t, spm ? 1 : 11);
    t->eos = default_id(t, spm ? 2 : 11);
    t->unk = default_id(t, spm ? 0 : -1);
    t->wants_bos = spm;
    t->space_prefix = spm;
    t->byte_encode = true;
    if (v->bos_id >= (int64_t)t->n || v->eos_id >= (int64_t)t->n || v->unk_id >= (int64_t)t->n)
        return qf_fail(err, QF_E_INPUT, "tokenizer: special id (bos %lld, eos %lld, unk %lld) outside the %u tokens",
                       (long long)v->bos_id, (long long)v->eos_id, (long long)v->unk_id, t->n);
    return QF_OK;
}

static void apply_vocab_flags(qf_tokenizer *t, const qf_vocab *v) {
    if (v->bos_id >= 0) t->bos = (int32_t)v->bos_id;
    if (v->eos_id >= 0) t->eos = (int32_t)v->eos_id;
    if (v->unk_id >= 0) t->unk = (int32_t)v->unk_id;
    if (v->add_bos >= 0) t->wants_bos = v->add_bos;
    if (v->add_eos >= 0) t->wants_eos = v->add_eos;
    if (t->force_bos) t->wants_bos = true; /* llama.cpp's Gemma 4 override of add_bos_token */
    if (v->add_space_prefix >= 0 && t->kind == KIND_SPM) t->space_prefix = v->add_space_prefix;
}

static qf_status tokenizer_init(qf_tokenizer *t, const qf_vocab *v, qf_error *err) {
    if (strcmp(v->model, "llama") == 0) t->kind = KIND_SPM;
    else if (strcmp(v->model, "gpt2") == 0) t->kind = KIND_BPE;
    else return qf_fail(err, QF_E_UNSUPPORTED, "tokenizer.ggml.model '%s': only 'llama' (SPM) and 'gpt2' (BPE) are supported", v->model);
    if (v->n_tokens == 0 || v->n_tokens > INT32_MAX)
        return qf_fail(err, QF_E_INPUT, "tokenizer: %u tokens", v->n_tokens);
    t->n = v->n_tokens;
    qf_status st = copy_tokens(t, v, err);
    if (!st) st = build_index(t, err);
    if (st) return st;
    if (!(t->score = qf_calloc_n(t->n, sizeof *t->score)) || !(t->attr = qf_malloc_n(t->n, 1))) return oom(err);
    if (v->scores) memcpy(t->score, v->scores, (size_t)t->n * sizeof *t->score);
    set_attrs(t, v);
    if ((st = collect_special_tokens(t, err)) || (st = setup_specials(t, v, err))) return st;
    if (t->kind == KIND_BPE) {
        build_gpt2_bytes(t);
        if ((st = setup_pre(t, v->pre, err)) || (st = build_merges(t, v, err))) return st;
    }
    build_byte_tokens(t);
    apply_vocab_flags(t, v);
    return QF_OK;
}

qf_status qf_tokenizer_new(const qf_vocab *v, qf_tokenizer **out, qf_error *err) {
    *out = NULL;
    qf_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return oom(err);
    qf_status st = tokenizer_init(t, v, err);
    if (st) { qf_tokenizer_free(t); return st; }
    *out = t;
    return QF_OK;
}

void qf_tokenizer_free(qf_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->pool); free(t->off); free(t->len); free(t->score); free(t->attr); free(t->slot);
    free(t->pair_key); free(t->pair_rank); free(t->pair_id); free(t->special);
    free(t);
}

const char *qf_token_text(const qf_tokenizer *t, int32_t id) {
    return id >= 0 && (uint32_t)id < t->n ? tok_str(t, id) : NULL;
}
int32_t qf_tokenizer_bos(const qf_tokenizer *t) { return t->bos; }
uint32_t qf_tokenizer_n_vocab(const qf_tokenizer *t) { return t->n; }
bool qf_tokenizer_wants_bos(const qf_tokenizer *t) { return t->wants_bos; }
bool qf_tokenizer_wants_eos(const qf_tokenizer *t) { return t->wants_eos; }

/* ---- merging: one symbol per UTF-8 character, linked list, binary heap of candidate pairs ---------- */

typedef struct { int32_t prev, next; uint32_t start, n; int32_t id; } sym;
/* A candidate merge of symbols left and right; prio: SPM score (higher first) or BPE rank (lower first,
 * stored negated so both use "higher first"; a double holds every float score and int32 rank exactly).
 * size = bytes of both at creation, to spot stale entries. */
typedef struct { int32_t left, right; double prio; int32_t rank_id; uint32_t size; } bigram;
typedef struct { bigram *v; size_t n, cap; } heap;

static bool heap_before(const bigram *a, const bigram *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static bool heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v, h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && heap_before(&b, &h->v[(i - 1) / 2])) { h->v[i] = h->v[(i - 1) / 2]; i = (i - 1) / 2; }
    h->v[i] = b;
    return true;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && heap_before(&h->v[c + 1], &h->v[c])) c++;
        if (!heap_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* llama.cpp's unicode_len_utf8: length from the lead byte alone, truncated at the end of the text. */
static uint32_t utf8_len(uint8_t lead) {
    static const uint8_t k[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return k[lead >> 4];
}

/* Symbols for the characters of s[0..n); ids looked up when with_ids. NULL on OOM. */
static sym *split_chars(const qf_tokenizer *t, const char *s, size_t n, bool with_ids, size_t *count) {
    sym *y = qf_malloc_n(n ? n : 1, sizeof *y);
    if (!y) return NULL;
    size_t k = 0;
    for (size_t at = 0; at < n; k++) {
        uint32_t l = (uint32_t)QF_MIN((size_t)utf8_len((uint8_t)s[at]), n - at);
        y[k] = (sym){ (int32_t)k - 1, at + l == n ? -1 : (int32_t)k + 1, (uint32_t)at, l,
                      with_ids ? find_str(t, s + at, l) : -1 };
        at += l;
    }
    *count = k;
    return y;
}

/* Merge right into left and unlink right. */
static void merge_syms(sym *y, const bigram *b) {
    sym *l = &y[b->left], *r = &y[b->right];
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) y[r->next].prev = b->left;
}

static bool stale(const sym *y, const bigram *b) {
    return y[b->left].n == 0 || y[b->right].n == 0 || y[b->left].n + y[b->right].n != b->size;
}

/* SPM: a pair is a candidate when its concatenation is a token; priority is that token's score. */
static bool spm_try_pair(const qf_tokenizer *t, const char *s, const sym *y, heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    uint32_t size = y[l].n + y[r].n;
    int32_t id = lookup(t, s + y[l].start, size);
    if (id < 0) return true;
    return heap_push(h, (bigram){ l, r, t->score[id], id, size });
}

static qf_status spm_emit(const qf_tokenizer *t, const char *s, const sym *y, size_t count, idvec *out, qf_error *err) {
    for (int32_t i = count ? 0 : -1; i != -1; i = y[i].next) {
        int32_t id = lookup(t, s + y[i].start, y[i].n);
        if (id >= 0) { if (!idvec_push(out, id)) return oom(err); continue; }
        for (uint32_t k = 0; k < y[i].n; k++) { /* byte fallback */
            uint8_t b = (uint8_t)s[y[i].start + k];
            int32_t bt = t->byte_tok[b] >= 0 ? t->byte_tok[b] : t->unk;
            if (bt < 0) return qf_fail(err, QF_E_INPUT, "tokenizer: no token for byte 0x%02X and no unknown token", b);
            if (!idvec_push(out, bt)) return oom(err);
        }
    }
    return QF_OK;
}

static qf_status spm_encode(const qf_tokenizer *t, const char *s, size_t n, idvec *out, qf_error *err) {
    size_t count;
    sym *y = split_chars(t, s, n, false, &count);
    heap h = { 0 };
    bool ok = y != NULL;
    for (size_t i = 1; ok && i < count; i++) ok = spm_try_pair(t, s, y, &h, (int32_t)i - 1, (int32_t)i);
    while (ok && h.n) {
        bigram b = heap_pop(&h);
        if (stale(y, &b)) continue;
        merge_syms(y, &b);
        ok = spm_try_pair(t, s, y, &h, y[b.left].prev, b.left) && spm_try_pair(t, s, y, &h, b.left, y[b.left].next);
    }
    qf_status st = ok ? spm_emit(t, s, y, count, out, err) : oom(err);
    free(y);
    free(h.v);
    return st;
}

/* SPM text as llama.cpp feeds it: optional leading space, then every ' ' -> U+2581. */
static char *spm_escape(const char *s, size_t n, bool prefix, size_t *out_n) {
    size_t spaces = prefix;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    uint64_t total;
    if (!qf_add_ok(n + prefix, 2 * (uint64_t)spaces, &total)) return NULL;
    char *e = qf_malloc_n(total, 1);
    if (!e) return NULL;
    size_t at = 0;
    if (prefix) { memcpy(e, "\xe2\x96\x81", 3); at = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(e + at, "\xe2\x96\x81", 3); at += 3; }
        else e[at++] = s[i];
    }
    *out_n = at;
    return e;
}

/* ---- BPE ---------------------------------------------------------------------------------------- */

static bool bpe_try_pair(const qf_tokenizer *t, const sym *y, heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    int32_t merged = -1, rank = pair_rank(t, y[l].id, y[r].id, &merged);
    if (rank < 0) return true;
    return heap_push(h, (bigram){ l, r, -(double)rank, merged, y[l].n + y[r].n });
}

static qf_status bpe_emit(const qf_tokenizer *t, const char *s, const sym *y, size_t count, idvec *out, qf_error *err) {
    for (int32_t i = count ? 0 : -1; i != -1; i = y[i].next) {
        if ((uint32_t)y[i].id < t->n) { if (!idvec_push(out, y[i].id)) return oom(err); continue; }
        for (uint32_t k = 0; k < y[i].n; k++) { /* llama.cpp: each byte of the encoded text, if a token */
            int32_t bt = t->byte_tok[(uint8_t)s[y[i].start + k]];
            if (bt >= 0 && !idvec_push(out, bt)) return oom(err);
        }
    }
    return QF_OK;
}

static bool only_newlines(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\n') return false;
    return true;
}

/* Merge one word (GPT-2-encoded, or UTF-8 for SentencePiece-style BPE). */
static qf_status bpe_word(const qf_tokenizer *t, const char *s, size_t n, idvec *out, qf_error *err) {
    if (t->ignore_merges || (t->newline_words && only_newlines(s, n))) {
        int32_t id = lookup(t, s, n);
        if (id >= 0) return idvec_push(out, id) ? QF_OK : oom(err);
    }
    size_t count;
    sym *y = split_chars(t, s, n, true, &count);
    heap h = { 0 };
    bool ok = y != NULL;
    for (size_t i = 1; ok && i < count; i++) ok = bpe_try_pair(t, y, &h, (int32_t)i - 1, (int32_t)i);
    while (ok && h.n) {
        bigram b = heap_pop(&h);
        if (stale(y, &b)) continue;
        merge_syms(y, &b);
        y[b.left].id = b.rank_id;
        ok = bpe_try_pair(t, y, &h, y[b.left].prev, b.left) && bpe_try_pair(t, y, &h, b.left, y[b.left].next);
    }
    qf_status st = ok ? bpe_emit(t, s, y, count, out, err) : oom(err);
    free(y);
    free(h.v);
    return st;
}

/* Decode as llama.cpp's unicode_cpts_from_utf8 does (a bad byte becomes U+FFFD and is skipped alone), then
 * re-encode, so PCRE2 sees valid UTF-8. Surrogates and values above U+10FFFF also become U+FFFD. */
static uint32_t decode_cpt(const uint8_t *s, size_t n, size_t *i) {
    uint8_t b = s[*i];
    if (b < 0x80) { (*i)++; return b; }
    /* continuation bytes take the "invalid" arm (need 0); F8..FF too */
    size_t need = !(b & 0x40) ? 0 : !(b & 0x20) ? 1 : !(b & 0x10) ? 2 : !(b & 0x08) ? 3 : 0;
    if (need == 0 || *i + need >= n) { (*i)++; return 0xFFFD; }
    uint32_t cp = need == 1 ? (b & 0x1Fu) : need == 2 ? (b & 0x0Fu) : (b & 0x07u);
    for (size_t k = 1; k <= need; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) { (*i)++; return 0xFFFD; }
        cp = (cp << 6) | (s[*i + k] & 0x3Fu);
    }
    *i += need + 1;
    return (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF ? 0xFFFD : cp;
}

static size_t encode_cpt(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Valid UTF-8 copy of s (at most 3 bytes out per byte in: U+FFFD for one bad byte). */
static char *sanitize_utf8(const char *s, size_t n, size_t *out_n) {
    char *o = qf_malloc_n(n, 3);
    if (!o) return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n;) at += encode_cpt(decode_cpt((const uint8_t *)s, n, &i), o + at);
    *out_n = at;
    return o;
}

/* Word boundaries as byte ranges over the sanitized text. */
typedef struct { size_t *off, *len; size_t n, cap; } spans;

static bool spans_push(spans *w, size_t off, size_t len) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        size_t *o = realloc(w->off, cap * sizeof *o);
        if (!o) return false;
        w->off = o;
        size_t *l = realloc(w->len, cap * sizeof *l);
        if (!l) return false;
        w->len = l, w->cap = cap;
    }
    w->off[w->n] = off, w->len[w->n] = len;
    w->n++;
    return true;
}

static void spans_free(spans *w) { free(w->off); free(w->len); }

static size_t next_char(const char *s, size_t n, size_t at) {
    at++;
    while (at < n && ((uint8_t)s[at] & 0xC0) == 0x80) at++;
    return at;
}

/* Split one span by one regex as std::regex_iterator does in unicode_regex_split_stl: every match and
 * every gap between matches becomes a word; an empty match only marks a boundary. */
static qf_status split_span(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t off, size_t len,
                            spans *out, qf_error *err) {
    const char *sub = s + off;
    size_t pos = 0, prev = 0;
    uint32_t opts = 0;
    while (pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)sub, len, pos, opts | PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) { /* a limit was hit: never drop text silently */
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qf_fail(err, QF_E_INTERNAL, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", off + pos, (char *)msg);
        }
        if (rc < 0) {
            if (opts == 0 || pos >= len) break;
            opts = 0; /* empty match retried non-empty and failed: move on one character */
            pos = next_char(sub, len, pos);
            continue;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if ((ms > prev && !spans_push(out, off + prev, ms - prev)) || (me > ms && !spans_push(out, off + ms, me - ms)))
            return oom(err);
        prev = me;
        pos = me;
        opts = me == ms ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    return prev >= len || spans_push(out, off + prev, len - prev) ? QF_OK : oom(err);
}

/* Pre-tokenize: apply each regex to every word produced by the previous one. */
static qf_status pre_split(const qf_tokenizer *t, const char *s, size_t n, spans *words, qf_error *err) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md || !spans_push(words, 0, n)) { pcre2_match_data_free(md); return oom(err); }
    qf_status st = QF_OK;
    for (int r = 0; !st && r < t->n_re; r++) {
        spans next = { 0 };
        for (size_t i = 0; !st && i < words->n; i++)
            st = split_span(t->re[r], md, s, words->off[i], words->len[i], &next, err);
        spans_free(words);
        *words = next;
    }
    pcre2_match_data_free(md);
    return st;
}

/* GPT-2 byte encoding of one word into buf (grown as needed). */
static bool gpt2_encode(const qf_tokenizer *t, const char *w, size_t n, char **buf, size_t *cap, size_t *out_n) {
    if (2 * n > *cap) {
        char *nb = realloc(*buf, 2 * n);
        if (!nb) return false;
        *buf = nb, *cap = 2 * n;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)w[i];
        memcpy(*buf + at, t->gpt2[b], t->gpt2_len[b]);
        at += t->gpt2_len[b];
    }
    *out_n = at;
    return true;
}

static qf_status bpe_fragment(const qf_tokenizer *t, const char *text, size_t len, idvec *out, qf_error *err) {
    size_t n, en = len;
    char *escaped = t->escape_spaces ? spm_escape(text, len, false, &en) : NULL;
    if (t->escape_spaces && !escaped) return oom(err);
    char *s = sanitize_utf8(escaped ? escaped : text, en, &n);
    free(escaped);
    if (!s) return oom(err);
    spans words = { 0 };
    qf_status st = pre_split(t, s, n, &words, err);
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; !st && i < words.n; i++) {
        const char *w = s + words.off[i];
        size_t wn = words.len[i];
        if (wn == 0) continue;
        if (t->byte_encode && !gpt2_encode(t, w, wn, &buf, &cap, &wn)) st = oom(err);
        else st = bpe_word(t, t->byte_encode ? buf : w, wn, out, err);
    }
    free(buf);
    spans_free(&words);
    free(s);
    return st;
}

static qf_status spm_fragment(const qf_tokenizer *t, const char *text, size_t len, bool prefix, idvec *out, qf_error *err) {
    size_t n;
    char *e = spm_escape(text, len, prefix, &n);
    if (!e) return oom(err);
    qf_status st = spm_encode(t, e, n, out, err);
    free(e);
    return st;
}

/* ---- user-defined token split ------------------------------------------------------------------- */

/* A piece of the input: raw text [off, off+len) when tok < 0, else the token tok. */
typedef struct { int32_t tok; size_t off, len; } frag;
typedef struct { frag *v; size_t n, cap; } frags;

static bool frags_push(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v, f->cap = cap;
    }
    f->v[f->n++] = x;
    return true;
}

/* Cut every occurrence of token id out of the raw fragments (tokenizer_st_partition). */
static bool cut_token(const qf_tokenizer *t, int32_t id, const char *text, frags *f) {
    frags out = { 0 };
    const char *tx = tok_str(t, id);
    size_t tl = t->len[id];
    bool ok = true;
    for (size_t i = 0; ok && i < f->n; i++) {
        frag x = f->v[i];
        if (x.tok >= 0) { ok = frags_push(&out, x); continue; }
        size_t at = x.off, end = x.off + x.len;
        const char *m;
        while (ok && end - at >= tl && (m = memmem(text + at, end - at, tx, tl))) {
            size_t mo = (size_t)(m - text);
            if (mo > at) ok = frags_push(&out, (frag){ -1, at, mo - at });
            ok = ok && frags_push(&out, (frag){ id, 0, 0 });
            at = mo + tl;
        }
        if (ok && at < end) ok = frags_push(&out, (frag){ -1, at, end - at });
    }
    free(f->v);
    *f = out;
    return ok;
}

/* Which byte pairs (and single bytes) occur in the text: lets the cut skip the many user-defined tokens
 * (thousands in some SPM vocabs) that cannot occur, without changing the longest-first order. */
typedef struct { uint64_t pair[65536 / 64], byte[4]; } present;

static bool may_occur(const present *p, const char *s, uint32_t n) {
    uint8_t a = (uint8_t)s[0];
    if (n == 1) return p->byte[a >> 6] >> (a & 63) & 1;
    uint32_t k = (uint32_t)a << 8 | (uint8_t)s[1];
    return p->pair[k >> 6] >> (k & 63) & 1;
}

/* Cut the special tokens out of the text (tokenizer_st_partition); control and unknown tokens only when
 * parse_special. */
static qf_status partition(const qf_tokenizer *t, const char *text, size_t len, bool parse_special, frags *f,
                           qf_error *err) {
    if (len && !frags_push(f, (frag){ -1, 0, len })) return oom(err);
    if (!t->n_special || !len) return QF_OK;
    present *p = calloc(1, sizeof *p);
    if (!p) return oom(err);
    for (size_t i = 0; i < len; i++) {
        uint8_t a = (uint8_t)text[i];
        p->byte[a >> 6] |= 1ull << (a & 63);
        if (i + 1 < len) {
            uint32_t k = (uint32_t)a << 8 | (uint8_t)text[i + 1];
            p->pair[k >> 6] |= 1ull << (k & 63);
        }
    }
    bool ok = true;
    for (uint32_t k = 0; ok && k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && (t->attr[id] & (A_CONTROL | A_UNKNOWN))) continue;
        if (t->len[id] <= len && may_occur(p, tok_str(t, id), t->len[id])) ok = cut_token(t, id, text, f);
    }
    free(p);
    return ok ? QF_OK : oom(err);
}

/* ---- entry point -------------------------------------------------------------------------------- */

static qf_status encode_all(const qf_tokenizer *t, const char *text, size_t len, bool add_bos, bool add_eos,
                            bool parse_special, idvec *out, qf_error *err) {
    if (add_bos && t->bos >= 0 && !idvec_push(out, t->bos)) return oom(err);
    frags f = { 0 };
    qf_status st = partition(t, text, len, parse_special, &f, err);
    bool prev_special = true; /* SPM: the first fragment and any after a token get the dummy prefix */
    for (size_t i = 0; !st && i < f.n; i++) {
        const frag *x = &f.v[i];
        if (x->tok >= 0) { st = idvec_push(out, x->tok) ? QF_OK : oom(err); prev_special = true; continue; }
        if (t->kind == KIND_SPM) st = spm_fragment(t, text + x->off, x->len, t->space_prefix && prev_special, out, err);
        else st = bpe_fragment(t, text + x->off, x->len, out, err);
        prev_special = false;
    }
    free(f.v);
    if (!st && add_eos && t->eos >= 0 && !idvec_push(out, t->eos)) st = oom(err);
    return st;
}

static qf_status tokenize(const qf_tokenizer *t, const char *text, size_t len, bool add_bos, bool add_eos,
                          bool parse_special, int32_t **ids, size_t *n, qf_error *err) {
    *ids = NULL, *n = 0;
    if (!text && len) return qf_fail(err, QF_E_USAGE, "qf_tokenize: NULL text with length %zu", len);
    idvec out = { 0 };
    qf_status st = encode_all(t, text, len, add_bos, add_eos, parse_special, &out, err);
    if (!st && !out.v && !(out.v = malloc(sizeof *out.v))) st = oom(err);
    if (st) { free(out.v); return st; }
    *ids = out.v, *n = out.n;
    return QF_OK;
}

qf_status qf_tokenize(const qf_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **ids, size_t *n,
                      qf_error *err) {
    return tokenize(t, text, len, add_bos, false, false, ids, n, err);
}

qf_status qf_tokenize_flags(const qf_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                            size_t *n, qf_error *err) {
    bool add = flags & QF_TOKENIZE_ADD_SPECIAL;
    return tokenize(t, text, len, add && t->wants_bos, add && t->wants_eos, flags & QF_TOKENIZE_PARSE_SPECIAL, ids,
                    n, err);
}
