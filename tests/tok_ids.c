/*
 * tok_ids — qforge's token ids for llama.cpp-format test inputs (tokdata.h), one .out line per input:
 *
 *   tok_ids MODEL.gguf INPUTS.inp [--parse-special] [--add-special] > OUT
 *
 * The shell tests compare these lines with what llama.cpp's llama-tokenize gives on the same GGUF.
 * Exit 2 on bad usage or input, 3 when the model cannot be read.
 */
#include "tokdata.h"

#include "formats/vocab.h"
#include "runtime/tokenizer.h"

static qf_status open_tokenizer(const char *path, qf_tokenizer **t, qf_error *err) {
    qf_gguf *g = NULL;
    qf_vocab v;
    qf_status st = qf_gguf_open(path, &g, err);
    if (!st) st = qf_vocab_load_gguf(g, &v, err);
    qf_gguf_close(g);
    if (st) return st;
    st = qf_tokenizer_new(&v, t, err);
    qf_vocab_free(&v);
    return st;
}

int main(int argc, char **argv) {
    unsigned flags = 0;
    const char *pos[2] = { NULL, NULL };
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--parse-special")) flags |= QF_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(argv[i], "--add-special")) flags |= QF_TOKENIZE_ADD_SPECIAL;
        else if (n_pos < 2 && argv[i][0] != '-') pos[n_pos++] = argv[i];
        else n_pos = 3;
    }
    if (n_pos != 2) {
        fprintf(stderr, "usage: tok_ids MODEL.gguf INPUTS.inp [--parse-special] [--add-special]\n");
        return 2;
    }
    qf_error err = {0};
    qf_tokenizer *t = NULL;
    if (open_tokenizer(pos[0], &t, &err)) {
        fprintf(stderr, "tok_ids: %s\n", err.msg);
        return 3;
    }
    qf_tok_vectors v;
    if (!qf_tok_vectors_load(pos[1], NULL, &v)) {
        fprintf(stderr, "tok_ids: %s: cannot read the inputs\n", pos[1]);
        qf_tokenizer_free(t);
        return 2;
    }
    int rc = 0;
    for (size_t i = 0; i < v.n && !rc; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (qf_tokenize_flags(t, v.inp[i], v.inp_len[i], flags, &ids, &n, &err)) {
            fprintf(stderr, "tok_ids: input %zu: %s\n", i, err.msg);
            rc = 2;
        } else {
            qf_tok_ids_write(stdout, ids, n);
        }
        free(ids);
    }
    qf_tok_vectors_free(&v);
    qf_tokenizer_free(t);
    return rc ? rc : (fflush(stdout) == 0 ? 0 : 3);
}
