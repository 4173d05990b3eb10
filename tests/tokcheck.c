/*
 * tokcheck — what qforge makes of a tokenizer, for shell tests that hold it against llama.cpp:
 *
 *   tokcheck ids MODEL.gguf INPUTS.inp [--parse-special] [--add-special] > OUT
 *       token ids of llama.cpp-format test inputs (tokdata.h), one .out line per input;
 *   tokcheck vocab HF_DIR OUT.gguf
 *       the vocabulary qforge's converter writes for an HF directory (tokenizer files and config.json's
 *       vocab_size), alone in a GGUF;
 *   tokcheck families
 *       the released tokenizer families (tokdata.h), one tab-separated line each: directory, architecture,
 *       tokenizer.ggml.pre, vocab_size, bos and eos id (-1: none), separator token.
 *
 * Exit 2 on bad usage or input, 3 when a file cannot be read or written.
 */
#include "tokdata.h"

#include "formats/vocab.h"
#include "runtime/tokenizer.h"

static int usage(void) {
    fprintf(stderr, "usage: tokcheck ids MODEL.gguf INPUTS.inp [--parse-special] [--add-special]\n"
                    "       tokcheck vocab HF_DIR OUT.gguf\n"
                    "       tokcheck families\n");
    return 2;
}

static int fail(const qf_error *err, qf_status st) {
    fprintf(stderr, "tokcheck: %s\n", err->msg);
    return st == QF_E_IO || st == QF_E_NOMEM ? 3 : 2;
}

static int cmd_ids(int argc, char **argv) {
    unsigned flags = 0;
    const char *pos[2] = { NULL, NULL };
    int n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--parse-special")) flags |= QF_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(argv[i], "--add-special")) flags |= QF_TOKENIZE_ADD_SPECIAL;
        else if (n_pos < 2 && argv[i][0] != '-') pos[n_pos++] = argv[i];
        else return usage();
    }
    if (n_pos != 2) return usage();
    qf_error err = {0};
    qf_tokenizer *t = NULL;
    qf_status st = qf_test_open_tokenizer(pos[0], &t, &err);
    if (st) return fail(&err, st);
    qf_tok_vectors v;
    if (!qf_tok_vectors_load(pos[1], NULL, &v)) {
        fprintf(stderr, "tokcheck: %s: cannot read the inputs\n", pos[1]);
        qf_tokenizer_free(t);
        return 3;
    }
    int rc = 0;
    for (size_t i = 0; i < v.n && !rc; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if ((st = qf_tokenize_flags(t, v.inp[i], v.inp_len[i], flags, &ids, &n, &err))) rc = fail(&err, st);
        else qf_tok_ids_write(stdout, ids, n);
        free(ids);
    }
    qf_tok_vectors_free(&v);
    qf_tokenizer_free(t);
    return rc ? rc : (fflush(stdout) == 0 ? 0 : 3);
}

static int cmd_vocab(int argc, char **argv) {
    if (argc != 2) return usage();
    qf_error err = {0};
    qf_vocab v;
    qf_status st = qf_vocab_load_hf(qf_test_dir_reader, argv[0], qf_test_config_vocab_size(argv[0]), &v, &err);
    if (st) return fail(&err, st);
    st = qf_test_write_vocab(&v, argv[1], &err);
    qf_vocab_free(&v);
    return st ? fail(&err, st) : 0;
}

static int cmd_families(void) {
    for (int i = 0; i < QF_TOK_N_FAMILIES; i++) {
        const qf_tok_family *f = &qf_tok_families[i];
        printf("%s\t%s\t%s\t%u\t%lld\t%lld\t%s\n", f->dir, f->arch, f->pre, f->vocab_size, (long long)f->bos_id,
               (long long)f->eos_id, f->separator);
    }
    return fflush(stdout) == 0 ? 0 : 3;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "ids")) return cmd_ids(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "vocab")) return cmd_vocab(argc - 2, argv + 2);
    if (argc == 2 && !strcmp(argv[1], "families")) return cmd_families();
    return usage();
}
