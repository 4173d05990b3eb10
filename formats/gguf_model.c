/* qf_gguf_model_meta (gguf_model.h). */
#include "formats/gguf_model.h"

qf_status qf_gguf_model_meta(const qf_gguf *g, const char *label, qf_hparams *hp, qf_vocab *vocab, qf_error *err) {
    memset(vocab, 0, sizeof *vocab);
    qf_status st = qf_hparams_from_gguf(g, hp, err);
    if (st) return qf_fail_prefix(err, st, label);
    if (hp->n_vocab == 0) return qf_fail(err, QF_E_INPUT, "%s: no 2-D token_embd.weight tensor", label);
    if ((st = qf_vocab_load_gguf(g, vocab, err))) return qf_fail_prefix(err, st, label);
    if (vocab->n_tokens == hp->n_vocab) return QF_OK;
    st = qf_fail(err, QF_E_INPUT, "%s: the vocabulary has %u tokens but token_embd.weight has %u rows", label,
                 vocab->n_tokens, hp->n_vocab);
    qf_vocab_free(vocab);
    return st;
}
