/* llama.cpp's split layout: sizes, the cut, part names, the set identity's records (gguf_split.h). */
#include "formats/gguf_split.h"
#include "formats/digest.h"

#include <stdlib.h>

qf_status qf_split_parse_size(const char *s, uint64_t *bytes, qf_error *err) {
    size_t digits = strspn(s, "0123456789"), len = strlen(s);
    char unit = len ? s[len - 1] : '\0';
    uint64_t n = 0, scale = unit == 'M' ? 1000000ull : unit == 'G' ? 1000000000ull : 0;
    bool ok = digits > 0 && digits == len - 1 && scale;
    for (size_t i = 0; ok && i < digits; i++) {
        ok = n <= (UINT64_MAX / scale - (uint64_t)(s[i] - '0')) / 10; /* n * 10 + digit, times scale, fits */
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || n == 0)
        return qf_fail(err, QF_E_USAGE, "--split-max-size '%s': expected a positive whole number and M or G "
                       "(10^6 or 10^9 bytes, as llama-gguf-split), e.g. 500M or 50G", s);
    *bytes = n * scale;
    return QF_OK;
}

qf_status qf_split_layout(const uint64_t *nbytes, size_t n, const qf_split_opts *o, uint32_t *part_of,
                          uint32_t *n_parts, qf_error *err) {
    uint64_t used = 0; /* padded tensor bytes of the current part */
    uint32_t part = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t padded = nbytes[i];
        if (!qf_pad_ok(nbytes[i], QF_SPLIT_ALIGNMENT, &padded)) padded = UINT64_MAX;
        /* gguf-split: a new part when used + padded > max_bytes (written without overflowing) */
        bool full = o->max_bytes ? used > 0 && (used >= o->max_bytes || padded > o->max_bytes - used)
                                 : o->max_tensors && i > 0 && i % o->max_tensors == 0;
        if (full) {
            if (++part >= QF_SPLIT_MAX_PARTS)
                return qf_fail(err, QF_E_USAGE, "the split would take more than %u parts (llama.cpp's split.count is "
                               "a u16): allow larger parts", QF_SPLIT_MAX_PARTS);
            used = 0;
        }
        used = padded > UINT64_MAX - used ? UINT64_MAX : used + padded;
        part_of[i] = part;
    }
    *n_parts = part + 1;
    return QF_OK;
}

size_t qf_split_prefix_len(const char *out) {
    size_t len = strlen(out);
    return len > 5 && !strcmp(out + len - 5, ".gguf") ? len - 5 : len;
}

char *qf_split_part_path(const char *prefix, size_t prefix_len, uint32_t k, uint32_t n) {
    size_t cap = prefix_len + 32;
    char *p = malloc(cap);
    if (p) snprintf(p, cap, "%.*s-%05u-of-%05u.gguf", (int)prefix_len, prefix, k + 1, n);
    return p;
}

/* Five decimal digits at s, as a number. */
static bool five_digits(const char *s, uint32_t *v) {
    if (strspn(s, "0123456789") < 5) return false;
    *v = 0;
    for (int i = 0; i < 5; i++) *v = *v * 10 + (uint32_t)(s[i] - '0');
    return true;
}

bool qf_split_parse_name(const char *path, size_t *prefix_len, uint32_t *k, uint32_t *n) {
    static const size_t suffix = 21; /* "-00001-of-00003.gguf" plus at least one byte of prefix */
    size_t len = strlen(path);
    if (len < suffix) return false;
    const char *s = path + len - (suffix - 1);
    uint32_t no, count;
    if (s[0] != '-' || !five_digits(s + 1, &no) || strncmp(s + 6, "-of-", 4) != 0 || !five_digits(s + 10, &count) ||
        strcmp(s + 15, ".gguf") != 0 || no == 0)
        return false;
    *prefix_len = (size_t)(s - path);
    *k = no - 1;
    *n = count;
    return true;
}

bool qf_split_set_skips_key(const char *key) {
    return !strcmp(key, QF_SPLIT_KEY_NO) || !strcmp(key, QF_SPLIT_KEY_SET) || qf_integrity_is_key(key, 2);
}

size_t qf_split_tensor_record(const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint8_t *buf) {
    uint64_t len = strlen(name);
    if (len > 64) len = 64; /* GGUF names are shorter (gguf.c refuses longer ones) */
    if (n_dims > 4) n_dims = 4;
    uint8_t *p = buf;
    memcpy(p, &len, 8);
    memcpy(p += 8, name, (size_t)len);
    memcpy(p += len, &n_dims, 4);
    memcpy(p += 4, ne, n_dims * sizeof *ne);
    memcpy(p += n_dims * sizeof *ne, &type, 4);
    return (size_t)(p + 4 - buf);
}
