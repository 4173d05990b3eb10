#!/usr/bin/env bash
# Conversion streams: peak RSS stays below twice the largest tensor plus 64 MiB, whatever the model
# size. The generated checkpoint has two 128 MiB tensors (embeddings, output) and small layers; it is
# converted from its directory and from a .tar of it (the archive path buffers one tensor at a time).
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"
"$qf" synth "$scratch/big" --vocab 65536 --dim 1024 --ff 1024 --layers 2 --dtype bf16
tar -C "$scratch" -cf "$scratch/big.tar" big
largest=$((65536 * 1024 * 2))
limit=$((2 * largest + 64 * 1024 * 1024))
pass=0; fail=0
for src in "$scratch/big" "$scratch/big.tar"; do
    for type in f16 q8_0; do
        rss_kib=$(python3 - "$qf" "$src" "$scratch/out.gguf" "$type" <<'PY'
import resource, subprocess, sys
qf, src, out, t = sys.argv[1:]
subprocess.run([qf, "convert", src, "-o", out, "--type", t, "-q", "--threads", "2"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
        rss=$((rss_kib * 1024))
        awk -v s="$(basename "$src")" -v t="$type" -v r="$rss" -v l="$limit" -v g="$largest" 'BEGIN {
            printf "%s -> %s: peak RSS %.1f MiB, limit %.1f MiB (2 x %.0f MiB + 64 MiB)\n", s, t, r/1048576, l/1048576, g/1048576 }'
        if [ "$rss" -le "$limit" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: over the limit"; fi
    done
done
rm -rf "$scratch"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
