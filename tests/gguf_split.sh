#!/usr/bin/env bash
# Split GGUF output and input (llama.cpp's gguf-split layout, formats/gguf_split.h):
#   * --split-max-tensors / --split-max-size cut the model as llama-gguf-split does: NAME-0000K-of-0000N.gguf,
#     all metadata in the first part, split.no (u16) / split.count (u16) / split.tensors.count (i32) in
#     every part, whole tensors in model order, the tensor bytes those of the unsplit file;
#   * --only-split K writes part K byte for byte as the whole run; --dry-run lists the parts, writes nothing;
#   * bad split options: one line, exit 2, nothing written.
set -uo pipefail
. "$(dirname "$0")/lib/cli_test.sh"
cli_test_setup "$@"

"$qf" synth m --dim 64 --ff 128 --vocab 300 --layers 2 >/dev/null || exit 1
expect 0 "convert unsplit" -- "$qf" convert m -o one.gguf --type f16 -q
expect 0 "convert split by tensors" -- "$qf" convert m -o s.gguf --type f16 --split-max-tensors 5 -q
parts=$(ls s-*.gguf | tr '\n' ' ')
[ "$parts" = "s-00001-of-00005.gguf s-00002-of-00005.gguf s-00003-of-00005.gguf s-00004-of-00005.gguf s-00005-of-00005.gguf " ] &&
    ok || bad "part names: $parts"
[ ! -e s.gguf ] && ok || bad "a split run also wrote s.gguf"

# the layout, read by an independent reader: keys, their types, whole tensors, the unsplit file's bytes
check_layout() { # ONE PREFIX N MODE LIMIT
    python3 - "$root/tests/lib" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import gguf_meta
one, prefix, n, mode, limit = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
def pad(x): return (x + 31) // 32 * 32
u = gguf_meta.read(one)
ub = open(one, "rb").read()
ut = u["tensors"]
sizes = [(ut[i + 1]["offset"] if i + 1 < len(ut) else len(ub) - u["data_offset"]) - t["offset"] for i, t in enumerate(ut)]
# llama-gguf-split's cut (tools/gguf-split/gguf-split.cpp, should_split)
want, cur, used = [], [], 0
for i, t in enumerate(ut):
    cut = (used + pad(sizes[i]) > limit and cur) if mode == "size" else (i > 0 and i % limit == 0)
    if cut: want.append(cur); cur, used = [], 0
    cur.append(t["name"]); used += pad(sizes[i])
want.append(cur)
assert len(want) == n, f"{len(want)} parts expected, {n} written"
names = []
for k in range(n):
    path = f"{prefix}-{k + 1:05d}-of-{n:05d}.gguf"
    p = gguf_meta.read(path)
    kv = p["kv"]
    assert kv["split.no"] == {"type": "u16", "value": k}, (path, kv.get("split.no"))
    assert kv["split.count"] == {"type": "u16", "value": n}, (path, kv.get("split.count"))
    assert kv["split.tensors.count"] == {"type": "i32", "value": len(ut)}, (path, kv.get("split.tensors.count"))
    model_keys = [x for x in kv if not x.startswith(("split.", "qforge.integrity.", "qforge.split."))]
    if k == 0:
        assert all(x in kv and kv[x] == u["kv"][x] for x in u["kv"] if not x.startswith("qforge.integrity.")), path
    else:
        assert not model_keys, (path, model_keys)
    assert [t["name"] for t in p["tensors"]] == want[k], (path, [t["name"] for t in p["tensors"]], want[k])
    pb = open(path, "rb").read()
    for t in p["tensors"]:
        j = [x["name"] for x in ut].index(t["name"])
        a = ub[u["data_offset"] + ut[j]["offset"]:][:sizes[j]]
        b = pb[p["data_offset"] + t["offset"]:][:sizes[j]]
        assert a == b and t["type"] == ut[j]["type"] and t["ne"] == ut[j]["ne"], (path, t["name"])
    names += [t["name"] for t in p["tensors"]]
assert names == [t["name"] for t in ut]
EOF
}
check_layout one.gguf s 5 tensors 5 && ok || bad "split by tensors: layout"
"$qf" synth big --dim 128 --ff 384 --vocab 1000 --layers 2 >/dev/null || exit 1
expect 0 "convert big" -- "$qf" convert big -o big.gguf --type f32 -q
expect 0 "convert split by size" -- "$qf" convert big -o z.gguf --type f32 --split-max-size 1M -q
n=$(ls z-*.gguf | wc -l)
[ "$n" -gt 2 ] && check_layout big.gguf z "$n" size 1000000 && ok || bad "split by size: layout ($n parts)"

# a run that fails in its second part (file size limit) leaves no part and keeps what was there
mkdir fsz && echo keep >fsz/z-00001-of-00003.gguf
(ulimit -f 950; "$qf" convert big -o fsz/z.gguf --type f32 --split-max-size 1M -q) 2>/dev/null && bad "ran past the size limit"
[ "$(ls -A fsz)" = "z-00001-of-00003.gguf" ] && [ "$(cat fsz/z-00001-of-00003.gguf)" = keep ] && ok ||
    bad "a failed split run left $(ls -A fsz) or replaced the existing part"

# --only-split K: part K alone, byte-identical; the others are not written
mkdir alone
for k in 1 3 5; do
    expect 0 "only-split $k" -- "$qf" convert m -o alone/s.gguf --type f16 --split-max-tensors 5 --only-split $k -q
    f=$(printf 's-%05d-of-00005.gguf' $k)
    cmp -s "alone/$f" "$f" && ok || bad "--only-split $k: $f differs from the whole run's"
done
[ "$(ls alone | wc -l)" -eq 3 ] && ok || bad "--only-split wrote other parts: $(ls alone)"

# --dry-run lists the parts and writes nothing
mkdir dry
expect 0 "dry run" -- "$qf" convert m -o dry/s.gguf --type f16 --split-max-tensors 5 --dry-run
has "dry run lists the parts" "split: 5 parts"
has "dry run names the last part" "dry/s-00005-of-00005.gguf  1 tensors"
[ -z "$(ls -A dry)" ] && ok || bad "--dry-run wrote $(ls dry)"
out=$("$qf" convert m -o dry/s.gguf --type f16 --split-max-tensors 5 --dry-run --json)
python3 -c 'import json,sys; d=json.loads(sys.argv[1])["split"]["parts"]; sys.exit(not (len(d)==5 and d[4]["file"].endswith("s-00005-of-00005.gguf") and d[4]["tensors"]==1))' "$out" &&
    ok || bad "--dry-run --json split: $out"

# quantize writes splits too, from a checkpoint and from a GGUF
expect 0 "quantize split" -- "$qf" quantize m -o q.gguf --type q8_0 --split-max-tensors 7 -q
[ "$(ls q-*.gguf | tr '\n' ' ')" = "q-00001-of-00003.gguf q-00002-of-00003.gguf q-00003-of-00003.gguf " ] &&
    ok || bad "quantize parts: $(ls q-*)"

# bad split options: one line naming the problem, exit 2, nothing written
mkdir none
expect 2 "only-split out of range" -- "$qf" convert m -o none/s.gguf --type f16 --split-max-tensors 5 --only-split 6
has "out of range" "--only-split 6: none/s.gguf is cut into 5 parts"
expect 2 "only-split 0" -- "$qf" convert m -o none/s.gguf --type f16 --split-max-tensors 5 --only-split 0
has "only-split 0" "--only-split takes a whole number from 1 to 65535"
expect 2 "only-split without a split" -- "$qf" convert m -o none/s.gguf --type f16 --only-split 1
has "only-split alone" "--only-split names a part of a split output"
expect 2 "both limits" -- "$qf" convert m -o none/s.gguf --type f16 --split-max-tensors 5 --split-max-size 1M
has "both limits" "exclude each other"
expect 2 "size unit" -- "$qf" convert m -o none/s.gguf --type f16 --split-max-size 5K
has "size unit" "--split-max-size '5K'"
expect 2 "size past 64 bits" -- "$qf" convert m -o none/s.gguf --type f16 --split-max-size 99999999999G
has "size past 64 bits" "--split-max-size '99999999999G'"
expect 2 "tensors zero" -- "$qf" quantize m -o none/s.gguf --type q8_0 --split-max-tensors 0
for cmd in calibrate perplexity sign pack; do
    expect 2 "$cmd --split-max-size" -- "$qf" $cmd one.gguf --split-max-size 1M
    [ "$(wc -l <<<"$out")" -eq 1 ] && has "$cmd names the option" "split-max-size" || bad "$cmd: not one line: $out"
done
[ -z "$(ls -A none)" ] && ok || bad "a refused run wrote $(ls -A none)"

# ---- readers: a set opened by its first part is the model ----
make_text text.txt 3
first=s-00001-of-00005.gguf
ppl() { "$qf" perplexity "$1" -f text.txt -c 64 --chunks 4 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
a=$(ppl one.gguf); b=$(ppl $first)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "perplexity of the set '$b', of the unsplit file '$a'"
expect 0 "inspect the set" -- "$qf" inspect $first
has "inspect counts every part's tensors" "$first: GGUF v3, alignment 32"
has "inspect lists the parts" "s-00005-of-00005.gguf  1 tensors"
out=$("$qf" inspect $first --json)
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(not (len(d["tensors"])==21 and len(d["parts"])==5 and d["tensors"][20]["part"]==5))' "$out" &&
    ok || bad "inspect --json of the set: $out"
expect 0 "verify the set against the unsplit file" -- "$qf" verify $first --base one.gguf -f text.txt -c 64 --chunks 4 --max-kld 0
expect 0 "verify --integrity of the set" -- "$qf" verify $first --integrity
has "integrity counts the set" "header + 21 tensors"
# quantize and calibrate from the set: what they do from the unsplit file
expect 0 "quantize from the set" -- "$qf" quantize $first -o qs.gguf --type q8_0 -q
expect 0 "quantize from the file" -- "$qf" quantize one.gguf -o qo.gguf --type q8_0 -q
python3 - "$root/tests/lib" qs.gguf qo.gguf <<'EOF2' && ok || bad "quantize from the set wrote other tensors than from the file"
import sys; sys.path.insert(0, sys.argv[1]); import gguf_meta
a, b = gguf_meta.read(sys.argv[2]), gguf_meta.read(sys.argv[3])
assert [(t["name"], t["type"], t["ne"], t["offset"]) for t in a["tensors"]] == [(t["name"], t["type"], t["ne"], t["offset"]) for t in b["tensors"]]
assert open(sys.argv[2], "rb").read()[a["data_offset"]:] == open(sys.argv[3], "rb").read()[b["data_offset"]:]
EOF2
expect 0 "calibrate from the set" -- "$qf" calibrate $first -f text.txt -o i1.gguf -c 64 --chunks 2 -q
expect 0 "calibrate from the file" -- "$qf" calibrate one.gguf -f text.txt -o i2.gguf -c 64 --chunks 2 -q
cmp -s i1.gguf i2.gguf && ok || bad "calibrate from the set differs"
# the output may not replace a part of the input set
expect 2 "re-split over the input" -- "$qf" quantize $first -o s.gguf --type q8_0 --split-max-tensors 5
has "names the part" "the output is the input s-00001-of-00005.gguf"
expect 2 "write over a later part" -- "$qf" quantize $first -o s-00004-of-00005.gguf --type q8_0
has "names the later part" "the output is the input s-00004-of-00005.gguf"
# pack and unpack carry one part as the file it is (unpack checks that part's own digests)
for k in 1 2; do
    f=s-0000$k-of-00005.gguf
    expect 0 "pack part $k" -- "$qf" pack $f -o p$k.qfz -q
    expect 0 "unpack part $k" -- "$qf" unpack p$k.qfz -o u$k.gguf -q
    cmp -s u$k.gguf $f && ok || bad "unpack of part $k differs"
done

# ---- bad sets: one line naming the file, exit 2 ----
bad_set() { # DIR DESCRIPTION EXPECTED-TEXT
    local dir=$1 what=$2 text=$3 f=$1/s-00001-of-00005.gguf cmd
    for cmd in "inspect $f" "perplexity $f -f text.txt -c 64" "verify $f --integrity" \
               "calibrate $f -f text.txt -o $dir/i.gguf" "quantize $f -o $dir/q.gguf --type q8_0"; do
        expect 2 "$what: $cmd" -- "$qf" $cmd
        has "$what: $cmd" "$text"
        [ "$(wc -l <<<"$out")" -eq 1 ] && ok || bad "$what: $cmd: not one line: $out"
    done
    [ ! -e $dir/i.gguf ] && [ ! -e $dir/q.gguf ] && ok || bad "$what: output written"
}
mkset() { rm -rf "$1"; mkdir "$1"; cp s-0000?-of-00005.gguf "$1/"; }
mkset missing; rm missing/s-00004-of-00005.gguf
bad_set missing "missing part" "missing/s-00004-of-00005.gguf: part 4 of 5 is missing"
mkset order; mv order/s-00002-of-00005.gguf x; mv order/s-00003-of-00005.gguf order/s-00002-of-00005.gguf; mv x order/s-00003-of-00005.gguf
bad_set order "parts swapped" "order/s-00002-of-00005.gguf: split.no is 2, expected 1"
# a part of another set: another count, and the same count from another model
"$qf" convert m -o four.gguf --type f16 --split-max-tensors 6 -q || exit 1
mkset count; cp four-00002-of-00004.gguf count/s-00002-of-00005.gguf
bad_set count "another count" "count/s-00002-of-00005.gguf: part of another set: split.count 4"
"$qf" synth m2 --dim 64 --ff 128 --vocab 300 --layers 2 --seed 2 >/dev/null || exit 1
"$qf" convert m2 -o other.gguf --type f16 --split-max-tensors 5 -q || exit 1
mkset other; cp other-00003-of-00005.gguf other/s-00003-of-00005.gguf
bad_set other "another set" "other/s-00003-of-00005.gguf: part of another set: qforge.split.set_sha256 differs"
# a tensor in two parts: part 3's bytes with part 2's tensors (its split.no and identity kept)
mkset dup
python3 - "$root/tests/lib" dup <<'EOF2' || exit 1
import sys; sys.path.insert(0, sys.argv[1]); import gguf_meta
d = sys.argv[2]
b = bytearray(open(f"{d}/s-00002-of-00005.gguf", "rb").read())
m = gguf_meta.read(f"{d}/s-00002-of-00005.gguf")
key = b"split.no"; i = b.index(key) + len(key) + 4  # after the key and its u32 type: the u16 value
assert b[i:i + 2] == b"\x01\x00"; b[i:i + 2] = b"\x02\x00"
open(f"{d}/s-00003-of-00005.gguf", "wb").write(b)
EOF2
bad_set dup "duplicate tensor" "dup/s-00003-of-00005.gguf: tensor 'blk.0.attn_output.weight' is also in dup/s-00002-of-00005.gguf"
expect 2 "a later part given" -- "$qf" perplexity s-00002-of-00005.gguf -f text.txt
has "later part" "part 2 of a split set of 5: open the set by its first part"

cli_test_finish gguf_split
