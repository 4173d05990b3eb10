#!/usr/bin/env bash
# Conversion streams: peak RSS stays below twice the largest tensor plus 64 MiB, whatever the model
# size. The generated checkpoint has two 128 MiB tensors (embeddings, output) and small layers; it is
# converted from its directory and from a .tar and a .tar.zst of it. An archive streams each tensor in
# windows of one chunk of rows (formats/source.h, qf_source_prepare_rows), so from an archive the peak
# does not depend on the tensor size at all: at most 96 MiB here, below one 128 MiB tensor (it was
# 186-190 MiB when a tensor was held whole, and a tiny .tar.zst of zeros could ask for gigabytes).
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"
"$qf" synth "$scratch/big" --vocab 65536 --dim 1024 --ff 1024 --layers 2 --dtype bf16
tar -C "$scratch" -cf "$scratch/big.tar" big
tar -C "$scratch" -cf - big | zstd -q -1 -o "$scratch/big.tar.zst"
largest=$((65536 * 1024 * 2))
pass=0; fail=0
for src in "$scratch/big" "$scratch/big.tar" "$scratch/big.tar.zst"; do
    case $src in
        *.tar|*.tar.zst) limit=$((96 * 1024 * 1024)); why="an archive streams its tensors" ;;
        *) limit=$((2 * largest + 64 * 1024 * 1024)); why="2 x $((largest >> 20)) MiB + 64 MiB" ;;
    esac
    for type in f16 q8_0; do
        rss_kib=$(python3 - "$qf" "$src" "$scratch/out.gguf" "$type" <<'PY'
import resource, subprocess, sys
qf, src, out, t = sys.argv[1:]
subprocess.run([qf, "convert", src, "-o", out, "--type", t, "-q", "--threads", "2"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
        rss=$((rss_kib * 1024))
        awk -v s="$(basename "$src")" -v t="$type" -v r="$rss" -v l="$limit" -v w="$why" 'BEGIN {
            printf "%s -> %s: peak RSS %.1f MiB, limit %.1f MiB (%s)\n", s, t, r/1048576, l/1048576, w }'
        if [ "$rss" -le "$limit" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: over the limit"; fi
    done
done
rm -rf "$scratch"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
