#!/usr/bin/env bash
# Integrity of split GGUF sets (docs/integrity.md, "Split sets"): verify --integrity checks every part
# against its own digests and the set's identity against the parts, naming the part and the tensor that
# changed; parts written by separate --only-split runs check as one set; sign and verify --pubkey cover
# every part (a changed part fails the signature, a re-signed set is needed after any change).
set -uo pipefail
. "$(dirname "$0")/lib/cli_test.sh"
cli_test_setup "$@"

"$qf" synth m --dim 64 --ff 128 --vocab 300 --layers 2 >/dev/null || exit 1
# the parts of a set written by four separate jobs (--only-split), as a batch array would
mkdir jobs
for k in 4 2 1 3; do
    expect 0 "job $k" -- "$qf" quantize m -o jobs/s.gguf --type q8_0 --split-max-tensors 6 --only-split $k -q
done
first=jobs/s-00001-of-00004.gguf
expect 0 "verify --integrity of the assembled set" -- "$qf" verify $first --integrity
has "the set is named" "$first: OK (scheme 2: every byte covered; header + 21 tensors in a split set of 4 parts"
out=$("$qf" verify $first --integrity --json)
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(not (d["ok"] and d["parts"]==4 and d["tensors"]==21))' "$out" &&
    ok || bad "--json: $out"

# one changed byte in part 3: exit 1, the part and the tensor named
flip() { # FILE TENSOR-INDEX: flips one bit of that tensor's data
    python3 - "$root/tests/lib" "$1" "$2" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import gguf_meta
p, i = sys.argv[2], int(sys.argv[3]); m = gguf_meta.read(p); t = m["tensors"][i]
b = bytearray(open(p, "rb").read()); b[m["data_offset"] + t["offset"] + 3] ^= 1; open(p, "wb").write(b); print(t["name"])
PY
}
cp -r jobs changed
name=$(flip changed/s-00003-of-00004.gguf 1)
expect 1 "changed tensor" -- "$qf" verify changed/s-00001-of-00004.gguf --integrity
has "names the part and tensor" "changed/s-00003-of-00004.gguf: CHANGED tensor $name"
has "error line names the part" "changed/s-00003-of-00004.gguf: integrity check failed: 1 of 6 tensors changed (first: '$name')"
# two parts changed: the first named, the other counted
flip changed/s-00004-of-00004.gguf 0 >/dev/null
expect 1 "two parts changed" -- "$qf" verify changed/s-00001-of-00004.gguf --integrity
has "counts the other part" "1 more part of the set failed too"
# metadata of the first part changed (general.name): that part's header, the set's identity
cp -r jobs meta
python3 -c '
import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); i = b.index(b"general.name") + 12 + 4 + 8
b[i] ^= 0x20; open(p, "wb").write(b)' meta/s-00001-of-00004.gguf
expect 1 "metadata changed" -- "$qf" verify meta/s-00001-of-00004.gguf --integrity
has "header named" "meta/s-00001-of-00004.gguf: integrity check failed: header/metadata changed"
has "set identity" "the set's identity does not match its parts"

# signatures over the whole set
openssl genpkey -algorithm ed25519 -out key.pem 2>/dev/null && openssl pkey -in key.pem -pubout -out pub.pem 2>/dev/null || exit 1
expect 0 "sign the set" -- "$qf" sign $first --key key.pem
[ -s $first.sig ] && ok || bad "no $first.sig"
expect 0 "verify the signed set" -- "$qf" verify $first --integrity --pubkey pub.pem
has "signature ok" "signature OK"
# a last part from another checkpoint of the same shapes and files (other weights): the set identity,
# which binds metadata and tensor tables, is the same, and that part's own digests hold; the signature,
# over every part's digests, is what fails
"$qf" synth m2 --dim 64 --ff 128 --vocab 300 --layers 2 --seed 9 >/dev/null && mv m2 m.tmp && mv m m.orig && mv m.tmp m &&
    "$qf" quantize m -o alt.gguf --type q8_0 --split-max-tensors 6 --only-split 4 -q && rm -rf m && mv m.orig m || exit 1
cp -r jobs swapped && cp alt-00004-of-00004.gguf swapped/s-00004-of-00004.gguf
cmp -s swapped/s-00004-of-00004.gguf jobs/s-00004-of-00004.gguf && bad "the other checkpoint gave the same part" || ok
expect 0 "the swapped set checks part by part" -- "$qf" verify swapped/s-00001-of-00004.gguf --integrity
expect 1 "but not against the signature" -- "$qf" verify swapped/s-00001-of-00004.gguf --integrity --pubkey pub.pem
has "bad signature" "BAD signature"
# saved base logits name their base by every part's digests: the swapped set is another base
make_text text.txt 5
expect 0 "save base logits of the set" -- "$qf" verify $first --base $first -f text.txt -c 64 --chunks 2 --save-base b.qfb --base-topk 32 -q
expect 0 "the same set is that base" -- "$qf" verify $first --base-logits b.qfb --base $first -f text.txt -c 64 --chunks 2 -q
expect 2 "the swapped set is not" -- "$qf" verify $first --base-logits b.qfb --base swapped/s-00001-of-00004.gguf -f text.txt -c 64 --chunks 2 -q
has "another base" "b.qfb: computed from another base model"
# GPTQ's options change the bytes, so the file records them (qforge.gptq): parts of runs with another
# damping belong to another set and are refused, not mixed
"$qf" calibrate m -f text.txt -o imx.gguf --hessian h.gguf -c 64 --chunks 2 -q || exit 1
mkdir gptq
for d in 0.01 0.1; do
    expect 0 "gptq damp $d" -- "$qf" quantize m -o gptq/d$d.gguf --type q4_0 --hessian h.gguf --gptq-damp $d --split-max-tensors 6 --only-split 2 -q
done
"$qf" quantize m -o gptq/s.gguf --type q4_0 --hessian h.gguf --split-max-tensors 6 -q || exit 1
cmp -s gptq/d0.01-00002-of-00004.gguf gptq/s-00002-of-00004.gguf && ok || bad "gptq --only-split 2 differs from the whole run"
cp gptq/d0.1-00002-of-00004.gguf gptq/s-00002-of-00004.gguf
expect 2 "a part of another damping" -- "$qf" verify gptq/s-00001-of-00004.gguf --integrity
has "another set" "gptq/s-00002-of-00004.gguf: part of another set: qforge.split.set_sha256 differs"
expect 1 "sign refuses a changed set" -- "$qf" sign changed/s-00001-of-00004.gguf --key key.pem
has "refusing" "refusing to sign"
[ ! -e changed/s-00001-of-00004.gguf.sig ] && ok || bad "a signature was written for a changed set"
cp jobs/s-00001-of-00004.gguf.sig changed/
expect 1 "signature of a changed set" -- "$qf" verify changed/s-00001-of-00004.gguf --integrity --pubkey pub.pem
has "part named" "changed/s-00003-of-00004.gguf: CHANGED tensor $name"

cli_test_finish split_integrity
