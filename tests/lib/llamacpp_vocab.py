#!/usr/bin/python3
"""llama.cpp's converter writes the vocabulary of an HF directory; every tokenizer.* key is compared with ours.

  /usr/bin/python3 llamacpp_vocab.py REF_SRC HF_DIR PRE OURS.gguf [HF_DIR PRE OURS.gguf ...]

REF_SRC is llama.cpp's source tree (../shared/ref/README.md), each HF_DIR holds tokenizer.json,
tokenizer_config.json and a config.json naming the architecture, OURS.gguf is qforge's vocabulary of
HF_DIR (Debian's torch 1.13, which the converter imports, lacks the FP8 dtypes: placeholders stand in,
as in ../shared/ref/llamacpp_convert.py; no tensor is touched). The converter class that config.json names runs its own set_vocab (conversion/*.py, gguf-py's
SpecialVocab and GGUFWriter) into a vocab-only GGUF. It needs transformers' AutoTokenizer, which Debian
does not package; the stand-in below answers what get_vocab_base asks of it from tokenizer.json itself
(vocab with added tokens, get_added_vocab, added_tokens_decoder; encode/decode only of an added token,
as the identity), and the pre-tokenizer name, which llama.cpp takes from a hash of a real tokenizer's
ids, is PRE, the name ../shared/tokenizers/README.md records for the folder. Exit 1 when a key differs.
"""
import json, os, sys, tempfile, types
from pathlib import Path

ref_src, jobs = sys.argv[1], sys.argv[2:]
if not jobs or len(jobs) % 3:
    sys.exit(__doc__)
sys.path.insert(0, ref_src)
sys.path.insert(1, os.path.join(ref_src, 'gguf-py'))


class AddedToken:
    def __init__(self, a):
        self.content, self.special, self.normalized = a['content'], a.get('special', False), a.get('normalized', True)


class StandInTokenizer:
    is_fast = True

    def __init__(self, path):
        with open(Path(path) / 'tokenizer.json', encoding='utf-8') as f:
            tj = json.load(f)
        self.vocab = dict(tj['model']['vocab'])
        self.added_tokens_decoder = {}
        for a in tj.get('added_tokens', []):
            self.vocab[a['content']] = a['id']
            self.added_tokens_decoder[a['id']] = AddedToken(a)

    def get_added_vocab(self):
        return {t.content: i for i, t in self.added_tokens_decoder.items()}

    def encode(self, text, add_special_tokens=True):
        if text not in self.vocab or self.vocab[text] not in self.added_tokens_decoder:
            raise RuntimeError('the stand-in tokenizer only encodes added tokens')
        return [self.vocab[text]]

    def decode(self, ids, **kw):
        return ''.join(self.added_tokens_decoder[i].content for i in ids)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, *a, **k):
        return StandInTokenizer(path)


class AutoConfig:
    @staticmethod
    def from_pretrained(*a, **k):
        raise RuntimeError('no transformers: the converter reads config.json itself')


stub = types.ModuleType('transformers')
stub.AutoTokenizer, stub.AutoConfig = AutoTokenizer, AutoConfig
sys.modules.setdefault('transformers', stub)

import torch  # noqa: E402
for n in ('float8_e4m3fn', 'float8_e5m2'):
    if not hasattr(torch, n):
        setattr(torch, n, 'missing-torch-dtype-' + n)
import gguf  # noqa: E402
import conversion  # noqa: E402
from conversion.base import TextModel  # noqa: E402


def converter_vocab(hf_dir, pre):
    """The converter's set_vocab for the class config.json names, into a vocab-only GGUF; returns its path
    and the class name."""
    TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    with open(Path(hf_dir) / 'config.json', encoding='utf-8') as f:
        hparams = json.load(f)
    cls = conversion.get_model_class(hparams['architectures'][0])
    model = object.__new__(cls)  # only what set_vocab reads: no tensors are loaded
    model.dir_model, model.hparams, model.origin_hf_arch = Path(hf_dir), hparams, hparams['architectures'][0]
    model.is_mistral_format = False
    path = tempfile.NamedTemporaryFile(suffix='.gguf', delete=False).name
    model.gguf_writer = gguf.GGUFWriter(path, 'llama')
    model.set_vocab()
    model.gguf_writer.write_header_to_file()
    model.gguf_writer.write_kv_data_to_file()
    model.gguf_writer.close()
    return path, cls.__name__


SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes


def tokenizer_keys(path):
    """{key: (value type, the value's bytes as stored)} of a GGUF's tokenizer.* keys (gguf-py's GGUFReader
    takes minutes on 500k-entry arrays; the metadata layout is simple enough to walk here)."""
    with open(path, 'rb') as f:
        data = f.read()
    pos = 24  # magic, version, tensor count
    n_kv = int.from_bytes(data[16:24], 'little')

    def skip_value(t, at):
        if t == 8:
            return at + 8 + int.from_bytes(data[at:at + 8], 'little')
        if t == 9:
            et, n = int.from_bytes(data[at:at + 4], 'little'), int.from_bytes(data[at + 4:at + 12], 'little')
            at += 12
            if et in SCALAR:
                return at + n * SCALAR[et]
            for _ in range(n):
                at = skip_value(et, at)
            return at
        return at + SCALAR[t]

    out = {}
    for _ in range(n_kv):
        klen = int.from_bytes(data[pos:pos + 8], 'little')
        key = data[pos + 8:pos + 8 + klen].decode()
        t = int.from_bytes(data[pos + 8 + klen:pos + 12 + klen], 'little')
        start = pos + 12 + klen
        pos = skip_value(t, start)
        if key.startswith('tokenizer.'):
            out[key] = (t, data[start:pos])
    return out


def compare(hf_dir, pre, ours):
    theirs, cls = converter_vocab(hf_dir, pre)
    a, b = tokenizer_keys(ours), tokenizer_keys(theirs)
    os.unlink(theirs)
    bad = 0
    for key in sorted(set(a) | set(b)):
        if key not in a:
            print(f'  {key}: llama.cpp writes it, we do not')
        elif key not in b:
            print(f'  {key}: we write it, llama.cpp does not')
        elif a[key] != b[key]:
            (ta, va), (tb, vb) = a[key], b[key]
            first = next((i for i in range(min(len(va), len(vb))) if va[i] != vb[i]), min(len(va), len(vb)))
            print(f'  {key}: differs (type {ta} vs {tb}, {len(va)} vs {len(vb)} bytes, first difference at byte {first})')
        else:
            continue
        bad += 1
    print(f'{Path(hf_dir).name}: {cls}.set_vocab writes {len(b)} tokenizer keys; ours: {len(a)}, {bad} differ'
          + (' (every key equal)' if not bad else ''))
    return bad


failed = sum(compare(*jobs[i:i + 3]) != 0 for i in range(0, len(jobs), 3))
sys.exit(1 if failed else 0)
