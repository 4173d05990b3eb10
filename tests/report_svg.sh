#!/usr/bin/env bash
# qforge report: verify reports of a generated model quantized three ways (q8_0, q4_k_m, q3_k_m) and of
# a file another tool rewrote become one SVG that parses as XML, holds one marker per report in the
# series the usage text promises (qforge recipes labelled with their recipe, the rewritten file as
# llama.cpp's hollow square labelled with its general.file_type, a --curve joined by a polyline) and one
# map cell per weight tensor (counted by an independent GGUF reader), renders with rsvg-convert at its
# declared size, is byte-identical when made again, and survives names with markup and control bytes.
# Bad inputs (a missing report, JSON that is not a verify report, text that is not JSON, a report whose
# model is gone) are one line naming the file, exit 2, and leave no output (an existing one untouched).
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
if ! command -v rsvg-convert >/dev/null; then
    echo "SKIP: rsvg-convert is absent (Debian package librsvg2-bin; build.sh installs it): the SVG is not rendered"
    exit 77
fi
py() { python3 - "$@" && ok || bad "$PY_WHAT"; }

"$qf" synth m --layers 3 >/dev/null || exit 1
make_text text.txt 5
"$qf" convert m -o f32.gguf --type f32 -q || exit 1
for r in q8_0 q4_k_m q3_k_m; do "$qf" quantize f32.gguf -o "$r.gguf" --recipe "$r" -q || exit 1; done
# another tool's rewrite: one metadata byte changed (general.name), so qforge's header digest no longer
# matches, as after llama-quantize, which copies its input's qforge.* keys
python3 - q4_k_m.gguf other.gguf <<'PY' || exit 1
import sys
d = bytearray(open(sys.argv[1], "rb").read())
i = d.index(b"general.name") + len("general.name") + 4 + 8  # key, u32 type, u64 length
d[i] ^= 0x20
open(sys.argv[2], "wb").write(d)
PY
for f in q8_0 q4_k_m q3_k_m other; do
    "$qf" verify "$f.gguf" --base f32.gguf -f text.txt -c 64 --chunks 4 --json "$f.json" -q --progress=none >/dev/null ||
        { bad "verify $f"; exit 1; }
done

# ---- the picture ------------------------------------------------------------------------------------------
expect 0 "report" -- "$qf" report -o r.svg --map q4_k_m.gguf q8_0.json q4_k_m.json q3_k_m.json other.json --curve "a sweep" q8_0.json q3_k_m.json
PY_WHAT="report: XML, markers, labels, cells" py r.svg q4_k_m.gguf "$root/tests/lib" <<'PY'
import sys, xml.etree.ElementTree as ET
sys.path.insert(0, sys.argv[3])
from gguf_meta import read
S = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == S + "svg" and root.get("version") == "1.1", root.tag
pts = [e for e in root.iter() if e.get("class") == "pt"]
circles = [e for e in pts if e.tag == S + "circle"]
squares = [e for e in pts if e.tag == S + "rect"]
assert len(pts) == 6 and len(squares) == 1 and len(circles) == 5, (len(pts), len(squares))
texts = [t.text or "" for t in root.iter(S + "text")]
for want in ("q8_0", "q4_k_m", "q3_k_m", "Q4_K_M", "qforge recipes (3)", "llama.cpp (1)", "a sweep (2)", "blk.2", "token_embd"):
    assert any(want == t.strip() for t in texts), (want, texts)
assert len(list(root.iter(S + "polyline"))) == 1, "the curve"
# no external anything: no href, no <image>, <script>, <style> imports
assert not any(e.tag in (S + "image", S + "script", S + "foreignObject") for e in root.iter())
assert not any(k.endswith("href") for e in root.iter() for k in e.attrib), "a link"
weights = [t for t in read(sys.argv[2])["tensors"] if len(t["ne"]) >= 2]
cells = [e for e in root.iter() if e.get("class") == "cell"]
assert len(cells) == len(weights) and len(weights) > 10, (len(cells), len(weights))
names = sorted(c.find(S + "title").text.split(":")[0] for c in cells)
assert names == sorted(t["name"] for t in weights), names
# each cell says its tensor's type; in q4_k_m attn_v of a use_more_bits layer (of 3: blk.2) is q6_K
ty = {c.find(S + "title").text.split(": ")[0]: c.find(S + "title").text.split(": ")[1] for c in cells}
assert ty["blk.2.attn_v.weight"] == "q6_K" and ty["blk.0.attn_v.weight"] == "q4_K" and ty["output.weight"] == "q6_K", ty
assert any(t.startswith("q6_K") or t == "q6_K" for t in texts) and any(t == "q4_K" for t in texts), texts
PY
rsvg-convert r.svg -o r.png 2>rsvg.err && ok || bad "rsvg-convert: $(cat rsvg.err)"
PY_WHAT="rendered PNG at the SVG's size" py r.svg r.png <<'PY'
import struct, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
w, h = int(root.get("width")), int(root.get("height"))
png = open(sys.argv[2], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", png[:16]
pw, ph = struct.unpack(">II", png[16:24])
assert (pw, ph) == (w, h) and w >= 900 and h >= 600, (pw, ph, w, h)
assert len(png) > 5000, len(png)
PY
expect 0 "report again" -- "$qf" report -q -o r2.svg --map q4_k_m.gguf q8_0.json q4_k_m.json q3_k_m.json other.json --curve "a sweep" q8_0.json q3_k_m.json
cmp -s r.svg r2.svg && ok || bad "the same inputs gave different bytes"
# without --map, the first report's model is mapped
expect 0 "report, default map" -- "$qf" report -q -o r3.svg q8_0.json q4_k_m.json
grep -q 'quant types of q8_0.gguf' r3.svg && ! grep -q '>q4_K<' r3.svg && ok || bad "the default map is not q8_0.gguf's"

# ---- text from the user and from files is escaped ----------------------------------------------------------
expect 0 "report, names with markup" -- "$qf" report -q -o esc.svg --title $'<b>&"x\x01' --series $'a<&>"\x1b[31m' q8_0.json
PY_WHAT="escaped names" py esc.svg <<'PY'
import sys, xml.etree.ElementTree as ET
texts = [t.text or "" for t in ET.parse(sys.argv[1]).getroot().iter("{http://www.w3.org/2000/svg}text")]
assert '<b>&"x?' in texts, texts
assert 'a<&>"?[31m (1)' in texts, texts
PY

# ---- a report found with its model in another folder ---------------------------------------------------------
mkdir -p moved sub && cp q8_0.gguf moved/ && cp q8_0.json moved/
(cd sub && "$qf" report -q -o ../moved.svg ../moved/q8_0.json) && grep -q 'moved/q8_0.gguf' moved.svg && ok ||
    bad "the model beside its report"

# ---- bad input: one line naming the file, exit 2, no output ---------------------------------------------------
"$qf" inspect q8_0.gguf --json >inspect.json
one_line() { [ "$(wc -l <<<"$out")" -eq 1 ] && ok || bad "$1: not one line: $out"; }
expect 2 "a missing report" -- "$qf" report -o bad.svg q8_0.json nothere.json
has "names it" "nothere.json"; one_line "missing"
expect 2 "not a verify report" -- "$qf" report -o bad.svg inspect.json
has "names it" "inspect.json: not a qforge verify report"; one_line "inspect json"
expect 2 "not JSON" -- "$qf" report -o bad.svg text.txt
has "names it" "text.txt"; one_line "text"
python3 -c 'import json, sys; d = json.load(open("q8_0.json")); d["model"] = "gone.gguf"; json.dump(d, open("gone.json", "w"))'
expect 2 "a report whose model is gone" -- "$qf" report -o bad.svg gone.json
has "names it" "gone.gguf"; one_line "gone"
[ ! -e bad.svg ] && ok || bad "a failed report left bad.svg"
ls -a | grep -q 'qf-tmp' && bad "a temp file was left" || ok
cp r.svg keep.svg
expect 2 "a failure over an existing output" -- "$qf" report -o keep.svg nothere.json
cmp -s r.svg keep.svg && ok || bad "a failed report changed the existing file"
expect 2 "no output named" -- "$qf" report q8_0.json
expect 2 "no report" -- "$qf" report -o x.svg
expect 2 "the output is an input" -- "$qf" report -o q8_0.json q8_0.json
expect 2 "the output is the model" -- "$qf" report -o q8_0.gguf q8_0.json
cmp -s q8_0.gguf moved/q8_0.gguf && ok || bad "report wrote over its model"
cli_test_finish report_svg
