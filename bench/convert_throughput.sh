#!/usr/bin/env bash
# Convert (quantize, for a --recipe job) throughput against a plain copy of the same bytes, in the same run.
#   bash bench/convert_throughput.sh [QFORGE_BIN] [MODEL_DIR]
# Default model: ../shared/models/qf-llama-a if present, else a generated 0.5 GiB checkpoint.
# CT_RUNS [3] pairs per job: the copy (cat + fsync of the safetensors to a file) and the convert run
# alternate, so the disk's drift within the session hits both sides alike; the ratio is taken per pair
# and the median, min and max are printed. CT_COLD=1 evicts the source and both outputs from the page
# cache (fsync + posix_fadvise DONTNEED) before every run, as a first conversion of a release meets
# them; otherwise the cache is warm for both sides. CT_JOBS picks the jobs [--type=bf16 --type=f16
# --type=q8_0, plus --recipe=fp8 on an FP8 release], CT_THREADS the thread counts [1 2]. CT_COPY=replace
# makes the copy write as qforge does (a new file beside the old copy, fsync, rename over it) instead of
# truncating the old copy and refilling its pages: on a VM whose guest pages are backed lazily by the
# host, the pages a replacing writer needs while the old file is still cached cost several seconds of
# system time per GiB that the truncating copy never pays (README, conversion).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
model=${2:-}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if [ -z "$model" ]; then
    if [ -d "$here/../shared/models/qf-llama-a" ]; then model=$here/../shared/models/qf-llama-a
    else model=$work/gen; "$qf" synth "$model" --vocab 32768 --dim 2048 --ff 5632 --layers 2 --dtype bf16; fi
fi
jobs=${CT_JOBS:-"--type=bf16 --type=f16 --type=q8_0"}
# an FP8 release also passes its E4M3 bytes through (the fp8 recipe): the most I/O-bound job there is
[ -z "${CT_JOBS:-}" ] && grep -Eq '"quant_method":[[:space:]]*"fp8"' "$model/config.json" 2>/dev/null && jobs="$jobs --recipe=fp8"
python3 - "$qf" "$model" "$work" "${CT_RUNS:-3}" "${CT_COLD:-0}" "${CT_THREADS:-1 2}" $jobs <<'PY'
import glob, os, statistics, subprocess, sys, time
qf, model, work, runs, cold, threads = sys.argv[1:7]
jobs, runs, cold = sys.argv[7:], int(runs), cold == "1"
src = sorted(glob.glob(os.path.join(model, "*.safetensors")))
copy, out = os.path.join(work, "copy.bin"), os.path.join(work, "out.gguf")
mib = sum(os.path.getsize(f) for f in src) / 1048576
def evict():
    for f in src + [copy, out]:
        if os.path.exists(f):
            fd = os.open(f, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
def timed(argv):
    if cold: evict()
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
replace = os.environ.get("CT_COPY") == "replace"
if replace:
    copy_cmd = ["sh", "-c", 'cat "$@" > "%s.tmp" && sync "%s.tmp" && mv "%s.tmp" "%s"' % ((copy,) * 4), "_"] + src
else:
    copy_cmd = ["sh", "-c", 'cat "$@" > "%s" && sync "%s"' % (copy, copy), "_"] + src
if not cold: subprocess.run(["cat"] + src, check=True, stdout=subprocess.DEVNULL)
print(f"model: {model} ({mib:.1f} MiB of safetensors); {runs} alternating pairs per job; page cache "
      + ("evicted before every run" if cold else "warm") + "; copy "
      + ("replaces the old copy" if replace else "truncates the old copy"))
print(f"{'job':<28} {'seconds':>8} {'MiB/s':>8} {'copy s':>8} {'vs copy':>8} {'(min-max)':>12}")
for th in threads.split():
    for job in jobs:
        opt, val = job.split("=", 1)
        argv = [qf, "quantize" if opt == "--recipe" else "convert", model, "-o", out, opt, val, "--threads", th, "-q"]
        pairs = [(timed(copy_cmd), timed(argv)) for _ in range(runs)]
        r = [c / t for c, t in pairs]
        t = statistics.median(p[1] for p in pairs)
        print(f"{argv[1] + ' -> ' + val + ', ' + th + ' thr':<28} {t:8.3f} {mib / t:8.1f} {statistics.median(p[0] for p in pairs):8.3f} "
              f"{statistics.median(r):7.2f}x {min(r):5.2f}-{max(r):.2f}")
print("(MiB/s counts source bytes; 'vs copy' is copy seconds / convert seconds per pair, > 1 faster than the copy)")
PY
