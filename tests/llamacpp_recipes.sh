#!/usr/bin/env bash
# The recipes that carry llama.cpp's names (q4_k_m, q3_k_m, q2_k, q3_k_s/l, q4_k_s, q5_k_s/m, q6_k) choose,
# tensor for tensor, the types llama-quantize chooses for its mix of that name on the same F32 file
# (../shared/ref's build), and write its general.file_type. Q4_K_M and Q3_K_M are compared on every
# architecture family: dense Llama (and an 80-layer GQA Llama, llama.cpp's "70B" rule), Qwen2, Mixtral
# (8 experts: its own attn_v/attn_k/attn_output rules), Qwen2-MoE (shared expert), Qwen3-MoE,
# DeepSeek-V2 and DeepSeek-V3 (MLA, routed and shared experts, a leading dense layer). Models are
# generated (qforge synth) with rows that fit every block size except where a fallback is meant. The
# other mixes, whose rules are a subset of the same conditions, on the models where those conditions
# differ: dense Llama, the 70B rule, 8 experts, DeepSeek-V3.
#
# The i-quant mixes (iq4_xs, iq4_nl, iq3_s, iq3_m, iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s)
# choose by whether an imatrix is given, so both tools get the same one (qforge calibrate's, in
# llama.cpp's layout; llama-quantize refuses most of them without). They are compared on stories260K
# (rows of 64 and 172: no 256-block fits, 32-block fallbacks and F16; tied embeddings) file against
# file; on an 8-layer dense Llama (the first-eighth rules), a 16-layer DeepSeek-V2 with 4 experts
# (llama.cpp counts ffn_down tensors, routed and shared apart, where the others count layers) and the
# shared qf-deepseek-a (DeepSeek-V3 architecture) against llama-quantize --dry-run, which prints the
# type its one selection function chose for every tensor without running ggml's slow i-quant searches;
# iq4_xs and iq4_nl also without an imatrix (llama.cpp then keeps the first ffn_down at Q5_K).
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
if [ ! -x "$ref/bin/llama-quantize" ]; then echo "SKIP: llama-quantize not installed under $ref"; exit 77; fi

all="q4_k_m q3_k_m q2_k q3_k_s q3_k_l q4_k_s q5_k_s q5_k_m q6_k"
models=(
    "llama|$all|--dim 256 --ff 512 --layers 8"
    "llama70|q4_k_m q3_k_m q2_k q3_k_s q4_k_s q5_k_m|--dim 256 --ff 512 --layers 80"
    "qwen2|q4_k_m q3_k_m|--arch qwen2 --dim 256 --ff 512 --layers 4"
    "mixtral|$all|--arch mixtral --dim 256 --ff 512 --layers 4 --experts 8"
    "qwen2moe|q4_k_m q3_k_m|--arch qwen2moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 8"
    "qwen3moe|q4_k_m q3_k_m|--arch qwen3moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv2|q4_k_m q3_k_m|--arch deepseek-v2 --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv3|$all|--arch deepseek-v3 --dim 256 --ff 512 --ff-exp 256 --layers 5 --experts 16"
)
# compare NAME MIX OURS.gguf THEIRS: THEIRS is llama-quantize's file, or the log of its --dry-run
# (then general.file_type, which it writes straight from the mix, is not compared)
compare() {
    local diff
    diff=$(python3 - "$root/tests/lib" "$3" "$4" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[1])
from gguf_meta import read
ours_f = read(sys.argv[2])
ours = {t["name"]: t["type"] for t in ours_f["tensors"]}
if sys.argv[3].endswith(".gguf"):
    theirs_f = read(sys.argv[3])
    theirs = {t["name"]: t["type"] for t in theirs_f["tensors"]}
    ft = [f["kv"].get("general.file_type", {}).get("value") for f in (ours_f, theirs_f)]
else:
    ids = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q2_k": 10, "q3_k": 11,
           "q4_k": 12, "q5_k": 13, "q6_k": 14, "iq2_xxs": 16, "iq2_xs": 17, "iq3_xxs": 18, "iq1_s": 19,
           "iq4_nl": 20, "iq3_s": 21, "iq2_s": 22, "iq4_xs": 23, "iq1_m": 29, "bf16": 30}
    theirs = {}
    for line in open(sys.argv[3]):
        m = re.match(r"\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[.*type =\s+(\w+),.*?(?:\((\w+)\))?\s*$", line)
        if m: theirs[m[1]] = ids[(m[3] or m[2]).lower()]
    ft = [None, None]
    if not theirs: print("no tensor lines in llama-quantize --dry-run's log"); sys.exit()
names = sorted(set(ours) | set(theirs))
bad = [f"{n}: ours {ours.get(n)} llama.cpp {theirs.get(n)}" for n in names if ours.get(n) != theirs.get(n)]
if ft[0] != ft[1]: bad.insert(0, f"general.file_type: ours {ft[0]} llama.cpp {ft[1]}")
print("; ".join(bad[:6]) + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
PY
)
    if [ -z "$diff" ]; then ok; else bad "$1 $2: types differ from llama-quantize's: $diff"; fi
}

for m in "${models[@]}"; do
    IFS='|' read -r name mixes args <<<"$m"
    set -- $args
    "$qf" synth "$name" --vocab 512 "$@" -q && "$qf" convert "$name" -o "$name.gguf" --type f32 -q ||
        { bad "$name: synth/convert failed"; continue; }
    for mix in $mixes; do
        "$qf" quantize "$name.gguf" -o "$name-ours-$mix.gguf" --recipe $mix -q ||
            { bad "$name $mix: qforge quantize failed"; continue; }
        "$ref/bin/llama-quantize" "$name.gguf" "$name-llama-$mix.gguf" "${mix^^}" >"$name-$mix.log" 2>&1 ||
            { bad "$name $mix: llama-quantize failed: $(tail -2 "$name-$mix.log")"; continue; }
        compare "$name" "$mix" "$name-ours-$mix.gguf" "$name-llama-$mix.gguf"
    done
done

iq="iq4_xs iq4_nl iq3_s iq3_m iq3_xxs iq2_m iq2_s iq2_xs iq2_xxs iq1_m iq1_s"
shared=$root/../shared
head -c 20000 "$shared/text/tinystories-valid-head.txt" >text.txt 2>/dev/null ||
    { echo "SKIP: ../shared/text is absent"; cli_test_finish llamacpp_recipes; exit; }
# NAME|MIXES|how llama-quantize runs (file or dry-run)|imatrix or none|source: shared model or synth arguments
iq_models=(
    "st|$iq|file|imatrix|shared:stories260K"
    "iqllama|$iq|dry-run|imatrix|--dim 256 --ff 512 --layers 8"
    "iqllama|iq4_xs iq4_nl|dry-run|none|"
    "iqdsv2|$iq|dry-run|imatrix|--arch deepseek-v2 --dim 256 --ff 512 --ff-exp 256 --layers 16 --experts 4"
    "dsa|$iq|dry-run|imatrix|shared:qf-deepseek-a"
)
for m in "${iq_models[@]}"; do
    IFS='|' read -r name mixes how imx src <<<"$m"
    if [ ! -e "$name.gguf" ]; then
        case $src in
        shared:*) "$qf" convert "$shared/models/${src#shared:}" -o "$name.gguf" --type f32 -q ;;
        *) "$qf" synth "$name" --vocab 512 $src -q && "$qf" convert "$name" -o "$name.gguf" --type f32 -q ;;
        esac || { bad "$name: convert failed"; continue; }
        "$qf" calibrate "$name.gguf" -f text.txt -o "$name-im.gguf" -c 64 --chunks 4 -q 2>/dev/null ||
            { bad "$name: calibrate failed"; continue; }
    fi
    im=(); [ "$imx" = imatrix ] && im=(--imatrix "$name-im.gguf")
    for mix in $mixes; do
        tag=$name-$mix-$imx
        "$qf" quantize "$name.gguf" -o "$tag-ours.gguf" --recipe $mix "${im[@]}" -q 2>/dev/null ||
            { bad "$tag: qforge quantize failed"; continue; }
        if [ "$how" = file ]; then
            theirs=$tag-llama.gguf
            "$ref/bin/llama-quantize" "${im[@]}" "$name.gguf" "$theirs" "${mix^^}" >"$tag.log" 2>&1
        else
            theirs=$tag.log
            "$ref/bin/llama-quantize" --dry-run "${im[@]}" "$name.gguf" "$tag-llama.gguf" "${mix^^}" >"$theirs" 2>&1
        fi || { bad "$tag: llama-quantize failed: $(tail -2 "$tag.log")"; continue; }
        compare "$name" "$mix ($imx)" "$tag-ours.gguf" "$theirs"
    done
done
cli_test_finish llamacpp_recipes
