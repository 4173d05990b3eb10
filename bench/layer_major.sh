#!/usr/bin/env bash
# What --layer-major buys: bytes read from the model's files and peak RSS of `qforge perplexity`,
# normal mode against --layer-major (one group) and --max-memory (several groups), each run with the
# model's files evicted from the page cache first (posix_fadvise DONTNEED), so each reads from disk as a
# first run does.
#
#   bash bench/layer_major.sh [QFORGE_BIN] [WORKDIR]      # default build/qforge, a temp dir (removed)
#
# The model: qforge synth llama, LM_LAYERS [8] layers of LM_DIM [1024] hidden, LM_FF [2816] FFN, vocab
# 32000, BF16 (an HF directory, read in place: mmap'd safetensors), and its q8_0 GGUF (qforge quantize).
# Text: ../shared's wikitext-2 test set when there, else generated words; LM_CHUNKS [4] chunks of 128.
# Per run: read_bytes of the reaped child from /proc/self/io of the measuring process (the kernel adds a
# waited-for child's I/O to its parent's), peak RSS (ru_maxrss of wait4) and wall time. Prints a
# Markdown table; PPL must be the same in every row of a model (the script fails otherwise).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
work=${2:-}
if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work"
layers=${LM_LAYERS:-8} dim=${LM_DIM:-1024} ff=${LM_FF:-2816} chunks=${LM_CHUNKS:-4}
src=$work/lm
[ -d "$src" ] || "$qf" synth "$src" --layers "$layers" --dim "$dim" --ff "$ff" --vocab 32000 --dtype bf16 -q
[ -f "$work/lm.q8.gguf" ] || "$qf" quantize "$src" -o "$work/lm.q8.gguf" --type q8_0 -q
text=$here/../shared/text/wikitext-2-raw-test.txt
if [ ! -f "$text" ]; then
    text=$work/text.txt
    python3 -c "
import random; r = random.Random(1)
w = 'the of and a to in is was he for it with as his on be at by had are but from or have an they which'.split()
print(' '.join(r.choice(w) for _ in range(200000)))" >"$text"
fi
python3 - "$qf" "$src" "$work/lm.q8.gguf" "$text" "$chunks" <<'PY'
import json, os, resource, subprocess, sys, time
qf, hf, gguf, text, chunks = sys.argv[1:6]

def files(model):
    if os.path.isdir(model):
        return [os.path.join(model, f) for f in os.listdir(model)]
    return [model]

def evict(model):
    for f in files(model):
        fd = os.open(f, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

def read_bytes():
    with open("/proc/self/io") as f:
        return dict(l.split(": ") for l in f.read().splitlines())["read_bytes"].strip()

def run(model, extra):
    evict(model)
    before = int(read_bytes())
    t0 = time.monotonic()
    cmd = [qf, "perplexity", model, "-f", text, "-c", "128", "--chunks", chunks, "--json", "--progress=none"] + extra
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read(); err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()}")
    plan = [l for l in err.decode().splitlines() if "layer-major: resident" in l]
    return json.loads(out)["ppl"], int(read_bytes()) - before, ru.ru_maxrss * 1024, wall, plan[0].split("layer-major: ")[1] if plan else ""

def size(model):
    return sum(os.path.getsize(f) for f in files(model))

print(f"| model | mode | PPL | bytes read (MiB) | model files (MiB) | peak RSS (MiB) | wall s | plan |")
print(f"|---|---|---|---|---|---|---|---|")
for model, name in ((hf, "BF16 HF dir"), (gguf, "q8_0 GGUF")):
    rows = []
    base = None
    modes = (("normal", []), ("--layer-major", ["--layer-major"]), ("--layer-major -b 128", ["--layer-major", "-b", "128"]),
             ("--max-memory (groups)", None))
    for mode, extra in modes:
        if extra is None:
            # groups of half the chunks: the one-group plan (passes of one chunk) minus half its hidden states
            r = rows[2]
            v, u = r[6].split(" hidden states ")[1].split(" ")[:2]
            chunk = float(v) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[u]
            extra = ["-b", "128", "--max-memory", str(int(r[4] - chunk * int(chunks) / 2 + chunk / 4) // 1024) + "K"]
        ppl, rb, rss, wall, plan = run(model, extra)
        if base is None: base = ppl
        if abs(ppl - base) > 1e-6 * base: sys.exit(f"{name} {mode}: PPL {ppl} != {base}")
        resident = 0
        if plan:
            v, u = plan.split("resident about ")[1].split(" ")[:2]
            resident = float(v) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[u]
        rows.append((mode, ppl, rb, rss, resident, wall, plan))
        print(f"| {name} | {mode} | {ppl:.4f} | {rb / 2**20:.1f} | {size(model) / 2**20:.1f} | {rss / 2**20:.1f} | {wall:.2f} | {plan} |")
        sys.stdout.flush()
PY
