#!/usr/bin/env bash
# Conversion streams: peak RSS stays below twice the largest source tensor plus 64 MiB, whatever the
# model size. The first generated checkpoint has two 128 MiB tensors (embeddings, output) and small
# layers; it is converted from its directory and from a .tar and a .tar.zst of it. An archive streams
# each tensor in windows of one chunk of rows (formats/source.h, qf_source_prepare_rows), so from an
# archive the peak does not depend on the tensor size at all: at most 96 MiB here, below one 128 MiB
# tensor (it was 186-190 MiB when a tensor was held whole, and a tiny .tar.zst of zeros could ask for
# gigabytes). The second is DeepSeek-V3-shaped in the FP8 release layout with 64 experts of 1 MiB,
# whose stacked GGUF tensors (128 MiB each in F16) are larger than the bound, so they must stream
# expert by expert; it is converted and quantized (q4_k_m, and fp8, whose E4M3 weights pass through as
# the release's codes and scales, read in the same windows of rows) from its directory and a .tar of it,
# and the .tar gives the same bytes. BF16 -> BF16 of the first and of a small BF16 MoE (stored bytes
# passed through) gives the same bytes from the directory and from its archives.
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"
"$qf" synth "$scratch/big" --vocab 65536 --dim 1024 --ff 1024 --layers 2 --dtype bf16
tar -C "$scratch" -cf "$scratch/big.tar" big
tar -C "$scratch" -cf - big | zstd -q -1 -o "$scratch/big.tar.zst"
"$qf" synth "$scratch/moe" --arch deepseek-v3 --fp8 --experts 64 --dim 1024 --ff 1024 --ff-exp 1024 --vocab 512 --layers 2
tar -C "$scratch" -cf "$scratch/moe.tar" moe
"$qf" synth "$scratch/moe16" --arch deepseek-v3 --experts 8 --dim 256 --ff 256 --ff-exp 256 --vocab 512 --layers 2 --dtype bf16
tar -C "$scratch" -cf "$scratch/moe16.tar" moe16
pass=0; fail=0

measure() { # src limit-bytes why spec...: quantize src with spec, check the peak RSS against the limit
    local src=$1 limit=$2 why=$3 rss_kib rss
    shift 3
    rss_kib=$(python3 - "$qf" "$src" "$scratch/out-$(basename "$src").gguf" "$@" <<'PY'
import resource, subprocess, sys
qf, src, out, *spec = sys.argv[1:]
subprocess.run([qf, "quantize", src, "-o", out, *spec, "-q", "--threads", "2"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
    rss=$((rss_kib * 1024))
    awk -v s="$(basename "$src")" -v t="$*" -v r="$rss" -v l="$limit" -v w="$why" 'BEGIN {
        printf "%s %s: peak RSS %.1f MiB, limit %.1f MiB (%s)\n", s, t, r/1048576, l/1048576, w }'
    if [ "$rss" -le "$limit" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: over the limit"; fi
}

largest=$((65536 * 1024 * 2))
for src in "$scratch/big" "$scratch/big.tar" "$scratch/big.tar.zst"; do
    case $src in
        *.tar|*.tar.zst) limit=$((96 * 1024 * 1024)); why="an archive streams its tensors" ;;
        *) limit=$((2 * largest + 64 * 1024 * 1024)); why="2 x $((largest >> 20)) MiB + 64 MiB" ;;
    esac
    for type in f16 bf16 q8_0; do
        measure "$src" "$limit" "$why" --type "$type"
        cp "$scratch/out-$(basename "$src").gguf" "$scratch/$(basename "$src")-$type.gguf"
    done
done
for src in "$scratch/moe" "$scratch/moe.tar"; do
    for spec in "--type f16" "--recipe q4_k_m" "--recipe fp8"; do
        # shellcheck disable=SC2086 # two words on purpose
        measure "$src" $((2 * 1024 * 1024 + 64 * 1024 * 1024)) "2 x 1 MiB + 64 MiB; stacked tensors 128 MiB" $spec
        cp "$scratch/out-$(basename "$src").gguf" "$scratch/$(basename "$src")-${spec#--* }.gguf"
    done
done
# BF16 -> BF16 passes the stored bytes through: from a directory written from its mapping, from an
# archive copied out of the stream; a BF16 MoE's experts go the same two ways into their stacks.
for src in "$scratch/moe16" "$scratch/moe16.tar"; do
    "$qf" quantize "$src" -o "$scratch/$(basename "$src")-bf16.gguf" --type bf16 -q --threads 2
done
for pair in big-bf16:big.tar-bf16 big-bf16:big.tar.zst-bf16 moe16-bf16:moe16.tar-bf16 \
            moe-f16:moe.tar-f16 moe-q4_k_m:moe.tar-q4_k_m moe-fp8:moe.tar-fp8; do
    a=${pair%%:*} b=${pair#*:}
    if cmp -s "$scratch/$a.gguf" "$scratch/$b.gguf"; then echo "$b: byte-identical to $a"; pass=$((pass+1))
    else echo "FAIL: $b differs from $a"; fail=$((fail+1)); fi
done
rm -rf "$scratch"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
