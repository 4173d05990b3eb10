/*
 * fuzz_qfz.c — transport packs through qf_unpack: header, index, frame geometry and the ratio bound
 * are validated before any frame is decoded, every frame must decode to its size and SHA-256, and a
 * GGUF inside is re-verified. Besides the shared contract (with a failed check, exit 1, allowed: damaged
 * data is a check), a failed unpack leaves no output and no temp file, and a successful one writes
 * exactly raw_bytes bytes.
 */
#include "fuzz_util.h"

#include <dirent.h>

static int temps_in(const char *dir) {
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".qf-") != NULL;
    if (d) closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = qf_fuzz_path("input.qfz"), *out = qf_fuzz_path("output.bin");
    qf_fuzz_write(in, data, size);
    unlink(out);
    qf_pack_opts o = {.src = in, .out = out, .threads = 2};
    qf_pack_stats s;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_unpack(&o, &s, &err);
    struct stat sb;
    bool exists = stat(out, &sb) == 0;
    if (st == QF_OK && (!exists || (uint64_t)sb.st_size != s.raw_bytes))
        qf_fuzz_violation("unpacked, but the output is not raw_bytes long", &err);
    if (st != QF_OK && exists) qf_fuzz_violation("a failed unpack left an output", &err);
    if (temps_in(qf_fuzz_dir()) != 0) qf_fuzz_violation("a temp file was left behind", &err);
    if (st == QF_E_CHECK) {
        if (!err.msg[0] || strchr(err.msg, '\n')) qf_fuzz_violation("check message", &err);
    } else {
        qf_fuzz_check_failure(st, &err);
    }
    return 0;
}
