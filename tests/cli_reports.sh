#!/usr/bin/env bash
# The machine-readable reports: whenever JSON goes to stdout nothing else does; every JSON object names
# its schema, the qforge version and its inputs' digests (checked against sha256sum and against the
# qforge.source_sha256 a conversion writes); inspect --json has the same keys for GGUF and safetensors
# and keeps GGUF value types (checked against an independent GGUF reader, tests/lib/gguf_meta.py);
# --dry-run --json lists what the real run then writes; verify prints the mean KLD with llama-perplexity's
# +/-; JUnit has one testcase per metric with or without thresholds. Mixture-of-experts models add the
# routing agreement per MoE layer to all three reports (the same figures in each; a model against itself
# exactly 1), --min-route-agree fails naming the layers below it, a base-logits file carries the base's
# routes (the same figures as the live run), one from a dense base says routing is not available, and a
# dense model's reports have no routing at all.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
py() { python3 - "$@" && ok || bad "$PY_WHAT"; }

"$qf" synth m --dim 64 --ff 128 --vocab 300 >/dev/null || exit 1
make_text text.txt 3
"$qf" convert m -o f32.gguf --type f32 -q && "$qf" quantize f32.gguf -o q8.gguf --type q8_0 -q || exit 1

# ---- verify --json -: stdout is exactly one JSON object; the text report goes to stderr ----------------
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --json - >v.json 2>v.err
rc=$?
[ $rc -eq 0 ] && ok || bad "verify --json - exit $rc: $(cat v.err)"
grep -q "Mean KLD" v.err && ok || bad "text report not on stderr: $(cat v.err)"
PY_WHAT="verify --json - stdout" py v.json text.txt q8.gguf f32.gguf <<'PY'
import hashlib, json, sys
d = json.load(open(sys.argv[1]))          # fails on any text before or after the object
sha = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
assert d["schema"] == "qforge.verify/1" and d["qforge_version"], d.get("schema")
i = d["inputs"]
assert i["text"]["sha256"] == sha(sys.argv[2]), i["text"]
assert i["model"]["sha256"] == sha(sys.argv[3]) and i["base"]["sha256"] == sha(sys.argv[4]), i
assert len(i["model"]["source_sha256"]) == 64 and i["model"]["source_sha256"] != i["base"]["source_sha256"]
assert d["kld_mean"] > 0 and 0 < d["kld_mean_pm"] < d["kld_mean"], (d["kld_mean"], d["kld_mean_pm"])
assert "routing" not in d, "a dense model has no routing section"
PY
! grep -q "route agree" v.err && ok || bad "dense text report with routing: $(grep route v.err)"
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --min-route-agree 0.5 >/dev/null 2>err.txt
[ $? -eq 2 ] && grep -q "min-route-agree.*dense model" err.txt && ok || bad "dense --min-route-agree: $(cat err.txt)"
# the text report prints the mean KLD with its +/- as llama-perplexity does
grep -Eq '^Mean KLD    = [0-9.]+ \+/- [0-9.]*[1-9][0-9.]*$' v.err && ok || bad "no 'Mean KLD = X +/- Y': $(grep KLD v.err)"

# ---- JUnit: one testcase per metric, with or without thresholds ------------------------------------------
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --junit none.xml -q >/dev/null 2>&1 || bad "verify --junit"
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --max-kld 0 --junit gate.xml -q >/dev/null 2>&1
[ $? -eq 1 ] && ok || bad "verify --max-kld 0 should exit 1"
# --junit - is stdout, as --json - is: the XML alone there, no file named '-'; both at once is a usage error
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --junit - >stdout.xml 2>/dev/null || bad "verify --junit -"
[ ! -e ./- ] && head -c 5 stdout.xml | grep -q '^<?xml' && [ "$(sed 's/ time="[^"]*"//' stdout.xml)" = "$(sed 's/ time="[^"]*"//' none.xml)" ] && ok ||
    bad "--junit - did not put the same XML on stdout: $(head -c 200 stdout.xml)"
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --junit - --json - >/dev/null 2>err.txt
[ $? -eq 2 ] && grep -q "both write to stdout" err.txt && ok || bad "--junit - --json -: $(cat err.txt)"
PY_WHAT="JUnit testcases" py none.xml gate.xml <<'PY'
import sys, xml.etree.ElementTree as ET
want = ["ppl_model", "ppl_base", "ppl_ratio", "ppl_increase_pct", "kld_mean", "kld_median", "kld_p99", "kld_max",
        "same_top1_pct", "rms_dp_pct"]
for path, failing in ((sys.argv[1], []), (sys.argv[2], ["kld_mean"])):
    s = ET.parse(path).getroot().find("testsuite")
    cases = s.findall("testcase")
    assert [c.get("name") for c in cases] == want, [c.get("name") for c in cases]
    assert s.get("tests") == str(len(want)) and s.get("failures") == str(len(failing)), (path, s.attrib)
    assert [c.get("name") for c in cases if c.find("failure") is not None] == failing, path
    assert all(c.find("system-out") is not None and "=" in c.find("system-out").text for c in cases)
PY

# ---- mixture of experts: routing agreement per MoE layer in text, JSON and JUnit -------------------------
"$qf" synth ds --arch deepseek-v3 --dim 128 --ff 256 --vocab 300 --layers 4 --experts 8 --experts-used 2 >/dev/null &&
    "$qf" convert ds -o ds.gguf --type bf16 -q && "$qf" quantize ds -o ds-q2.gguf --type q2_k -q || exit 1
vmoe() { "$qf" verify "$@" -f text.txt -c 64 --chunks 4 --progress=none; }
# the quantized model against its checkpoint; then the GGUF base against itself, gated at exactly 1
vmoe ds-q2.gguf --base ds --json q2.json --junit q2.xml --save-base ds.qfbl --base-topk 64 >q2.txt 2>q2.err && ok ||
    bad "verify MoE: $(cat q2.err)"
vmoe ds.gguf --base ds.gguf --min-route-agree 1 --json self.json --junit self.xml >self.txt 2>self.err && ok ||
    bad "MoE model against itself fails --min-route-agree 1: $(cat self.txt self.err)"
# gated at 1 the quantized model fails (exit 1), naming its worst layer; above 1 is a usage error
vmoe ds-q2.gguf --base ds --min-route-agree 1 --json g.json --junit g.xml >g.txt 2>g.err
[ $? -eq 1 ] && ok || bad "--min-route-agree 1 on q2_k should exit 1: $(cat g.err)"
vmoe ds-q2.gguf --base ds --min-route-agree 1.01 >/dev/null 2>err.txt
[ $? -eq 2 ] && grep -q "min-route-agree" err.txt && ok || bad "--min-route-agree 1.01: $(cat err.txt)"
# the saved base logits carry the base's routes; a dense base's file has none: said in every report, never
# a number, and not gateable
vmoe ds-q2.gguf --base-logits ds.qfbl --json file.json --junit file.xml >file.txt 2>file.err && ok ||
    bad "MoE --base-logits: $(cat file.err)"
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --save-base dense.qfbl --base-topk 64 -q >/dev/null 2>&1 ||
    bad "--save-base of a dense base"
vmoe ds-q2.gguf --base-logits dense.qfbl --json bl.json --junit bl.xml >bl.txt 2>bl.err && ok || bad "dense base file: $(cat bl.err)"
vmoe ds-q2.gguf --base-logits dense.qfbl --min-route-agree 0.5 >/dev/null 2>err.txt
[ $? -eq 2 ] && grep -q "no mixture-of-experts layers" err.txt && ok || bad "--min-route-agree, dense base file: $(cat err.txt)"
PY_WHAT="MoE routing reports" py q2 self g bl file <<'PY'
import json, re, sys, xml.etree.ElementTree as ET
def load(stem):
    d = json.load(open(stem + ".json"))
    cases = {c.get("name"): c for c in ET.parse(stem + ".xml").getroot().find("testsuite").findall("testcase")}
    return d, cases, open(stem + ".txt").read(), open(stem + ".err").read() if stem in ("g",) else ""
q2, self_, g, bl, file = (load(s) for s in sys.argv[1:6])
for d, cases, text, _ in (q2, self_, g, file):
    rt = d["schema"] == "qforge.verify/1" and d["routing"]
    assert rt["available"] is True and rt["experts"] == 8 and rt["experts_used"] == 2, rt
    layers = rt["layers"]
    # deepseek-v3's leading dense layer routes nothing: MoE layers 1..3
    assert [e["layer"] for e in layers] == [1, 2, 3], layers
    assert abs(rt["agree_mean"] - sum(e["agree"] for e in layers) / 3) < 1e-12
    worst = min(layers, key=lambda e: e["agree"])
    assert rt["agree_min"] == worst["agree"] and rt["agree_min_layer"] == worst["layer"], rt
    # the text table and the JUnit testcases give the same figures, layer by layer
    rows = {int(m[1]): (float(m[2]), float(m[3])) for m in re.finditer(r"^ +(\d+)  ([0-9.]+) +([0-9.]+)%", text, re.M)}
    assert set(rows) == {1, 2, 3}, text
    for e in layers:
        assert abs(rows[e["layer"]][0] - e["agree"]) < 5e-7 and abs(rows[e["layer"]][1] - 100 * e["same"]) < 5e-4, (rows, e)
        for key, name in (("agree", "route_agree.blk.%d"), ("same", "route_same.blk.%d")):
            out = cases[name % e["layer"]].find("system-out").text
            assert abs(float(out.split("= ")[1].split()[0]) - e[key]) < 1e-5 * max(1, e[key]), (out, e)
    for name in ("route_agree_min", "route_agree_mean", "route_same_mean"):
        assert name in cases, name
# a model against itself: exactly 1 everywhere, and the gate at 1 passes
rt = self_[0]["routing"]
assert all(e["agree"] == 1 and e["same"] == 1 and e["pass"] is True for e in rt["layers"]), rt
assert rt["agree_min"] == rt["agree_mean"] == rt["same_mean"] == 1 and self_[0]["pass"] is True
# quantized to q2_k: below 1 somewhere; the same figures without and with the gate
assert q2[0]["routing"]["agree_min"] < 1 and q2[0]["routing"]["layers"] == [
    {k: v for k, v in e.items() if k != "pass"} for e in g[0]["routing"]["layers"]]
# the failed gate names its worst layer and every layer below, in JSON, JUnit and the error line
d, cases, text, err = g
check = next(c for c in d["checks"] if c["name"] == "min_route_agree")
below = [e["layer"] for e in d["routing"]["layers"] if e["agree"] < 1]
assert check["pass"] is False and d["pass"] is False and check["limit"] == 1, check
assert check["layer"] == d["routing"]["agree_min_layer"] and check["layers_failed"] == below, (check, below)
assert [e["layer"] for e in d["routing"]["layers"] if e["pass"] is False] == below
failing = sorted(n for n, c in cases.items() if c.find("failure") is not None)
assert failing == sorted(["route_agree_min"] + ["route_agree.blk.%d" % l for l in below]), failing
assert "in MoE layer %d" % check["layer"] in err and "verify failed" in err, err
# from the saved base logits: the live run's figures exactly
assert file[0]["routing"] == q2[0]["routing"], (file[0]["routing"], q2[0]["routing"])
# from a dense base's file: not available, in all three reports
d, cases, text, _ = bl
assert d["routing"] == {"available": False, "reason": d["routing"]["reason"]} and "no mixture" in d["routing"]["reason"], d["routing"]
assert cases["route_agree_min"].find("skipped") is not None and not any(n.startswith("route_agree.") for n in cases)
assert "route agree = not available: " in text, text
PY

# ---- perplexity --json: schema and inputs; nothing else on stdout ----------------------------------------
"$qf" perplexity f32.gguf -f text.txt -c 64 --chunks 3 --json >p.json 2>/dev/null || bad "perplexity --json"
PY_WHAT="perplexity --json" py p.json text.txt f32.gguf <<'PY'
import hashlib, json, sys
d = json.load(open(sys.argv[1]))
sha = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
assert d["schema"] == "qforge.perplexity/1" and d["qforge_version"]
assert d["inputs"]["text"]["sha256"] == sha(sys.argv[2]) and d["inputs"]["model"]["sha256"] == sha(sys.argv[3])
assert d["ppl"] > 1
PY
# layer-major runs take the files' digests layer by layer as they read them: the same digests, the
# same figures (an HF directory has no file digest, only its source identity)
"$qf" perplexity f32.gguf -f text.txt -c 64 --chunks 3 --json --layer-major >pl.json 2>/dev/null || bad "perplexity --json --layer-major"
"$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 4 --json vl.json --layer-major -q >/dev/null 2>&1 ||
    bad "verify --json --layer-major"
"$qf" perplexity m -f text.txt -c 64 --chunks 3 --json --layer-major >ph.json 2>/dev/null || bad "perplexity of HF --json"
PY_WHAT="layer-major reports" py pl.json p.json vl.json v.json ph.json <<'PY'
import json, sys
pl, p, vl, v, ph = (json.load(open(f)) for f in sys.argv[1:6])
assert pl["inputs"] == p["inputs"] and pl["ppl"] == p["ppl"], (pl["inputs"], p["inputs"])
assert vl["inputs"] == v["inputs"] and vl["kld_mean"] == v["kld_mean"], (vl["inputs"], v["inputs"])
assert "sha256" not in ph["inputs"]["model"] and len(ph["inputs"]["model"]["source_sha256"]) == 64, ph["inputs"]
PY

# ---- verify --integrity --json ---------------------------------------------------------------------------
"$qf" verify q8.gguf --integrity --json >i.json 2>/dev/null || bad "integrity --json"
PY_WHAT="integrity --json" py i.json q8.gguf <<'PY'
import hashlib, json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "qforge.integrity/1" and d["ok"] is True
assert d["inputs"]["file"]["sha256"] == hashlib.sha256(open(sys.argv[2], 'rb').read()).hexdigest()
PY

# ---- inspect --json: one set of keys for both formats, GGUF value types kept -----------------------------
"$qf" inspect m --json >st.json 2>/dev/null && "$qf" inspect f32.gguf --json >gg.json 2>/dev/null || bad "inspect --json"
$meta f32.gguf >f32.meta.json
PY_WHAT="inspect --json keys and types" py st.json gg.json f32.meta.json <<'PY'
import json, struct, sys
st, gg, ref = (json.load(open(p)) for p in sys.argv[1:4])
for d, fmt in ((st, "safetensors"), (gg, "gguf")):
    assert d["schema"] == "qforge.inspect/1" and d["format"] == fmt and d["qforge_version"], d.get("schema")
    assert len(d["inputs"]["file"]["source_sha256"]) == 64
common = {"name", "type", "shape", "ne", "elements", "bytes", "bpw"}
assert all(common <= set(t) for t in st["tensors"] + gg["tensors"])
assert set(st["totals"]) == set(gg["totals"]) == {"tensors", "parameters", "bytes", "bpw"}
emb_st = next(t for t in st["tensors"] if t["name"] == "model.embed_tokens.weight")
emb_gg = next(t for t in gg["tensors"] if t["name"] == "token_embd.weight")
assert emb_st["shape"] == emb_gg["shape"] and emb_st["ne"] == emb_gg["ne"] == emb_gg["shape"][::-1], (emb_st, emb_gg)
assert st["totals"]["parameters"] == gg["totals"]["parameters"]
# every GGUF value with its type, equal to what an independent reader sees
for k, v in ref["kv"].items():
    got = gg["metadata"][k]
    assert got["type"] == v["type"], (k, got, v)
    if v["type"] == "arr":
        assert got["array_of"] == v["array_of"] and got["length"] == len(v["value"]), k
    elif v["type"] == "f32":  # the same float32 bits
        assert struct.pack('<f', got["value"]) == struct.pack('<f', v["value"]), (k, got["value"], v["value"])
    else:
        assert got["value"] == v["value"], (k, got["value"], v["value"])
assert gg["metadata"]["general.file_type"] == {"type": "u32", "value": 0}
assert gg["metadata"]["llama.rope.freq_base"]["type"] == "f32"
assert gg["metadata"]["llama.attention.layer_norm_rms_epsilon"]["value"] == 1e-05  # shortest form of the f32
PY

# ---- --dry-run --json: the plan the real run follows ------------------------------------------------------
"$qf" quantize m --recipe q4_k_m --dry-run --json >plan.json 2>plan.err && ok || bad "dry-run --json: $(cat plan.err)"
"$qf" quantize m --recipe q4_k_m -o q4.gguf -q && $meta q4.gguf >q4.meta.json || bad "quantize q4_k_m"
"$qf" convert m --dry-run --json >cplan.json 2>/dev/null || bad "convert --dry-run --json"
PY_WHAT="plan JSON" py plan.json q4.meta.json cplan.json <<'PY'
import json, sys
plan, out, cplan = (json.load(open(p)) for p in sys.argv[1:4])
assert plan["schema"] == cplan["schema"] == "qforge.plan/1" and plan["qforge_version"]
assert plan["recipe"] == "q4_k_m" and cplan["recipe"] is None and cplan["weight_type"] == "f16"
assert plan["inputs"]["src"]["source_sha256"] == out["kv"]["qforge.source_sha256"]["value"]
ts = plan["tensors"]
assert all({"name", "sources", "map", "shape", "ne", "type", "bytes", "reason"} <= set(t) for t in ts)
assert all(len(t["sources"]) == 1 and t["map"] == "copy" for t in ts), "a dense model reads one source per tensor"
assert plan["totals"]["tensors"] == len(ts) and plan["totals"]["bytes"] == sum(t["bytes"] for t in ts)
names = {0: "f32", 1: "f16", 8: "q8_0", 12: "q4_K", 13: "q5_K", 14: "q6_K", 6: "q5_0"}
assert [t["name"] for t in ts] == [t["name"] for t in out["tensors"]]
for p, o in zip(ts, out["tensors"]):
    assert p["ne"] == o["ne"] and p["type"] == names.get(o["type"]), (p, o)
assert any("use_more_bits" in t["reason"] or "q4_k_m" in t["reason"] for t in ts)
PY
# the text table (no --json) still goes to stdout alone
"$qf" quantize m --recipe q4_k_m --dry-run >plan.txt 2>plan.err && grep -q "^total: " plan.txt && [ ! -s plan.err ] && ok ||
    bad "dry-run text: $(cat plan.err)"
"$qf" convert m -o x.gguf --json >/dev/null 2>err.txt; [ $? -eq 2 ] && grep -q "with --dry-run" err.txt && ok ||
    bad "--json without --dry-run: $(cat err.txt)"

# a run that stops on a non-finite value has no figures: it fails naming where the NaN appeared and
# writes no report (no zeros, no JUnit "pass")
python3 - "$root/tests/lib" f32.gguf nan.gguf <<'PYNAN' || bad "could not make nan.gguf"
import shutil, struct, sys
sys.path.insert(0, sys.argv[1])
from gguf_meta import read
g = read(sys.argv[2])
t = next(t for t in g["tensors"] if t["name"] == "blk.0.attn_k.weight")
shutil.copy(sys.argv[2], sys.argv[3])
with open(sys.argv[3], "r+b") as f:
    f.seek(g["data_offset"] + t["offset"])
    f.write(struct.pack("<I", 0x7FC00000))
PYNAN
expect 1 "verify a NaN model with reports" -- "$qf" verify nan.gguf --base f32.gguf -f text.txt -c 64 --chunks 2 --junit nan.xml --json nan.json
has "names where the NaN appeared" "layer 0 attn_k"
[ ! -e nan.xml ] && [ ! -e nan.json ] && ok || bad "a stopped verify wrote a report"
grep -q "PPL(model) = 0.0000" <<<"$out" && bad "a stopped verify printed zero figures" || ok
expect 1 "verify a NaN model, JUnit on stdout" -- "$qf" verify nan.gguf --base f32.gguf -f text.txt -c 64 --chunks 2 --junit -
# the default --base-topk (1024) is the whole vocabulary of a smaller one
expect 0 "--save-base with a 300-token vocabulary" -- "$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 2 --save-base small.qfb -q
expect 0 "verify from it" -- "$qf" verify q8.gguf --base-logits small.qfb -f text.txt -q
cli_test_finish cli_reports
