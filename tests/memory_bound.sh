#!/usr/bin/env bash
# Conversion streams: peak RSS stays below twice the largest source tensor plus 64 MiB, whatever the
# model size. The first generated checkpoint has two 128 MiB tensors (embeddings, output) and small
# layers; the second is DeepSeek-V3-shaped in the FP8 release layout with 64 experts of 1 MiB, whose
# stacked GGUF tensors (128 MiB each in F16) are larger than that bound, so they must stream expert by
# expert. Both are converted from their directory and from a .tar of it (the archive path buffers one
# tensor at a time), and the MoE one is also quantized with q4_k_m; the .tar gives the same bytes.
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"
"$qf" synth "$scratch/big" --vocab 65536 --dim 1024 --ff 1024 --layers 2 --dtype bf16
tar -C "$scratch" -cf "$scratch/big.tar" big
"$qf" synth "$scratch/moe" --arch deepseek-v3 --fp8 --experts 64 --dim 1024 --ff 1024 --ff-exp 1024 --vocab 512 --layers 2
tar -C "$scratch" -cf "$scratch/moe.tar" moe
pass=0; fail=0
measure() { # src largest-source-tensor-bytes spec...
    local src=$1 largest=$2; shift 2
    local limit=$((2 * largest + 64 * 1024 * 1024)) rss_kib rss
    rss_kib=$(python3 - "$qf" "$src" "$scratch/out-$(basename "$src").gguf" "$@" <<'PY'
import resource, subprocess, sys
qf, src, out, *spec = sys.argv[1:]
subprocess.run([qf, "quantize", src, "-o", out, *spec, "-q", "--threads", "2"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
    rss=$((rss_kib * 1024))
    awk -v s="$(basename "$src")" -v t="$*" -v r="$rss" -v l="$limit" -v g="$largest" 'BEGIN {
        printf "%s %s: peak RSS %.1f MiB, limit %.1f MiB (2 x %.0f MiB + 64 MiB)\n", s, t, r/1048576, l/1048576, g/1048576 }'
    if [ "$rss" -le "$limit" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: over the limit"; fi
}
for src in "$scratch/big" "$scratch/big.tar"; do
    for type in f16 q8_0; do measure "$src" $((65536 * 1024 * 2)) --type "$type"; done
done
for src in "$scratch/moe" "$scratch/moe.tar"; do
    for spec in "--type f16" "--recipe q4_k_m"; do
        # shellcheck disable=SC2086 # two words on purpose
        measure "$src" $((1024 * 1024)) $spec
        cp "$scratch/out-$(basename "$src").gguf" "$scratch/$(basename "$src")-${spec#--* }.gguf"
    done
done
for t in f16 q4_k_m; do
    if cmp -s "$scratch/moe-$t.gguf" "$scratch/moe.tar-$t.gguf"; then echo "moe.tar -> $t: byte-identical to the directory's"; pass=$((pass+1))
    else echo "FAIL: moe.tar -> $t differs from the directory's conversion"; fail=$((fail+1)); fi
done
rm -rf "$scratch"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
