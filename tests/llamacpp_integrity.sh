#!/usr/bin/env bash
# A file qforge wrote and llama-quantize then rewrote (metadata copied, the stale qforge.integrity.*
# keys included, tensors reordered and re-encoded, keys added): qforge verify --integrity says the file
# was rewritten by another tool, matching digests to tensors by name (the norms llama-quantize keeps as
# F32 still match), instead of listing every tensor as changed; the exit code stays 1.
set -uo pipefail
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
if [ ! -x "$ref/bin/llama-quantize" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
. "$(dirname "$0")/lib/checks.sh"

"$qf" synth m --dim 128 --ff 256 --vocab 300 --layers 2 >/dev/null && "$qf" convert m -o m.gguf --type f16 -q || exit 1
LD_LIBRARY_PATH="$ref/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$ref/bin/llama-quantize" m.gguf q.gguf Q4_K_M 2 \
    >quantize.log 2>&1 || { echo "FAIL: llama-quantize: $(tail -n 3 quantize.log)"; exit 1; }
out=$("$qf" verify q.gguf --integrity 2>&1); rc=$?
[ "$rc" -eq 1 ] && ok || bad "exit $rc, expected 1: $out"
grep -q "q.gguf: REWRITTEN by another tool" <<<"$out" && ok || bad "not reported as rewritten: $out"
grep -q "rewritten by another tool since qforge wrote it" <<<"$out" && ok || bad "error line: $out"
# by name: the 5 F32 norms keep their bytes; nothing is reported as CHANGED (same type, other bytes)
grep -q "By name: 5 tensors keep their bytes, 16 re-encoded, 0 changed" <<<"$out" && ok || bad "by-name counts: $out"
grep -q "CHANGED tensor" <<<"$out" && bad "tensors listed as CHANGED: $out" || ok
json=$("$qf" verify q.gguf --integrity --json 2>/dev/null)
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["rewritten"] and d["scheme"]==2 and not d["changed_tensors"] and len(d["re_encoded_tensors"])==16 else 1)' "$json" \
    && ok || bad "json: $json"
finish llamacpp_integrity
