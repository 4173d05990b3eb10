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
#
# LM_MEM_LIMIT=SIZE (e.g. 160M) runs every job in a memory cgroup of that size (v2 memory.max or v1
# memory.limit_in_bytes, under this process's own cgroup; needs the right to create one, else the script
# says so and stops): the page cache the run may keep is then smaller than the model, as on a machine
# whose RAM the model exceeds, and passes of one chunk (-b 128) show what each mode rereads.
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
python3 - "$qf" "$src" "$work/lm.q8.gguf" "$text" "$chunks" "${LM_MEM_LIMIT:-}" <<'PY'
import json, os, resource, subprocess, sys, time
qf, hf, gguf, text, chunks, limit = sys.argv[1:7]

def make_cgroup(limit):
    """A child of this process's memory cgroup limited to `limit` bytes: (dir, procs file)."""
    mine = {l.split(":")[1]: l.split(":")[2] for l in open("/proc/self/cgroup").read().splitlines()}
    name = f"qf-layer-major-{os.getpid()}"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        d, knob = "/sys/fs/cgroup" + mine[""].rstrip("/") + "/" + name, "memory.max"
    else:
        d, knob = "/sys/fs/cgroup/memory" + mine["memory"].rstrip("/") + "/" + name, "memory.limit_in_bytes"
    try:
        os.mkdir(d)
        with open(os.path.join(d, knob), "w") as f: f.write(str(limit))
    except OSError as e:
        sys.exit(f"LM_MEM_LIMIT: cannot create a memory cgroup at {d}: {e}")
    return d

cg = None
if limit:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    limit_bytes = int(float(limit[:-1]) * mult[limit[-1]]) if limit[-1] in mult else int(limit)
    cg = make_cgroup(limit_bytes)
    import atexit
    atexit.register(lambda: os.rmdir(cg))

def enter_cgroup():
    if cg:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f: f.write(str(os.getpid()))

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
    # the normal mode stays normal where the cgroup's limit would have the run choose layer-major itself
    env = dict(os.environ, QF_MEM_AVAILABLE="1T") if cg and "--layer-major" not in extra else None
    before = int(read_bytes())
    t0 = time.monotonic()
    cmd = [qf, "perplexity", model, "-f", text, "-c", "128", "--chunks", chunks, "--json", "--progress=none"] + extra
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=enter_cgroup, env=env)
    out = p.stdout.read(); err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()}")
    plan = [l for l in err.decode().splitlines() if "layer-major: resident" in l]
    return json.loads(out)["ppl"], int(read_bytes()) - before, ru.ru_maxrss * 1024, wall, plan[0].split("layer-major: ")[1] if plan else ""

def size(model):
    return sum(os.path.getsize(f) for f in files(model))

if cg: print(f"(every run in a memory cgroup of {limit})")
print(f"| model | mode | PPL | bytes read (MiB) | model files (MiB) | peak RSS (MiB) | wall s | plan |")
print(f"|---|---|---|---|---|---|---|---|")
for model, name in ((hf, "BF16 HF dir"), (gguf, "q8_0 GGUF")):
    rows = []
    base = None
    modes = (("normal", []), ("--layer-major", ["--layer-major"]), ("--layer-major -b 128", ["--layer-major", "-b", "128"]),
             ("--max-memory (groups)", None))
    if cg:  # passes of one chunk in both modes: what each rereads when the cache cannot hold the model
        modes = (("normal -b 128", ["-b", "128"]), ("--layer-major", ["--layer-major"]),
                 ("--layer-major -b 128", ["--layer-major", "-b", "128"]))
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
