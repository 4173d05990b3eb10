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
expect 2 "tensors zero" -- "$qf" quantize m -o none/s.gguf --type q8_0 --split-max-tensors 0
for cmd in calibrate perplexity sign pack; do
    expect 2 "$cmd --split-max-size" -- "$qf" $cmd one.gguf --split-max-size 1M
    [ "$(wc -l <<<"$out")" -eq 1 ] && has "$cmd names the option" "split-max-size" || bad "$cmd: not one line: $out"
done
[ -z "$(ls -A none)" ] && ok || bad "a refused run wrote $(ls -A none)"

cli_test_finish gguf_split
