#!/usr/bin/env bash
# qforge pack / unpack against plain zstd on the same quantized GGUFs, measured in the same run.
#   bash bench/pack.sh [QFORGE_BIN] [MODEL_DIR...]
# Default models: every checkpoint under ../shared/models that converts (q8_0), plus a generated
# ~250 MB q8_0 model (QF_BENCH_NO_BIG=1 skips it) so that throughput is not dominated by start-up.
# Every job writes its output and then fsyncs it (qforge does so itself; zstd gets `sync -f`), and each
# timing is the best of 3 runs with a warm page cache. MB/s = GGUF bytes (10^6) per second, both ways.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
shift || true
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cpus=$(nproc)
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    for d in "$here"/../shared/models/*/; do [ -f "$d/config.json" ] && models+=("${d%/}"); done
fi
ggufs=()
for m in "${models[@]}"; do
    name=$(basename "$m")
    if "$qf" convert "$m" -o "$work/$name.q8_0.gguf" --type q8_0 -q 2>/dev/null; then ggufs+=("$work/$name.q8_0.gguf")
    else echo "skip: $name does not convert"; fi
done
if [ -z "${QF_BENCH_NO_BIG:-}" ]; then
    "$qf" synth "$work/gen" --vocab 32768 --dim 2048 --ff 5632 --layers 2 --dtype bf16
    "$qf" convert "$work/gen" -o "$work/generated-250MB.q8_0.gguf" --type q8_0 -q
    rm -rf "$work/gen"
    ggufs+=("$work/generated-250MB.q8_0.gguf")
fi
best() { # best wall time in seconds of 3 runs of "$@"
    python3 - "$@" <<'PY'
import subprocess, sys, time
ts = []
for _ in range(3):
    t = time.perf_counter()
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ts.append(time.perf_counter() - t)
print(f"{min(ts):.4f}")
PY
}
row() { # job file_bytes out_bytes seconds
    awk -v j="$1" -v b="$2" -v o="$3" -v t="$4" 'BEGIN { printf "  %-40s %8.3f %9.1f %8.3f\n", j, t, b / 1e6 / t, b / o }'
}
echo "qforge $("$qf" --version | cut -d' ' -f2), zstd $(zstd -V | grep -o 'v[0-9.]*'), $cpus CPUs"
for g in "${ggufs[@]}"; do
    bytes=$(stat -c %s "$g")
    cat "$g" > /dev/null
    printf '\n%s (%.1f MB)\n' "$(basename "$g")" "$(awk -v b="$bytes" 'BEGIN{print b/1e6}')"
    printf '  %-40s %8s %9s %8s\n' "job" "seconds" "MB/s" "ratio"
    for t in 1 "$cpus"; do
        s=$(best "$qf" pack "$g" -o "$work/q.qfz" --threads "$t" -q)
        row "qforge pack -j$t (zstd 3, 4 MiB frames)" "$bytes" "$(stat -c %s "$work/q.qfz")" "$s"
    done
    s=$(best sh -c "zstd -3 -q -f '$g' -o '$work/z.zst' && sync -f '$work/z.zst'")
    row "zstd -3" "$bytes" "$(stat -c %s "$work/z.zst")" "$s"
    s=$(best sh -c "zstd -3 -T$cpus -q -f '$g' -o '$work/z.zst' && sync -f '$work/z.zst'")
    row "zstd -3 -T$cpus" "$bytes" "$(stat -c %s "$work/z.zst")" "$s"
    for t in 1 "$cpus"; do
        s=$(best "$qf" unpack "$work/q.qfz" -o "$work/q.out" --threads "$t" -q)
        cmp -s "$g" "$work/q.out" || { echo "FAIL: unpack differs"; exit 1; }
        row "qforge unpack -j$t (+SHA-256, digests)" "$bytes" "$(stat -c %s "$work/q.qfz")" "$s"
    done
    s=$(best sh -c "zstd -d -q -f '$work/z.zst' -o '$work/z.out' && sync -f '$work/z.out'")
    row "zstd -d" "$bytes" "$(stat -c %s "$work/z.zst")" "$s"
    s=$(best sh -c "zstd -d -q -f '$work/q.qfz' -o '$work/z.out' && sync -f '$work/z.out'")
    cmp -s "$g" "$work/z.out" || { echo "FAIL: zstd -d of the pack differs"; exit 1; }
    row "zstd -d of the .qfz" "$bytes" "$(stat -c %s "$work/q.qfz")" "$s"
done
echo
echo "(ratio = GGUF bytes / compressed bytes; qforge unpack also checks every frame's SHA-256 and the"
echo " GGUF's own integrity digests before renaming the output into place)"
