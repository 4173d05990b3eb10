#!/usr/bin/env bash
# Expert-group routing rules llama.cpp does not share. DeepSeek-V2's group_limited_greedy ranks groups
# by their best expert, llama.cpp (DeepSeek-V3's rule) by the sum of their two best: conversion warns,
# records the model's rule (qforge.expert_group_score), and qforge's runtime gives the same PPL on the
# GGUF as on the checkpoint. A group limit that keeps every group selectable is written as ungrouped,
# since llama.cpp asserts expert_group_used_count < expert_group_count. Where the llama.cpp reference
# is installed, it must load both files and (for the inert limit) agree with qforge.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
source "$root/tests/lib/llamacpp.sh"

"$qf" synth v2 --arch deepseek-v2 --experts 8 -q || exit 1
make_text text.txt 3
# group CASE N_GROUP TOPK_GROUP: a copy of v2 routing by group_limited_greedy
group() {
    cp -r v2 "$1"
    python3 - "$1/config.json" "$2" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(topk_method="group_limited_greedy", n_group=int(sys.argv[2]), topk_group=int(sys.argv[3]))
json.dump(c, open(sys.argv[1], "w"))
PY
}
ppl() { "$qf" perplexity "$1" -f text.txt -c 64 --chunks 4 --progress=none 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }

group one 4 1   # the best expert's group only: the max rule decides which
group inert 4 4 # every group selectable: no limit at all
expect 0 "convert one" -- "$qf" convert one -o one.gguf --type f32
has "warning" "llama.cpp ranks them by their two best"
[ "$($meta one.gguf | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv"].get("qforge.expert_group_score", {}).get("value"))')" = max ] &&
    ok || bad "one.gguf lacks qforge.expert_group_score = max"
expect 0 "requantize one" -- "$qf" quantize one.gguf -o one-q8.gguf --type q8_0 -q
[ "$($meta one-q8.gguf | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv"].get("qforge.expert_group_score", {}).get("value"))')" = max ] &&
    ok || bad "re-quantizing dropped qforge.expert_group_score"
a=$(ppl one); b=$(ppl one.gguf); c=$(ppl inert)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "group_limited_greedy: checkpoint PPL '$a', its GGUF '$b'"
[ -n "$c" ] && [ "$a" != "$c" ] && ok || bad "the group limit changed nothing ($a vs $c): the test would not see a wrong rule"

expect 0 "convert inert" -- "$qf" convert inert -o inert.gguf --type f32 -q
$meta inert.gguf | python3 -c 'import json,sys; d=json.load(sys.stdin)["kv"]; sys.exit(any("expert_group" in k for k in d))' &&
    ok || bad "an inert group limit was written: llama.cpp would assert on it"
[ "$(ppl inert.gguf)" = "$c" ] && ok || bad "inert: GGUF PPL differs from the checkpoint's ($c)"

if [ -x "$ref/bin/llama-perplexity" ]; then
    l_inert=$(llama_ppl inert.gguf text.txt 64 4); l_one=$(llama_ppl one.gguf text.txt 64 4)
    [ -n "$l_one" ] && ok || bad "llama.cpp did not load one.gguf: $(tail -3 "$LLAMA_LOG")"
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-4 * b)" "${l_inert:-0}" "$c" &&
        ok || bad "llama.cpp on inert.gguf: PPL '$l_inert', qforge $c"
else
    echo "SKIP: llama.cpp reference not installed ($ref): the load checks in llama.cpp did not run"
fi
cli_test_finish moe_routing
