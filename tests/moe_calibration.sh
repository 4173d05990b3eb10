#!/usr/bin/env bash
# Calibrating a Mixture-of-Experts model: every routed expert's statistics cover the tokens routed to it,
# calibrate and quantize --dry-run report per layer which experts fell below the token floor (text and
# JSON, the same experts in both commands), quantize warns about them, weights them by --sparse-experts
# and records the rule; a dense model has no such section.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

"$qf" synth ds --arch deepseek-v3 --layers 3 --experts 8 -q || exit 1
"$qf" synth dense --layers 2 -q || exit 1
make_text text.txt 4
expect 0 "calibrate ds" -- "$qf" calibrate ds -f text.txt -o im.gguf -c 64 --chunks 2 --json cal.json --expert-min-tokens 40 --progress=none
has "calibrate says how many experts fell short" "routed experts:"
has "per layer" "blk.1:"
# the routed experts' counts: each token picks experts-used (2) experts in each MoE layer, 128 tokens
python3 - cal.json <<'PY' && ok || bad "calibrate --json: experts section wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["schema"] == "qforge.calibrate/1", r["schema"]
e = r["experts"]
assert e["min_tokens"] == 40 and e["experts"] == 8 * len(e["layers"]) and len(e["layers"]) >= 1, e
for l in e["layers"]:
    assert sum(l["tokens"]) == 2 * 128, (l["layer"], sum(l["tokens"]))
    assert l["under"] == [i for i, t in enumerate(l["tokens"]) if t < 40], l
assert e["under"] == sum(len(l["under"]) for l in e["layers"])
PY
expect 0 "quantize --dry-run with the imatrix" -- "$qf" quantize ds --recipe q4_k_m --imatrix im.gguf --dry-run --expert-min-tokens 40
has "quantize --dry-run reports the coverage" "routed experts:"
has "and the policy" "weighted 'blend'"
"$qf" quantize ds --recipe q4_k_m --imatrix im.gguf --dry-run --json --expert-min-tokens 40 --sparse-experts pooled >plan.json 2>/dev/null
python3 - plan.json cal.json <<'PY' && ok || bad "quantize --dry-run --json lists other experts than calibrate"
import json, sys
p, c = (json.load(open(f)) for f in sys.argv[1:3])
assert p["experts"]["policy"] == "pooled"
assert [l["under"] for l in p["experts"]["layers"]] == [l["under"] for l in c["experts"]["layers"]]
PY
expect 0 "quantize with under-covered experts" -- "$qf" quantize ds --recipe q4_k_m --imatrix im.gguf -o q.gguf --expert-min-tokens 40 --progress=none
has "quantize warns" "routed experts saw fewer than 40 tokens"
$meta q.gguf | python3 -c 'import json,sys; v=json.load(sys.stdin)["kv"]["qforge.sparse_experts"]["value"]; assert v.startswith("blend below 40 tokens"), v' &&
    ok || bad "q.gguf does not record the sparse-expert rule"
# the policy changes the bytes of the under-covered experts, and only with under-covered experts
"$qf" quantize ds --recipe q4_k_m --imatrix im.gguf -o own.gguf --expert-min-tokens 40 --sparse-experts own -q
"$qf" quantize ds --recipe q4_k_m --imatrix im.gguf -o floor1.gguf --expert-min-tokens 1 --sparse-experts blend -q
"$qf" quantize ds --recipe q4_k_m --imatrix im.gguf -o own1.gguf --expert-min-tokens 1 --sparse-experts own -q
# with no expert under the floor the policy is moot: same tensors (the recorded rule differs)
digests() { $meta "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv"]["qforge.integrity.tensor_sha256"]["value"])'; }
a=$(digests floor1.gguf); b=$(digests own1.gguf)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "the policy changed tensors where no expert is under the floor"
[ "$(digests q.gguf)" != "$(digests own.gguf)" ] && ok || bad "blend and own gave the same tensors"
expect 2 "a policy that does not exist" -- "$qf" quantize ds --recipe q4_k_m --imatrix im.gguf -o x.gguf --sparse-experts mean
has "names the choices" "not one of blend, pooled, own"
[ ! -e x.gguf ] && ok || bad "a refused policy left an output"
expect 2 "calibrate --json onto its own imatrix" -- "$qf" calibrate ds -f text.txt -o im2.gguf -c 64 --chunks 1 --json im2.gguf
[ ! -e im2.gguf ] && ok || bad "a refused calibrate left an output"
# the same bytes on any thread count: calibration sums in token order, quantization per row
"$qf" calibrate ds -f text.txt -o im-t1.gguf -c 64 --chunks 2 -t 1 -q
"$qf" calibrate ds -f text.txt -o im-t2.gguf -c 64 --chunks 2 -t 2 -q
cmp -s im-t1.gguf im-t2.gguf && cmp -s im-t1.gguf im.gguf && ok || bad "calibrate's imatrix depends on the thread count"
"$qf" quantize ds --recipe int3-mix --imatrix im.gguf -o q-t1.gguf -t 1 -q
"$qf" quantize ds --recipe int3-mix --imatrix im.gguf -o q-t2.gguf -t 2 -q
cmp -s q-t1.gguf q-t2.gguf && ok || bad "quantize depends on the thread count"
# dense: nothing about experts
expect 0 "calibrate dense" -- "$qf" calibrate dense -f text.txt -o imd.gguf -c 64 --chunks 1 --json dense.json --progress=none
grep -q "routed experts" <<<"$out" && bad "a dense model reports routed experts" || ok
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["experts"] is None' dense.json && ok || bad "dense calibrate json has experts"
cli_test_finish moe_calibration
