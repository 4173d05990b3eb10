#!/usr/bin/env bash
# qforge verify --integrity and qforge sign through the CLI: exit codes 0/1/2, messages naming the file
# and tensor, --json, signatures made and checked with keys from the openssl command line (as
# docs/integrity.md documents), and an independent Python implementation of the digest definition.
set -uo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch" || exit 1
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND, output in $out, checks the exit code
expect() {
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "$what: exit $rc, expected $want: $out"; fi
}
has() { if grep -qF -- "$2" <<<"$out"; then ok; else bad "$1: output lacks '$2': $out"; fi; }

if ! "$qf" verify --integrity --help 2>/dev/null | grep -q -- "--integrity"; then
    echo "FAIL: 'qforge verify --integrity' does not reach qf_cli_integrity (convert/cli_integrity.c)."
    echo "      Route it from qf_cli_verify: if any argv[i] is \"--integrity\", return qf_cli_integrity(argc, argv)."
    exit 1
fi

"$qf" synth m --dim 64 --ff 100 --vocab 300 >/dev/null && "$qf" convert m -o m.gguf --type q8_0 -q || exit 1

expect 0 "clean file" -- "$qf" verify m.gguf --integrity --threads 2
has "clean file" "m.gguf: OK (scheme 2: every byte covered; header + 21 tensors"

# one byte of the last tensor's data (output.weight, 20400 bytes + 16 padding at the end)
size=$(stat -c %s m.gguf)
cp m.gguf t.gguf
python3 - t.gguf $((size - 16 - 100)) <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read()); b[off] ^= 0x20; open(p, 'wb').write(b)
PY
expect 1 "changed tensor" -- "$qf" verify t.gguf --integrity
has "changed tensor" "t.gguf: CHANGED tensor output.weight"
has "changed tensor" "FAILED: header ok, 1 of 21 tensors changed"
json=$("$qf" verify t.gguf --integrity --json 2>/dev/null)
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["changed_tensors"]==["output.weight"] and d["header_ok"] and not d["ok"] else 1)' "$json"; then ok; else bad "json: $json"; fi

# scheme 2 covers every byte: the padding after the last tensor belongs to its digest, and the file's
# length to the header digest (scheme 1 left both uncovered)
cp m.gguf p.gguf
python3 - p.gguf $((size - 3)) <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read()); b[off] ^= 0xff; open(p, 'wb').write(b)
PY
expect 1 "flip in trailing padding" -- "$qf" verify p.gguf --integrity
has "flip in trailing padding" "p.gguf: CHANGED tensor output.weight"
cp m.gguf a.gguf && head -c 10485760 /dev/zero >> a.gguf
expect 1 "10 MB appended" -- "$qf" verify a.gguf --integrity
has "10 MB appended" "a.gguf: CHANGED header/metadata/tensor infos/padding/length"
has "10 MB appended" "FAILED: header/metadata changed, 0 of 21 tensors changed"
# a file of scheme 1 (written by qforge before scheme 2) verifies and says what it does not cover
expect 0 "scheme-1 file" -- "$qf" verify "$root/tests/data/integrity-scheme1.gguf" --integrity
has "scheme-1 file" "OK (scheme 1: padding and file length not covered"

# metadata: general.name's value
cp m.gguf h.gguf
python3 - h.gguf <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = b.find(b'general.architecture') + 20 + 4 + 8
b[i] ^= 0x01; open(p, 'wb').write(b)
PY
expect 1 "changed metadata" -- "$qf" verify h.gguf --integrity
has "changed metadata" "CHANGED header/metadata"

expect 2 "missing file" -- "$qf" verify nope.gguf --integrity
has "missing file" "nope.gguf"
printf 'GGUF\003\000' > junk.gguf
expect 2 "malformed file" -- "$qf" verify junk.gguf --integrity
has "malformed file" "junk.gguf"
ref="$root/../shared/models/reference-gguf/stories260K.llamacpp-f32.gguf"
if [ -f "$ref" ]; then
    expect 2 "GGUF without qforge digests" -- "$qf" verify "$ref" --integrity
    has "GGUF without qforge digests" "no qforge integrity digests"
else
    echo "SKIP: $ref is absent (no-digest case)"
fi
expect 2 "bad option" -- "$qf" verify m.gguf --integrity --frobnicate
expect 0 "help" -- "$qf" verify --integrity --help

# ---- signatures, keys made with the openssl command line ----
openssl genpkey -algorithm ed25519 -out key.pem 2>/dev/null && openssl pkey -in key.pem -pubout -out pub.pem 2>/dev/null
openssl genpkey -algorithm ed25519 -out key2.pem 2>/dev/null && openssl pkey -in key2.pem -pubout -out pub2.pem 2>/dev/null
expect 0 "sign" -- "$qf" sign m.gguf --key key.pem
[ -f m.gguf.sig ] && ok || bad "no m.gguf.sig"
expect 0 "verify signature" -- "$qf" verify m.gguf --integrity --pubkey pub.pem
has "verify signature" "signature OK"
fp=$(openssl pkey -pubin -in pub.pem -outform DER | sha256sum | cut -d' ' -f1)
if grep -q "\"public_key_sha256\": \"$fp\"" m.gguf.sig; then ok; else bad "fingerprint is not openssl's DER SHA-256 ($fp)"; fi
expect 1 "wrong key" -- "$qf" verify m.gguf --integrity --pubkey pub2.pem
has "wrong key" "signed by key"
sed 's/"signature": "A/"signature": "B/; t; s/"signature": "./"signature": "A/' m.gguf.sig > bad.sig
expect 1 "damaged signature" -- "$qf" verify m.gguf --integrity --pubkey pub.pem --sig bad.sig
has "damaged signature" "BAD signature"
expect 0 "sign -o" -- "$qf" sign m.gguf --key key2.pem -o other.sig
expect 0 "verify --sig" -- "$qf" verify m.gguf --integrity --pubkey pub2.pem --sig other.sig
expect 1 "sign a damaged file" -- "$qf" sign t.gguf --key key.pem
has "sign a damaged file" "refusing to sign"
[ ! -e t.gguf.sig ] && ok || bad "a signature was written for a damaged file"
expect 2 "sign without a key" -- "$qf" sign m.gguf
expect 2 "sign with a public key" -- "$qf" sign m.gguf --key pub.pem
has "sign with a public key" "pub.pem"
expect 2 "missing signature" -- "$qf" verify m.gguf --integrity --pubkey pub.pem --sig nosuch.sig
has "missing signature" "nosuch.sig"
expect 0 "sign help" -- "$qf" sign --help

# ---- an independent implementation of the digest definition (docs/integrity.md) ----
expect 0 "python reference" -- python3 - m.gguf <<'PY'
import hashlib, struct, sys
SKIP = {b"qforge.integrity." + k for k in (b"scheme", b"header_sha256", b"tensor_sha256", b"tensor_names", b"tensor_types")}
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
TYPES = {0: (1, 4), 1: (1, 2), 8: (32, 34), 30: (1, 2)}  # f32, f16, q8_0, bf16: (block, bytes)
b = open(sys.argv[1], "rb").read(); pos = 0
def take(fmt):
    global pos; v = struct.unpack_from(fmt, b, pos); pos += struct.calcsize(fmt); return v[0]
def string():
    global pos; n = take("<Q"); s = b[pos:pos + n]; pos += n; return s
def value(t):
    global pos
    if t == 8: return string()
    if t == 9:
        et = take("<I"); return [value(et) for _ in range(take("<Q"))]
    v = b[pos:pos + SIZES[t]]; pos += SIZES[t]; return v
take("<I"); take("<I"); nt = take("<Q"); nkv = take("<Q")
h = hashlib.sha256(b[:24]); kv = {}
for _ in range(nkv):
    start = pos; k = string(); v = value(take("<I")); kv[k] = v
    if k not in SKIP: h.update(b[start:pos])
info = pos; tensors = []
for _ in range(nt):
    name = string(); ne = [take("<Q") for _ in range(take("<I"))]; t = take("<I"); off = take("<Q")
    blk, size = TYPES[t]; n = 1
    for d in ne: n *= d
    tensors.append((name, off, n // blk * size))
h.update(b[info:pos])
align = struct.unpack("<I", kv[b"general.alignment"])[0] if b"general.alignment" in kv else 32
data = (pos + align - 1) // align * align
h.update(b[pos:data]); h.update(struct.pack("<Q", len(b)))  # padding to the data, the file's length
assert h.hexdigest() == kv[b"qforge.integrity.header_sha256"].decode(), "header digest"
assert kv[b"qforge.integrity.tensor_names"] == [t[0] for t in tensors], "tensor names"
for (name, off, n), want in zip(tensors, kv[b"qforge.integrity.tensor_sha256"]):
    padded = (n + align - 1) // align * align  # data and its padding
    assert hashlib.sha256(b[data + off:data + off + padded]).hexdigest() == want.decode(), name
print("python: header and", len(tensors), "tensor digests agree")
PY
has "python reference" "tensor digests agree"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
