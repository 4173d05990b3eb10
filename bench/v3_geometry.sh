#!/usr/bin/env bash
# DeepSeek-V3's real dimensions, a few layers: what converting and quantizing a 671B-class FP8 release
# costs per byte, against reading and writing the same bytes, and against llama.cpp's converter.
#
#   bash bench/v3_geometry.sh [QFORGE_BIN] [WORKDIR]      # default build/qforge, a temp dir (removed)
#
# The checkpoint: qforge synth --arch deepseek-v3 --v3-geometry --fp8 --layers VG_LAYERS [2: one dense
# and one MoE layer, 15.8 GB] --shards 4, DeepSeek-V3's released FP8 layout (E4M3 + 128x128
# weight_scale_inv). Per job: wall time, source MB/s, peak RSS (/usr/bin/time -v) and bytes written.
# Baselines in the same run: `cat` of the shards to /dev/null, and cat + write + fsync of them to a
# file. Page cache: every source file is dropped (posix_fadvise DONTNEED) before each job, so each
# job reads from disk as a first run does. llama.cpp's converter (../shared/ref/llamacpp_convert_ds.py,
# --outtype q8_0, with qf-deepseek-a's SentencePiece tokenizer copied in, since its stubbed
# environment cannot read a byte-level BPE tokenizer.json) runs under a watchdog that stops it at
# VG_LCPP_RSS_GIB [14] GiB of RSS or VG_LCPP_SECONDS [600] s; the report says which. VG_JOBS picks
# parts ["baselines qforge llamacpp"; "kernels" adds each quantize job's compute bound (its quantizers'
# single-thread speed x the threads, on the F32 bytes its plan quantizes) beside its measured time;
# "layermajor" adds `qforge perplexity` of the FP8 directory, normal against --layer-major, VG_LM_CHUNKS [2] chunks of 64 tokens in passes of one chunk, bytes read from
# /proc/self/io, optionally in a memory cgroup of VG_MEM_LIMIT bytes (bench/layer_major.sh's rule)]. Needs ~2.2x the
# checkpoint in free disk (source + one output at a time). Prints a Markdown table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
work=${2:-}
shared=$here/../shared
layers=${VG_LAYERS:-2}
rss_cap_gib=${VG_LCPP_RSS_GIB:-14}
lcpp_secs=${VG_LCPP_SECONDS:-600}
if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work"
src=$work/v3g
log() { echo "[$(date +%T)] $*" >&2; }
drop_cache() { # drop_cache FILE...: write back, then evict from the page cache
    sync "$@"
    python3 -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' "$@"
}
shards() { ls "$src"/model-*.safetensors; }
if [ ! -f "$src/config.json" ]; then
    log "synth: DeepSeek-V3 geometry, $layers layers, FP8 release layout"
    "$qf" synth "$src" --arch deepseek-v3 --v3-geometry --fp8 --layers "$layers" --shards 4 -q
fi
src_bytes=$(stat -c %s $(shards) | awk '{ s += $1 } END { printf "%.0f", s }')
parts=${VG_JOBS:-"baselines qforge llamacpp"}
rows=()
# run NAME OUT CMD...: time CMD, its peak RSS, the bytes of OUT
run() {
    local name=$1 out=$2; shift 2
    local key=${name//[^A-Za-z0-9_.-]/_}
    drop_cache $(shards)
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$work/time.$key" "$@" > "$work/log.$key" 2>&1 || { tail -5 "$work/log.$key" >&2; echo "error: $name failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    local rss written=0
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.$key")
    [ -e "$out" ] && written=$(stat -c %s "$out")
    rows+=("$name|$(python3 -c "print('%.1f' % ($t1 - $t0))")|$(python3 -c "print('%.0f' % ($src_bytes / 1e6 / ($t1 - $t0)))")|$(python3 -c "print('%.2f' % ($rss / 1048576))")|$written")
    log "$name: $(python3 -c "print('%.1f s' % ($t1 - $t0))"), peak RSS $((rss / 1024)) MiB, wrote $written bytes"
    rm -f "$out"
}
if [[ $parts == *baselines* ]]; then
log "baselines"
run "cat > /dev/null" /nonexistent bash -c 'cat "$@" > /dev/null' _ $(shards)
run "cat > file + fsync" "$work/copy.bin" bash -c 'cat "$@" > "'"$work"'/copy.bin" && sync "'"$work"'/copy.bin"' _ $(shards)
fi
# VG_QUANT: the quantize jobs, NAME:ARGS separated by ';'
IFS=';' read -r -a quant_jobs <<<"${VG_QUANT:-fp8:--recipe fp8;q8_0:--type q8_0;fp8-int4:--recipe fp8-int4;q4_k_m:--recipe q4_k_m}"
[[ $parts == *qforge* ]] && for job in "${quant_jobs[@]}"; do
    name=${job%%:*}; args=${job#*:}
    log "qforge quantize $args"
    run "qforge $args" "$work/$name.gguf" "$qf" quantize "$src" $args -o "$work/$name.gguf" -q
done
# llama.cpp's converter under a watchdog (Debian's python3: its numpy and torch)
secs=0; peak=0; why="not run"; written=0
if [[ $parts == *llamacpp* ]]; then
cp "$shared/models/qf-deepseek-a/tokenizer.model" "$shared/models/qf-deepseek-a/tokenizer_config.json" "$src/" 2>/dev/null || true
log "llama.cpp convert_hf_to_gguf.py --outtype q8_0 (stopped at $rss_cap_gib GiB RSS or $lcpp_secs s)"
drop_cache $(shards)
t0=$(date +%s)
/usr/bin/python3 "$shared/ref/llamacpp_convert_ds.py" "$src" --outtype q8_0 --outfile "$work/lcpp.gguf" > "$work/log.lcpp" 2>&1 &
pid=$!
peak=0; why="finished"
while kill -0 "$pid" 2>/dev/null; do
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    for c in $(pgrep -P "$pid" || true); do r=$((r + $(awk '/VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0))); done
    [ "${r:-0}" -gt "$peak" ] && peak=$r
    if [ "$peak" -gt $((rss_cap_gib * 1048576)) ]; then why="stopped at ${rss_cap_gib} GiB RSS"; kill "$pid"; break; fi
    if [ $(( $(date +%s) - t0 )) -gt "$lcpp_secs" ]; then why="stopped after ${lcpp_secs} s"; kill "$pid"; break; fi
    sleep 1
done
wait "$pid" 2>/dev/null && rc=0 || rc=$?
secs=$(( $(date +%s) - t0 ))
[ "$why" = finished ] && [ "$rc" != 0 ] && why="failed (exit $rc: $(tail -1 "$work/log.lcpp" | cut -c1-120))"
written=$(stat -c %s "$work/lcpp.gguf" 2>/dev/null || echo 0)
rm -f "$work/lcpp.gguf"
log "llama.cpp: $why after $secs s, peak RSS $((peak / 1024)) MiB, wrote $written bytes"
fi

lm_rows=""
if [[ $parts == *layermajor* ]]; then
log "perplexity: normal vs --layer-major"
text=$shared/text/wikitext-2-raw-test.txt
lm_rows=$(/usr/bin/python3 - "$qf" "$src" "$text" "${VG_LM_CHUNKS:-2}" "${VG_MEM_LIMIT:-}" <<'PY'
import json, os, subprocess, sys
qf, src, text, chunks, limit = sys.argv[1:6]
cg = None
if limit:  # a child memory cgroup of this process's own (v2 memory.max or v1 memory.limit_in_bytes)
    mine = {l.split(":")[1]: l.split(":")[2] for l in open("/proc/self/cgroup").read().splitlines()}
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    cg = ("/sys/fs/cgroup" + mine[""] if v2 else "/sys/fs/cgroup/memory" + mine["memory"]).rstrip("/") + f"/qf-v3g-{os.getpid()}"
    os.mkdir(cg)
    open(os.path.join(cg, "memory.max" if v2 else "memory.limit_in_bytes"), "w").write(limit)
files = [os.path.join(src, f) for f in os.listdir(src) if f.endswith(".safetensors")]
def rb():
    return int(dict(l.split(": ") for l in open("/proc/self/io").read().splitlines())["read_bytes"])
def run(extra):
    for f in files:
        fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
    env = dict(os.environ, QF_MEM_AVAILABLE="1T") if "--layer-major" not in extra else None
    enter = (lambda: open(os.path.join(cg, "cgroup.procs"), "w").write(str(os.getpid()))) if cg else None
    b = rb()
    p = subprocess.Popen([qf, "perplexity", src, "-f", text, "-c", "64", "-b", "64", "--chunks", chunks, "--json",
                          "--progress=none"] + extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, preexec_fn=enter)
    out = p.stdout.read()
    _, st, ru = os.wait4(p.pid, 0)
    if st: sys.exit("perplexity failed")
    d = json.loads(out)
    return d["ppl"], (rb() - b) / 1e9, ru.ru_maxrss / 1048576, d["eval_seconds"]
rows = [("normal", run([])), ("--layer-major", run(["--layer-major"]))]
if abs(rows[0][1][0] - rows[1][1][0]) > 1e-6 * rows[0][1][0]: sys.exit("PPL differs between the modes")
for name, (ppl, gb, rss, secs) in rows:
    print(f"| perplexity {name}{' (cgroup ' + limit + ')' if cg else ''} | {secs:.1f} | PPL {ppl:.4f} | {rss:.2f} | read {gb:.2f} GB |")
if cg: os.rmdir(cg)
PY
)
fi

# The compute bound of each quantize job: the F32 bytes its plan sends through each quantizer (tensors
# whose bytes pass through are left out), at that quantizer's own single-thread speed (bench_kernels on
# a BF16 checkpoint of the same row lengths), spread over every thread with nothing else to do. The
# measured wall time over that bound says what the decode, the I/O, the digests and the scheduling add.
kern_rows=""
if [[ $parts == *kernels* ]]; then
log "kernels: each quantizer's single-thread speed, against the quantize jobs"
bk=$(dirname "$qf")/bench/bench_kernels
[ -x "$bk" ] || { echo "error: $bk not built (cmake --build build --target bench_kernels)" >&2; exit 1; }
"$qf" synth "$work/kern" --vocab 1024 --dim 7168 --ff 2048 --layers 1 --dtype bf16 -q
measured=$(for r in "${rows[@]}"; do echo "$r"; done)
kern_rows=$(/usr/bin/python3 - "$qf" "$bk" "$src" "$work" "$(nproc)" "$measured" "${quant_jobs[@]}" <<'PY'
import json, subprocess, sys
qf, bk, src, work, threads, measured = sys.argv[1:7]
jobs, threads = sys.argv[7:], int(threads)
walls = {l.split("|")[0]: float(l.split("|")[1]) for l in measured.splitlines() if l}
plans = {}
for job in jobs:
    name, args = job.split(":", 1)
    out = subprocess.run([qf, "quantize", src, *args.split(), "--dry-run", "--json", "-o", f"{work}/{name}.gguf"],
                         check=True, capture_output=True, text=True).stdout
    per = {}
    for t in json.loads(out)["tensors"]:
        if t["pass"] != "none" or t["type"] in ("f32", "f16", "bf16"): continue
        n = 1
        for d in t["ne"]: n *= d
        per[t["type"]] = per.get(t["type"], 0) + 4 * n
    plans[name] = (args, per)
types = sorted({ty for _, per in plans.values() for ty in per})
rate = {}
if types:
    out = subprocess.run([bk, f"{work}/kern/model.safetensors", "--types", ",".join(types), "--no-dot",
                          "--ref", "/nonexistent"], check=True, capture_output=True, text=True).stdout
    for l in out.splitlines():
        f = l.split()
        if len(f) > 1 and f[0] in types: rate[f[0]] = float(f[1]) * 1e6
for name, (args, per) in plans.items():
    bound = sum(b / rate[ty] for ty, b in per.items()) / threads
    mix = ", ".join(f"{ty} {b / 1e9:.1f} GB at {rate[ty] / 1e6:.0f} MB/s" for ty, b in sorted(per.items()))
    wall = walls.get("qforge " + args)
    print(f"| {name}: {mix or 'nothing quantized'} | {bound:.1f} | " + (f"{wall:.1f} | {wall / bound:.2f}x |" if wall and bound else "- | - |"))
PY
)
fi

echo "Source: $src_bytes bytes in 4 shards ($layers layers, FP8). $(nproc) threads. Jobs: $parts."
echo
echo "| job | seconds | source MB/s | peak RSS GiB | bytes written |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do IFS='|' read -r n s m g w <<<"$r"; echo "| $n | $s | $m | $g | $w |"; done
[ -n "$lm_rows" ] && echo "$lm_rows"
[[ $parts == *llamacpp* ]] && echo "| llama.cpp convert_hf_to_gguf.py --outtype q8_0 | $secs ($why) | $(python3 -c "print('%.0f' % ($src_bytes / 1e6 / max($secs, 1)))") | $(python3 -c "print('%.2f' % ($peak / 1048576))") | $written |"
if [ -n "$kern_rows" ]; then
    echo
    echo "Compute bound: F32 bytes per quantizer at its single-thread speed, over $(nproc) threads."
    echo
    echo "| job: F32 bytes quantized per type | kernel-bound seconds | measured seconds | measured / bound |"
    echo "|---|---:|---:|---:|"
    echo "$kern_rows"
fi
