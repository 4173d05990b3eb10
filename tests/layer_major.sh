#!/usr/bin/env bash
# Layer-major evaluation (--layer-major, --max-memory) gives the normal mode's numbers: perplexity and
# verify's figures equal to 1e-6 (they come out the same bits), calibrate's imatrix and Hessians the same
# bytes, on a dense llama, a DeepSeek-style MLA + MoE model and a Mixtral from synth, with every chunk in
# one group and in several groups under --max-memory; the automatic choice when the weights exceed
# MemAvailable says so; a bad --max-memory is refused in one line. On ../shared's qf-deepseek-a too,
# when it is there.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

"$qf" synth llama --layers 3 --dim 128 --ff 256 --vocab 512 -q || exit 1
"$qf" synth ds --arch deepseek-v3 --layers 3 --dim 128 --ff 256 --ff-exp 64 --experts 8 --vocab 512 -q || exit 1
"$qf" synth mx --arch mixtral --layers 2 --dim 128 --ff 256 --vocab 512 -q || exit 1
make_text text.txt 7
for m in llama ds; do
    "$qf" convert $m -o $m.gguf -q && "$qf" quantize $m.gguf -o $m.q4.gguf --recipe q4_k_m -q || exit 1
done

# two JSON reports agree: every number to 1e-6 relative (timings aside), everything else equal
same() {
    python3 - "$@" <<'PY'
import json, sys
what, a, b = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def walk(x, y, at):
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), f"{at}: keys {list(x)} vs {list(y)}"
        for k in x:
            if "seconds" not in k and "per_second" not in k: walk(x[k], y[k], f"{at}.{k}")
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), f"{at}: lists differ"
        for i, (p, q) in enumerate(zip(x, y)): walk(p, q, f"{at}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        assert abs(x - y) <= 1e-6 * max(abs(x), abs(y), 1e-300), f"{at}: {x} (normal) vs {y} (layer-major)"
    else:
        assert x == y, f"{at}: {x!r} vs {y!r}"
try:
    walk(a, b, what)
except AssertionError as e:
    sys.exit(str(e))
PY
}
# the number of groups the plan line announced
groups() { sed -n 's/.* in \([0-9]*\) groups\{0,1\}.*/\1/p' <<<"$out" | head -1; }
# a --max-memory value that makes groups of about half the chunks, from a one-group run's plan line
bytes() { python3 -c "import sys; v, u = sys.argv[1], sys.argv[2]; print(int(float(v) * {'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}[u]))" "$@"; }
half_bound() {
    local line resident chunk per
    line=$(grep -m1 'layer-major: resident' <<<"$out")
    read -r resident chunk per < <(sed -n 's/.*resident about \([0-9.]*\) \([KMG]iB\).*hidden states \([0-9.]*\) \([KMG]iB\) per chunk x \([0-9]*\) chunks.*/\1 \2 \3 \4 \5/p' <<<"$line" |
        { read -r r ru c cu n; echo "$(bytes $r $ru) $(bytes $c $cu) $n"; })
    echo $((resident - (per / 2) * chunk))
}

# one chunk per pass (-b = ctx) makes groups of single chunks possible under a small bound
for m in llama ds mx; do
    expect 0 "perplexity $m" -- "$qf" perplexity $m -f text.txt -c 64 --chunks 6 --json -q
    echo "$out" >ppl0.json
    for f in "--layer-major" "--layer-major -b 64" "max"; do
        [ "$f" = max ] && f="-b 64 --max-memory $bound"
        expect 0 "perplexity $m $f" -- "$qf" perplexity $m -f text.txt -c 64 --chunks 6 --json $f --progress=none
        has "$m $f: the plan is printed first" "layer-major: resident about"
        grep -v '^qforge' <<<"$out" >ppl1.json
        same "perplexity $m $f" ppl0.json ppl1.json && ok || bad "perplexity $m $f differs"
        case $f in *max-memory*) [ "$(groups)" -gt 1 ] && ok || bad "perplexity $m $f: one group only: $out";; esac
        bound=$(half_bound)
    done
done

for m in llama ds; do
    expect 0 "verify $m" -- "$qf" verify $m.q4.gguf --base $m -f text.txt -c 64 --chunks 6 --json v0.json -q
    for f in "--layer-major -b 64" "max"; do
        [ "$f" = max ] && f="-b 64 --max-memory $bound"
        expect 0 "verify $m $f" -- "$qf" verify $m.q4.gguf --base $m -f text.txt -c 64 --chunks 6 --json v1.json $f --progress=none
        same "verify $m $f" v0.json v1.json && ok || bad "verify $m $f differs"
        case $f in *max-memory*) [ "$(groups)" -gt 1 ] && ok || bad "verify $m $f: one group only: $out";; esac
        bound=$(half_bound)
    done
done

for m in llama ds ds.gguf mx; do
    expect 0 "calibrate $m" -- "$qf" calibrate $m -f text.txt -c 64 --chunks 6 -o im0.gguf -H h0.gguf -q
    for f in "--layer-major" "max"; do
        [ "$f" = max ] && f="--max-memory $bound"
        expect 0 "calibrate $m $f" -- "$qf" calibrate $m -f text.txt -c 64 --chunks 6 -o im1.gguf -H h1.gguf $f --progress=none
        cmp -s im0.gguf im1.gguf && ok || bad "calibrate $m $f: imatrix differs"
        cmp -s h0.gguf h1.gguf && ok || bad "calibrate $m $f: Hessians differ"
        case $f in *max-memory*) [ "$(groups)" -gt 1 ] && ok || bad "calibrate $m $f: one group only: $out";; esac
        bound=$(half_bound)
    done
done

# chosen by itself when the weights exceed the available memory, and said so
"$qf" synth deep --layers 8 --dim 128 --ff 256 --vocab 512 -q || exit 1
expect 0 "perplexity deep" -- "$qf" perplexity deep -f text.txt -c 64 --chunks 6 --json -q
echo "$out" >ppl0.json
expect 0 "automatic layer-major" -- env QF_MEM_AVAILABLE=2M "$qf" perplexity deep -f text.txt -c 64 --chunks 6 -b 64 --json -q
has "the automatic choice is announced (under -q too)" "layer-major: chosen because the weights"
grep -v '^qforge' <<<"$out" >ppl1.json
same "automatic" ppl0.json ppl1.json && ok || bad "automatic mode differs"
# less memory than one layer (a machine smaller than a DeepSeek-V3 MoE layer): still runs, layer by layer
expect 0 "available memory below one layer" -- env QF_MEM_AVAILABLE=64K "$qf" perplexity deep -f text.txt -c 64 --chunks 6 -b 64 --json -q
grep -v '^qforge' <<<"$out" >ppl2.json
same "below one layer" ppl0.json ppl2.json && ok || bad "below one layer: the figures differ"

# a container's memory limit counts as the available memory: in a memory cgroup below the weights the
# run goes layer-major by itself (where this user may create a cgroup; said when not)
cg_run() { # cg_run LIMIT CMD...: CMD inside a new child memory cgroup of LIMIT bytes; 99 when none can be made
    python3 - "$@" <<'PY'
import os, subprocess, sys
mine = {l.split(":")[1]: l.split(":")[2] for l in open("/proc/self/cgroup").read().splitlines()}
v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
d = ("/sys/fs/cgroup" + mine.get("", "/") if v2 else "/sys/fs/cgroup/memory" + mine.get("memory", "/")).rstrip("/")
d += f"/qf-test-{os.getpid()}"
try:
    os.mkdir(d)
    open(os.path.join(d, "memory.max" if v2 else "memory.limit_in_bytes"), "w").write(sys.argv[1])
except OSError:
    sys.exit(99)
try:
    r = subprocess.run(sys.argv[2:], preexec_fn=lambda: open(os.path.join(d, "cgroup.procs"), "w").write(str(os.getpid())),
                       capture_output=True, text=True)
    sys.stdout.write(r.stdout + r.stderr)
    sys.exit(r.returncode)
finally:
    os.rmdir(d)
PY
}
"$qf" synth wide --layers 8 --dim 512 --ff 1536 --vocab 512 --dtype bf16 -q || exit 1
out=$(cg_run 48000000 "$qf" perplexity wide -f text.txt -c 64 --chunks 4 -b 64 --progress=none 2>&1); rc=$?
if [ $rc -eq 99 ]; then
    echo "SKIP: cannot create a memory cgroup here: the cgroup limit as available memory is not checked"
else
    [ $rc -eq 0 ] && ok || bad "perplexity in a 48 MB cgroup: exit $rc: $out"
    has "a cgroup's limit makes the run layer-major" "layer-major: chosen because the weights"
fi

# bad bounds: one line, exit 2, no report
for v in 12X 0 "" -5 1.5G; do
    expect 2 "--max-memory '$v'" -- "$qf" perplexity llama -f text.txt --max-memory "$v"
    [ "$(wc -l <<<"$out")" -eq 1 ] && ok || bad "--max-memory '$v': not one line: $out"
done
expect 2 "a bound below one layer" -- "$qf" calibrate llama -f text.txt -c 64 -o im2.gguf --max-memory 64K
has "says what it needs" "need at least"
[ ! -e im2.gguf ] && ok || bad "a refused calibrate left im2.gguf"

shared=$root/../shared
ds_a=$shared/models/qf-deepseek-a text_a=$shared/text/wikitext-2-raw-test.txt
if [ -d "$ds_a" ] && [ -f "$text_a" ]; then
    expect 0 "qf-deepseek-a perplexity" -- "$qf" perplexity "$ds_a" -f "$text_a" -c 256 --chunks 4 --json -q
    echo "$out" >a0.json
    expect 0 "qf-deepseek-a perplexity --layer-major" -- "$qf" perplexity "$ds_a" -f "$text_a" -c 256 --chunks 4 -b 256 \
        --layer-major --json --progress=none
    bound=$(half_bound)
    expect 0 "qf-deepseek-a perplexity --max-memory" -- "$qf" perplexity "$ds_a" -f "$text_a" -c 256 --chunks 4 -b 256 \
        --max-memory $bound --json --progress=none
    grep -v '^qforge' <<<"$out" >a1.json
    same "qf-deepseek-a" a0.json a1.json && ok || bad "qf-deepseek-a perplexity differs"
    [ "$(groups)" -gt 1 ] && ok || bad "qf-deepseek-a: one group only: $out"
    expect 0 "qf-deepseek-a calibrate" -- "$qf" calibrate "$ds_a" -f "$text_a" -c 128 --chunks 3 -o ia0.gguf -q
    expect 0 "qf-deepseek-a calibrate --layer-major" -- "$qf" calibrate "$ds_a" -f "$text_a" -c 128 --chunks 3 -o ia1.gguf --layer-major -q
    cmp -s ia0.gguf ia1.gguf && ok || bad "qf-deepseek-a: imatrix differs"
else
    echo "note: ../shared/models/qf-deepseek-a absent: the synth models only"
fi
cli_test_finish layer_major
