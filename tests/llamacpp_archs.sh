#!/usr/bin/env bash
# Every architecture the converter writes is run by llama.cpp (the reference in ../shared/ref) and by
# qforge's runtime on the HF checkpoint, with the same perplexity: Llama (untied), Llama 3 rope scaling
# (rope_freqs tensor), Mistral, Qwen2 (q/k/v biases, tied embeddings), and a .tar.zst source that must
# give the same bytes as its directory. Models are generated (qforge synth).
#
# Then every architecture of the table (Llama, Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2,
# DeepSeek-V3, and V3 in its FP8 release layout with an MTP layer, sharded) is converted by llama.cpp's
# own converter and by qforge: the two F32 files must hold the same tensors (names, shapes, types, bytes)
# and metadata (tests/lib/gguf_compare.py lists the deliberate differences), and llama.cpp's perplexity
# of our file must equal our runtime's on the HF checkpoint and on the GGUF. These checkpoints carry the
# SentencePiece tokenizer.model of ../shared/models/qf-deepseek-a, which llama.cpp's converter takes for
# every family (--spm-vocab of ../shared/ref/llamacpp_convert.py); that part skips, saying so, without
# ../shared or Debian's python3-torch.
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
. "$(dirname "$0")/lib/llamacpp.sh"
if [ ! -x "$ref/bin/llama-perplexity" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch"
python3 - <<'PY'
import random
random.seed(7)
words = "the quick brown fox jumps over the lazy dog once upon a time there was a little girl who liked to read stories".split()
open("text.txt", "w").write(" ".join(random.choice(words) for _ in range(8000)))
PY
pass=0; fail=0
check() { # name model-dir
    local name=$1 dir=$2
    "$qf" convert "$dir" -o "$name.gguf" --type f32 -q
    local ours theirs
    ours=$("$qf" perplexity "$dir" --text text.txt --ctx 64 --chunks 6 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])')
    theirs=$(llama_ppl "$name.gguf" text.txt 64 6)
    if [ -n "$theirs" ] && python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a/b-1) < 1e-3 else 1)" "$ours" "$theirs"; then
        echo "$name: qforge (HF dir) PPL $ours, llama.cpp (our GGUF) PPL $theirs"; pass=$((pass+1))
    else
        echo "FAIL $name: qforge PPL $ours, llama.cpp PPL '${theirs:-none}'"; fail=$((fail+1))
    fi
}
"$qf" synth llama --dim 128 --ff 256 --vocab 300 --seed 1
check llama llama
"$qf" synth llama3 --dim 128 --ff 256 --vocab 300 --seed 2
python3 - <<'PY'
import json
c = json.load(open("llama3/config.json"))
c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}
c["rope_theta"] = 500000.0
json.dump(c, open("llama3/config.json", "w"))
PY
check llama3 llama3
if "$qf" inspect llama3.gguf | grep -c rope_freqs.weight >/dev/null; then pass=$((pass+1)); else echo "FAIL llama3: no rope_freqs.weight"; fail=$((fail+1)); fi
"$qf" synth mistral --arch mistral --dim 128 --ff 256 --vocab 300 --seed 3
check mistral mistral
"$qf" synth qwen2 --arch qwen2 --tied --dim 128 --ff 256 --vocab 300 --seed 4
check qwen2 qwen2
tar -C . --zstd -cf qwen2.tar.zst qwen2
"$qf" convert qwen2.tar.zst -o qwen2-from-archive.gguf --type f32 -q
if cmp -s qwen2.gguf qwen2-from-archive.gguf; then echo "qwen2.tar.zst: byte-identical to the directory's conversion"; pass=$((pass+1))
else echo "FAIL: conversion from qwen2.tar.zst differs from the directory's"; fail=$((fail+1)); fi

# ---- every architecture against llama.cpp's converter ---------------------------------------------------
spm=$root/../shared/models/qf-deepseek-a
text=$root/../shared/text/tinystories-valid-head.txt
ppl_of() { "$qf" perplexity "$1" --text "$text" --ctx 128 --chunks 4 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }
if [ ! -f "$spm/tokenizer.model" ] || [ ! -f "$text" ]; then
    echo "SKIP: converter comparison (../shared/models/qf-deepseek-a or ../shared/text absent)"
elif ! /usr/bin/python3 -c 'import torch, numpy, sentencepiece' 2>/dev/null; then
    echo "SKIP: converter comparison (llama.cpp's converter needs Debian's python3-torch python3-numpy python3-sentencepiece)"
else
    for spec in llama qwen2 qwen3 mixtral qwen2moe qwen3moe deepseek-v2 deepseek-v3 "deepseek-v3 --fp8 --shards 2 --mtp 1"; do
        set -- $spec
        arch=$1; shift
        name=conv-$arch${1:+-fp8}
        rm -rf "$name"
        "$qf" synth "$name" --arch "$arch" --vocab 8000 --dim 128 --ff 256 --layers 3 --seed 5 "$@"
        rm -f "$name/tokenizer.json"
        cp "$spm/tokenizer.model" "$spm/tokenizer_config.json" "$name/"
        "$qf" convert "$name" -o "$name-qf.gguf" --type f32 -q
        case $arch in
            deepseek*) conv=(/usr/bin/python3 "$root/../shared/ref/llamacpp_convert_ds.py") ;;
            *) conv=(/usr/bin/python3 "$root/../shared/ref/llamacpp_convert.py" --spm-vocab) ;;
        esac
        if ! "${conv[@]}" "$name" --outtype f32 --outfile "$name-ref.gguf" >"$name-conv.log" 2>&1; then
            echo "FAIL $name: llama.cpp's converter failed ($(tail -n 1 "$name-conv.log"))"; fail=$((fail+1)); continue
        fi
        if /usr/bin/python3 "$root/tests/lib/gguf_compare.py" "$name-ref.gguf" "$name-qf.gguf" >"$name-cmp.log"; then
            echo "$name: $(tail -n 1 "$name-cmp.log") (llama.cpp's converter vs ours)"; pass=$((pass+1))
        else
            echo "FAIL $name: our conversion differs from llama.cpp's:"; grep DIFF "$name-cmp.log" | head -5; fail=$((fail+1))
        fi
        hf=$(ppl_of "$name"); ours=$(ppl_of "$name-qf.gguf"); theirs=$(llama_ppl "$name-qf.gguf" "$text" 128 4)
        if [ -n "$theirs" ] && python3 -c "import sys; a,b,c=map(float,sys.argv[1:4]); sys.exit(0 if abs(a/c-1) < 1e-4 and abs(b/c-1) < 1e-4 else 1)" "$hf" "$ours" "$theirs"; then
            echo "$name: PPL qforge (HF) $hf, qforge (GGUF) $ours, llama.cpp (our GGUF) $theirs"; pass=$((pass+1))
        else
            echo "FAIL $name: PPL qforge (HF) $hf, qforge (GGUF) $ours, llama.cpp '${theirs:-none}'"; fail=$((fail+1))
        fi
    done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
