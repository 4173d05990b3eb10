#!/usr/bin/python3
"""Compare a GGUF written by llama.cpp's converter (THEIRS) with qforge's (OURS), both converted from the
same checkpoint: every metadata key and value, every tensor's name, shape, type and bytes.

  gguf_compare.py THEIRS OURS [--ref REF_DIR]

Reads both files with llama.cpp's own gguf-py (REF_DIR/llama.cpp-src/gguf-py, the reference that
../shared/ref/setup_ref.sh installs; never part of qforge). Differences qforge makes on purpose are
listed in DELIBERATE and reported as such, not as failures:
  * general.name / basename / version: llama.cpp derives them from the directory name by a heuristic
    (title case, splitting "deepseek-v3" into basename and version); qforge keeps the name as given;
  * qforge.*: qforge's provenance and integrity keys, which llama.cpp does not write;
  * deepseek2.attention.q_lora_rank = 0 where llama.cpp writes nothing: llama.cpp's loader requires the
    key except at the depths of the Lite models it knows, so only with it does such a file load.
Exit status 0 when nothing else differs; the differences are printed one per line."""
import os
import sys

args = sys.argv[1:]
ref = os.environ.get('QF_REF_DIR', os.path.expanduser('~/.cache/qforge-ref'))
if '--ref' in args:
    i = args.index('--ref')
    ref = args[i + 1]
    del args[i:i + 2]
sys.path.insert(0, os.path.join(ref, 'llama.cpp-src', 'gguf-py'))
import numpy as np  # noqa: E402
import gguf  # noqa: E402

DELIBERATE_KEYS = ('general.name', 'general.basename', 'general.version')


def fields(reader):
    out = {}
    for f in reader.fields.values():
        if f.name.startswith('GGUF.') or f.name.startswith('qforge.'):
            continue
        out[f.name] = f.contents()
    return out


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-7 * max(abs(a), abs(b))
    return a == b


theirs, ours = gguf.GGUFReader(args[0]), gguf.GGUFReader(args[1])
kt, ko = fields(theirs), fields(ours)
bad = 0
for k in sorted(set(kt) | set(ko)):
    a, b = kt.get(k, '<absent>'), ko.get(k, '<absent>')
    if same(a, b):
        continue
    deliberate = k in DELIBERATE_KEYS or (k.endswith('.attention.q_lora_rank') and a == '<absent>' and b == 0)
    print(('deliberate ' if deliberate else 'DIFF ') + f'key {k}: llama.cpp {str(a)[:60]!r}, qforge {str(b)[:60]!r}')
    bad += not deliberate
tt, to = {t.name: t for t in theirs.tensors}, {t.name: t for t in ours.tensors}
for n in sorted(set(tt) | set(to)):
    if n not in tt or n not in to:
        print(f'DIFF tensor {n}: only in {"llama.cpp" if n in tt else "qforge"}\'s file')
        bad += 1
        continue
    x, y = tt[n], to[n]
    if list(x.shape) != list(y.shape) or x.tensor_type != y.tensor_type:
        print(f'DIFF tensor {n}: {list(x.shape)} {x.tensor_type.name} vs {list(y.shape)} {y.tensor_type.name}')
        bad += 1
    elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
        print(f'DIFF tensor {n}: bytes differ')
        bad += 1
print(f'{len(to)} tensors, {len(ko)} keys compared; {bad} differences')
sys.exit(1 if bad else 0)
