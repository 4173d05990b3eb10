#!/usr/bin/env bash
# Convert throughput against a plain copy of the same bytes, measured in the same run.
#   bash bench/convert_throughput.sh [QFORGE_BIN] [MODEL_DIR]
# Default model: ../shared/models/qf-llama-a if present, else a generated 0.5 GiB checkpoint.
# Each timing is the best of 3 runs with a warm page cache (the copy gets the same advantage).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
model=${2:-}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if [ -z "$model" ]; then
    if [ -d "$here/../shared/models/qf-llama-a" ]; then model=$here/../shared/models/qf-llama-a
    else model=$work/gen; "$qf" synth "$model" --vocab 32768 --dim 2048 --ff 5632 --layers 2 --dtype bf16; fi
fi
src_bytes=$(cat "$model"/*.safetensors | wc -c)
best() { # best wall time in seconds of 3 runs of "$@"
    python3 - "$@" <<'PY'
import subprocess, sys, time
ts = []
for _ in range(3):
    t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); ts.append(time.perf_counter() - t)
print(f"{min(ts):.4f}")
PY
}
cat "$model"/*.safetensors > /dev/null
t_copy=$(best sh -c "cat '$model'/*.safetensors > '$work/copy.bin' && sync -f '$work/copy.bin'")
printf 'model: %s (%.1f MiB of safetensors)\n' "$model" "$(awk -v b="$src_bytes" 'BEGIN{print b/1048576}')"
printf '%-28s %8s %10s %8s\n' "job" "seconds" "MiB/s" "vs copy"
printf '%-28s %8.3f %10.1f %8s\n' "copy (cat + fsync)" "$t_copy" "$(awk -v b="$src_bytes" -v t="$t_copy" 'BEGIN{print b/1048576/t}')" "1.00x"
jobs="--type=bf16 --type=f16 --type=q8_0"
# an FP8 release also passes its E4M3 bytes through (the fp8 recipe): the most I/O-bound job there is
grep -Eq '"quant_method":[[:space:]]*"fp8"' "$model/config.json" 2>/dev/null && jobs="$jobs --recipe=fp8"
for threads in 1 2; do
    for job in $jobs; do
        t=$(best "$qf" convert "$model" -o "$work/out.gguf" "${job%%=*}" "${job#*=}" --threads "$threads" -q)
        printf '%-28s %8.3f %10.1f %7.2fx\n' "convert -> ${job#*=}, $threads thr" "$t" \
            "$(awk -v b="$src_bytes" -v t="$t" 'BEGIN{print b/1048576/t}')" "$(awk -v a="$t_copy" -v t="$t" 'BEGIN{print a/t}')"
    done
done
echo "(MiB/s counts source bytes; 'vs copy' > 1 means faster than copying the checkpoint)"
