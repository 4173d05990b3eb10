#!/usr/bin/env bash
# Quantization quality report (issue 5): qforge's quantizers against llama.cpp's at equal recipe and size
# on ../shared/models/qf-llama-a, measured in one run. Prints Markdown tables (paste into the README)
# and writes the raw numbers as JSON.
#
#   bash bench/quant_quality.sh [QFORGE_BIN]            # default build/qforge
#
# Protocol
#   base        the HF directory itself (BF16); an F32 GGUF of it (qforge convert --type f32) feeds llama.cpp's tools
#   calibration QQ_CAL (default ../shared/text/tinyshakespeare.txt), QQ_CAL_BYTES bytes from byte QQ_CAL_SKIP;
#               qforge calibrate and llama-imatrix both read that same slice, ctx QQ_CTX, QQ_CAL_CHUNKS chunks
#   evaluation  ../shared/text/tinystories-valid-head.txt (in domain), QQ_EVAL_CHUNKS chunks of QQ_CTX, and
#               ../shared/text/wikitext-2-raw-test.txt (out of domain), QQ_WIKI_CHUNKS chunks (0 = skip)
#   per row     qforge verify MODEL --base HF_DIR (PPL, PPL ratio, KLD mean/median/p99, top-1), size and bpw
#               (qforge inspect --json); llama.cpp-loadable rows also: llama-perplexity PPL of the same file
#               (-nr -fa off -ctk f32 -ctv f32 -t QQ_THREADS), its KLD with llama.cpp as the judge
#               (llama-perplexity --kl-divergence against the F32 GGUF's logits) and ggml_quant_bench
#               --compare (RMSE ours/ggml)
#   MoE models  QQ_MODEL=../shared/models/qf-deepseek-a QQ_GPTQ=0 (GPTQ takes 2-D weights; experts are 3-D)
#
# Environment (defaults in brackets)
#   QQ_MODEL [../shared/models/qf-llama-a]   QF_REF_DIR [~/.cache/qforge-ref]   QQ_THREADS [nproc]
#   QQ_CTX [256]  QQ_CAL_CHUNKS [100]  QQ_EVAL_CHUNKS [40]  QQ_WIKI_CHUNKS [60]
#   QQ_CAL [tinyshakespeare.txt]  QQ_CAL_BYTES [300000]  QQ_CAL_SKIP [0]
#   QQ_RTN [1]      also the no-imatrix rows (qforge RTN, llama-quantize without --imatrix)
#   QQ_GPTQ [1]     the GPTQ rows (calibrate --hessian, quantize --imatrix --hessian)
#   QQ_AUTO [1]     the automatic mixes: qforge measure (QQ_MEASURE_CHUNKS [4] chunks of the calibration
#                   text), then quantize --target-size at each llama.cpp imatrix file's size (q4_k_m,
#                   q3_k_m, q2_k), and --recipe R --sensitivity (R's own size: rows "sized"); the
#                   measurement's time is compared with llama-imatrix's
#   QQ_JSON [quant_quality.json in the current directory]   QQ_MD [none: stdout only]
#   QQ_KEEP         a directory to keep every intermediate file in (default: a temp dir, removed)
# Calibration and evaluation text must not overlap: when QQ_CAL is an evaluation file, QQ_CAL_SKIP must
# start past the evaluated prefix (8 bytes per evaluated token, a safe bound), else the script refuses.
# Takes ~8-12 minutes on 2 cores with the defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
shared=${QQ_SHARED:-$here/../shared}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
model=${QQ_MODEL:-$shared/models/qf-llama-a}
threads=${QQ_THREADS:-$(nproc)}
ctx=${QQ_CTX:-256}
cal_chunks=${QQ_CAL_CHUNKS:-100}
eval_chunks=${QQ_EVAL_CHUNKS:-40}
wiki_chunks=${QQ_WIKI_CHUNKS:-60}
cal_src=${QQ_CAL:-$shared/text/tinyshakespeare.txt}
cal_bytes=${QQ_CAL_BYTES:-300000}
cal_skip=${QQ_CAL_SKIP:-0}
do_rtn=${QQ_RTN:-1}
do_gptq=${QQ_GPTQ:-1}
json_out=${QQ_JSON:-$PWD/quant_quality.json}
md_out=${QQ_MD:-}
ts_text=$shared/text/tinystories-valid-head.txt
wiki_text=$shared/text/wikitext-2-raw-test.txt

skip() { echo "SKIP: $*"; exit 0; }
[ -x "$qf" ] || { echo "error: qforge binary '$qf' not found (build first, or pass its path)" >&2; exit 2; }
[ -d "$shared" ] || skip "$shared is absent (the shared models and texts)"
[ -f "$model/config.json" ] || skip "$model is absent"
[ -f "$ts_text" ] || skip "$ts_text is absent"
[ -f "$cal_src" ] || skip "calibration text $cal_src is absent"
for b in bin/llama-quantize bin/llama-imatrix bin/llama-perplexity ggml_quant_bench; do
    [ -x "$ref/$b" ] || skip "llama.cpp reference $ref/$b is absent (bash ../shared/ref/setup_ref.sh)"
done
command -v python3 >/dev/null || skip "python3 is absent (assembles the report)"
if [ "$wiki_chunks" -gt 0 ] && [ ! -f "$wiki_text" ]; then
    echo "note: $wiki_text is absent: no out-of-domain evaluation" >&2; wiki_chunks=0
fi

if [ -n "${QQ_KEEP:-}" ]; then work=$QQ_KEEP; mkdir -p "$work"
else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
t0=$SECONDS
log() { printf '[%4ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
# run LOGNAME CMD...: output to $work/logs/LOGNAME.log; on failure show its tail and stop
mkdir -p "$work/logs" "$work/res"
run() {
    local name=$1; shift
    if ! "$@" > "$work/logs/$name.log" 2>&1; then
        echo "error: '$*' failed; last lines of its output:" >&2; tail -n 20 "$work/logs/$name.log" >&2; exit 1
    fi
}
timed() { # timed NAME CMD...: like run, records wall seconds in res/time.NAME
    local name=$1 s=$SECONDS; run "$@"; echo $((SECONDS - s)) > "$work/res/time.$name"
}

# ---- evaluation texts and the calibration slice (disjoint) ------------------------------------------------
evals=("tinystories:$ts_text:$eval_chunks")
if [ "$wiki_chunks" -gt 0 ]; then evals+=("wikitext2:$wiki_text:$wiki_chunks"); fi
cal=$work/calibration.txt
dd if="$cal_src" of="$cal" iflag=skip_bytes,count_bytes skip="$cal_skip" count="$cal_bytes" bs=64K status=none
for e in "${evals[@]}"; do
    IFS=: read -r ename epath echunks <<< "$e"
    if [ "$(realpath "$epath")" = "$(realpath "$cal_src")" ] && [ "$cal_skip" -lt $((8 * ctx * echunks)) ]; then
        echo "error: calibration slice of $cal_src overlaps the $ename evaluation prefix" \
             "(QQ_CAL_SKIP=$cal_skip < $((8 * ctx * echunks)))" >&2
        exit 2
    fi
done

# ---- base, importance matrices --------------------------------------------------------------------------
log "base: F32 GGUF for llama.cpp's tools"
run convert "$qf" convert "$model" -o "$work/base-f32.gguf" --type f32 -q -j "$threads"
hess_args=()
if [ "$do_gptq" = 1 ]; then hess_args=(--hessian "$work/ours.hessian.gguf"); fi
log "qforge calibrate ($cal_chunks x $ctx tokens)"
timed calibrate "$qf" calibrate "$model" --text "$cal" -c "$ctx" --chunks "$cal_chunks" \
    -o "$work/ours.imatrix.gguf" "${hess_args[@]}" -j "$threads" -q
log "llama-imatrix ($cal_chunks x $ctx tokens)"
# one sequence per batch: with several, this llama-imatrix drops tokens from its dense counts (seen on
# qf-deepseek-a: 1530 of 1536; tests/test_imatrix_interop.c)
timed llama_imatrix "$ref/bin/llama-imatrix" -m "$work/base-f32.gguf" -f "$cal" -c "$ctx" -b "$ctx" --chunks "$cal_chunks" \
    -o "$work/ref.imatrix.gguf" -t "$threads"

do_auto=${QQ_AUTO:-1}
if [ "$do_auto" = 1 ]; then
    log "qforge measure (${QQ_MEASURE_CHUNKS:-4} x $ctx tokens of the calibration text)"
    timed measure "$qf" measure "$model" --text "$cal" -c "$ctx" --chunks "${QQ_MEASURE_CHUNKS:-4}" \
        -i "$work/ours.imatrix.gguf" -o "$work/sens.json" -j "$threads" -q
fi

# ---- rows: id|recipe|quantizer|imatrix used|llama.cpp loads it (1/0) -------------------------------------
rows=()
for r in q4_k_m q3_k_m q2_k; do
    rows+=("$r.qforge-weighted|$r|qforge weighted|qforge|1")
    if [ "$do_gptq" = 1 ]; then rows+=("$r.qforge-gptq|$r|qforge GPTQ|qforge+H|1"); fi
    rows+=("$r.llamacpp-imatrix|$r|llama.cpp|llama.cpp|1")
    if [ "$do_rtn" = 1 ]; then
        rows+=("$r.qforge-rtn|$r|qforge RTN|none|1")
        rows+=("$r.llamacpp-rtn|$r|llama.cpp|none|1")
    fi
done
if [ "$do_auto" = 1 ]; then
    for r in q4_k_m q3_k_m q2_k; do rows+=("auto.$r|auto@$r|qforge auto|qforge|1"); done
    # the recipe's own size as the budget (--recipe R --sensitivity): what `-r q4_k_m` gives with a measurement
    for r in q4_k_m q3_k_m q2_k; do rows+=("sized.$r|$r|qforge sized|qforge|1"); done
fi
rows+=("int3-mix.qforge-weighted|int3-mix|qforge weighted|qforge|1")
rows+=("fp8.qforge-weighted|fp8|qforge weighted|qforge|0")
rows+=("fp8-int4.qforge-weighted|fp8-int4|qforge weighted|qforge|0")
rows+=("q8-int4.qforge-weighted|q8-int4|qforge weighted|qforge|1")
rows+=("q8_0.qforge-weighted|q8_0|qforge weighted|qforge|1")
rows+=("q8_0.llamacpp|q8_0|llama.cpp|llama.cpp|1")

declare -A ref_type=([q4_k_m]=Q4_K_M [q3_k_m]=Q3_K_M [q2_k]=Q2_K [q8_0]=Q8_0)
log "quantize ${#rows[@]} rows"
for row in "${rows[@]}"; do
    IFS='|' read -r id recipe who imat loads <<< "$row"
    out=$work/$id.gguf
    case "$who|$imat" in
    "qforge weighted|qforge") timed "q.$id" "$qf" quantize "$model" -o "$out" -r "$recipe" \
                                  --imatrix "$work/ours.imatrix.gguf" -j "$threads" -q ;;
    "qforge GPTQ|qforge+H")   timed "q.$id" "$qf" quantize "$model" -o "$out" -r "$recipe" \
                                  --imatrix "$work/ours.imatrix.gguf" --hessian "$work/ours.hessian.gguf" -j "$threads" -q ;;
    "qforge auto|qforge")     timed "q.$id" "$qf" quantize "$model" -o "$out" --sensitivity "$work/sens.json" \
                                  --target-size "$(stat -c %s "$work/${recipe#auto@}.llamacpp-imatrix.gguf")" \
                                  --imatrix "$work/ours.imatrix.gguf" -j "$threads" -q ;;
    "qforge sized|qforge")    timed "q.$id" "$qf" quantize "$model" -o "$out" -r "$recipe" --sensitivity "$work/sens.json" \
                                  --imatrix "$work/ours.imatrix.gguf" -j "$threads" -q ;;
    "qforge RTN|none")        timed "q.$id" "$qf" quantize "$model" -o "$out" -r "$recipe" -j "$threads" -q ;;
    "llama.cpp|llama.cpp")    timed "q.$id" "$ref/bin/llama-quantize" --imatrix "$work/ref.imatrix.gguf" \
                                  "$work/base-f32.gguf" "$out" "${ref_type[$recipe]}" "$threads" ;;
    "llama.cpp|none")         timed "q.$id" "$ref/bin/llama-quantize" "$work/base-f32.gguf" "$out" \
                                  "${ref_type[$recipe]}" "$threads" ;;
    *) echo "internal: no rule for $row" >&2; exit 2 ;;
    esac
    "$qf" inspect "$out" --json > "$work/res/$id.inspect.json"
    stat -c %s "$out" > "$work/res/$id.size"
done
"$qf" inspect "$model" --json > "$work/res/base.inspect.json"

# ---- measurements ---------------------------------------------------------------------------------------
lppl() { # lppl MODEL TEXT CHUNKS LOG -> PPL printed by llama-perplexity (exact settings); one retry
    local try p=
    for try in 1 2; do
        "$ref/bin/llama-perplexity" -m "$1" -f "$2" -c "$ctx" --chunks "$3" -nr -fa off -ctk f32 -ctv f32 \
            -t "$threads" > "$4" 2>&1 || { tail -n 20 "$4" >&2; exit 1; }
        p=$(LC_ALL=C sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$4")
        if [ -n "$p" ]; then echo "$p"; return 0; fi
        echo "note: no 'Final estimate' in $4 (try $try)" >&2
    done
    echo "error: llama-perplexity printed no PPL for $1; see $4" >&2; exit 1
}
# llama.cpp as the judge: llama-perplexity --kl-divergence of a file against the base's saved logits
lkld() { # lkld MODEL TEXT CHUNKS BASE_LOGITS LOG -> mean KLD
    "$ref/bin/llama-perplexity" -m "$1" -f "$2" -c "$ctx" --chunks "$3" -nr -fa off -ctk f32 -ctv f32 -t "$threads" \
        --kl-divergence-base "$4" --kl-divergence > "$5" 2>&1 || { tail -n 20 "$5" >&2; exit 1; }
    local k
    k=$(LC_ALL=C sed -n 's/^Mean  *KLD: *\([0-9.e+-]*\).*/\1/p' "$5")
    [ -n "$k" ] || { echo "error: llama-perplexity printed no mean KLD for $1; see $5" >&2; exit 1; }
    echo "$k"
}
for e in "${evals[@]}"; do
    IFS=: read -r ename epath echunks <<< "$e"
    log "llama-perplexity base-f32 on $ename (and its logits for --kl-divergence)"
    lppl "$work/base-f32.gguf" "$epath" "$echunks" "$work/logs/lppl.base.$ename.log" > "$work/res/base.lppl.$ename"
    "$ref/bin/llama-perplexity" -m "$work/base-f32.gguf" -f "$epath" -c "$ctx" --chunks "$echunks" -nr -fa off -ctk f32 \
        -ctv f32 -t "$threads" --kl-divergence-base "$work/base.$ename.kld" > "$work/logs/kldbase.$ename.log" 2>&1 ||
        { tail -n 20 "$work/logs/kldbase.$ename.log" >&2; exit 1; }
done
for row in "${rows[@]}"; do
    IFS='|' read -r id recipe who imat loads <<< "$row"
    for e in "${evals[@]}"; do
        IFS=: read -r ename epath echunks <<< "$e"
        log "verify $id on $ename"
        # exit 1 only means a threshold failed; none are given, so any non-zero status is an error
        timed "v.$id.$ename" "$qf" verify "$work/$id.gguf" --base "$model" --text "$epath" --ctx "$ctx" \
            --chunks "$echunks" -j "$threads" --json "$work/res/$id.verify.$ename.json"
        if [ "$loads" = 1 ]; then
            lppl "$work/$id.gguf" "$epath" "$echunks" "$work/logs/lppl.$id.$ename.log" > "$work/res/$id.lppl.$ename"
            lkld "$work/$id.gguf" "$epath" "$echunks" "$work/base.$ename.kld" "$work/logs/lkld.$id.$ename.log" \
                > "$work/res/$id.lkld.$ename"
        fi
    done
    if [ "$loads" = 1 ]; then
        # ggml quantizes the same F32 base with the same importance data this row used
        cimat=()
        case "$imat" in qforge*) cimat=(--imatrix "$work/ours.imatrix.gguf") ;;
                        llama.cpp) cimat=(--imatrix "$work/ref.imatrix.gguf") ;; esac
        "$ref/ggml_quant_bench" --compare "$work/$id.gguf" --base "$work/base-f32.gguf" "${cimat[@]}" \
            > "$work/logs/compare.$id.log" 2>&1 || { tail -n 20 "$work/logs/compare.$id.log" >&2; exit 1; }
        sed -n 's/^compare: tensors [0-9]* ratio \([0-9.infa]*\)$/\1/p' "$work/logs/compare.$id.log" \
            > "$work/res/$id.compare"
    fi
done
log "done measuring; assembling the report"

printf '%s\n' "${rows[@]}" > "$work/res/rows.txt"
printf '%s\n' "${evals[@]}" > "$work/res/evals.txt"
qf_version=$("$qf" --version 2>/dev/null | head -n1 || true)
python3 - "$work/res" "$json_out" "$md_out" "$model" "$cal_src" "$cal_skip" "$cal_bytes" "$cal_chunks" \
          "$ctx" "$threads" "$((SECONDS - t0))" "$qf_version" "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')" <<'PY'
import json, os, sys
res, json_out, md_out, model, cal_src, cal_skip, cal_bytes, cal_chunks, ctx, threads, secs, qfv, commit = sys.argv[1:]
rd = lambda *p: os.path.join(res, *p)
def num(path):
    try:
        s = open(path).read().strip()
        return float(s) if s else None
    except FileNotFoundError:
        return None
rows = [l.split('|') for l in open(rd('rows.txt')).read().split('\n') if l]
evals = [l.split(':') for l in open(rd('evals.txt')).read().split('\n') if l]
def types_of(insp):
    c = {}
    for t in insp['tensors']:
        if len(t['ne']) >= 2:
            c[t['type']] = c.get(t['type'], 0) + 1
    return c
base_insp = json.load(open(rd('base.inspect.json')))
out = {"model": model, "qforge": qfv, "commit": commit, "ctx": int(ctx), "threads": int(threads),
       "wall_seconds": int(secs),
       "calibration": {"file": cal_src, "skip_bytes": int(cal_skip), "bytes": int(cal_bytes),
                       "chunks": int(cal_chunks)},
       "evaluation": [{"name": n, "file": p, "chunks": int(c)} for n, p, c in evals],
       "timings_s": {}, "base": {"bytes": base_insp['totals']['bytes'],
                                 "bpw": 8 * base_insp['totals']['bytes'] / base_insp['totals']['parameters'],
                                 "llama_perplexity_ppl": {n: num(rd(f'base.lppl.{n}')) for n, _, _ in evals}},
       "rows": []}
for f in sorted(os.listdir(res)):
    if f.startswith('time.'):
        out["timings_s"][f[5:]] = num(rd(f))
for rid, recipe, who, imat, loads in rows:
    insp = json.load(open(rd(f'{rid}.inspect.json')))
    r = {"id": rid, "recipe": recipe, "quantizer": who, "imatrix": imat, "llamacpp_loads": loads == '1',
         "file_bytes": int(num(rd(f'{rid}.size'))), "tensor_bytes": insp['totals']['bytes'],
         "params": insp['totals']['parameters'], "bpw": insp['totals']['bpw'], "weight_types": types_of(insp),
         "rmse_ratio_vs_ggml": num(rd(f'{rid}.compare')), "eval": {}}
    for n, _, _ in evals:
        v = json.load(open(rd(f'{rid}.verify.{n}.json')))
        keep = ("ppl_model", "ppl_model_pm", "ppl_base", "ppl_ratio", "kld_mean", "kld_median", "kld_p99",
                "kld_max", "same_top1_pct", "rms_dp_pct", "scored_tokens")
        r["eval"][n] = {k: v[k] for k in keep}
        r["eval"][n]["llama_perplexity_ppl"] = num(rd(f'{rid}.lppl.{n}'))
        r["eval"][n]["llama_kld_mean"] = num(rd(f'{rid}.lkld.{n}'))
    out["rows"].append(r)
by = {r["id"]: r for r in out["rows"]}
# KLD ratios ours / llama.cpp at equal recipe (same imatrix setting: both imatrix, or both none)
ratios = []
for recipe in ("q4_k_m", "q3_k_m", "q2_k", "q8_0"):
    pairs = [(f"auto.{recipe}", f"{recipe}.llamacpp-imatrix"),
             (f"sized.{recipe}", f"{recipe}.llamacpp-imatrix"),
             (f"{recipe}.qforge-weighted", f"{recipe}.llamacpp-imatrix"),
             (f"{recipe}.qforge-gptq", f"{recipe}.llamacpp-imatrix"),
             (f"{recipe}.qforge-rtn", f"{recipe}.llamacpp-rtn"),
             (f"{recipe}.qforge-weighted", f"{recipe}.llamacpp")]
    for a, b in pairs:
        if a in by and b in by:
            e = {"recipe": recipe, "ours": a, "llamacpp": b, "file_bytes_ours": by[a]["file_bytes"],
                 "file_bytes_llamacpp": by[b]["file_bytes"]}
            for n, _, _ in evals:
                ea, eb = by[a]["eval"][n], by[b]["eval"][n]
                e[n] = {k: ea[k] / eb[k] if eb[k] else None for k in ("kld_mean", "kld_median", "kld_p99")}
                la, lb = ea.get("llama_kld_mean"), eb.get("llama_kld_mean")
                e[n]["llama_judge_kld_mean"] = la / lb if la is not None and lb else None
                e[n]["ppl_ratio_ours"], e[n]["ppl_ratio_llamacpp"] = ea["ppl_ratio"], eb["ppl_ratio"]
            ratios.append(e)
out["kld_ratios_ours_over_llamacpp"] = ratios
with open(json_out, 'w') as f:
    json.dump(out, f, indent=1)

f4 = lambda x, d=4: "–" if x is None else f"{x:.{d}f}"
L = []
ev0 = evals[0][0]
L.append(f"Model `{os.path.basename(model.rstrip('/'))}` (base: the BF16 HF directory, {base_insp['totals']['bytes']:,} bytes). "
         f"Calibration: `{os.path.basename(cal_src)}` bytes {int(cal_skip):,}..{int(cal_skip)+int(cal_bytes):,}, "
         f"{cal_chunks} x {ctx} tokens, the same slice for `qforge calibrate` and `llama-imatrix`. "
         "Evaluation: " + ", ".join(f"`{os.path.basename(p)}` first {c} x {ctx}" for n, p, c in evals) +
         f". qforge {qfv.split()[-1] if qfv else '?'} ({commit}); llama.cpp = node-llama-cpp 3.22.1 build (v0.5.0, ggml 0.25.1).")
L.append("")
for n, p, c in evals:
    L.append(f"**{os.path.basename(p)}** ({c} chunks x {ctx}, {out['rows'][0]['eval'][n]['scored_tokens']} scored tokens; "
             f"PPL(base) {out['rows'][0]['eval'][n]['ppl_base']:.4f} qforge, "
             f"{f4(out['base']['llama_perplexity_ppl'][n])} llama-perplexity on the F32 GGUF)")
    L.append("")
    L.append("| recipe | quantizer | imatrix | file bytes | bpw | PPL | PPL ratio | KLD mean | KLD median | KLD p99 | top-1 % | llama-perplexity PPL | RMSE ours/ggml |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in out["rows"]:
        e = r["eval"][n]
        lp = f4(e["llama_perplexity_ppl"]) if r["llamacpp_loads"] else "n/a (ext. types)"
        cr = f4(r["rmse_ratio_vs_ggml"]) if r["llamacpp_loads"] else "n/a"
        if r["quantizer"] == "llama.cpp":
            cr = f4(r["rmse_ratio_vs_ggml"]) + " (self)"
        L.append(f"| {r['recipe']} | {r['quantizer']} | {r['imatrix']} | {r['file_bytes']:,} | {r['bpw']:.3f} | "
                 f"{e['ppl_model']:.4f} | {e['ppl_ratio']:.5f} | {e['kld_mean']:.6f} | {e['kld_median']:.6f} | "
                 f"{e['kld_p99']:.5f} | {e['same_top1_pct']:.2f} | {lp} | {cr} |")
    L.append("")
L.append("**KLD ours / llama.cpp at equal recipe** (target: < 1, ideally <= 0.8)")
L.append("")
hdr = "| recipe | ours | llama.cpp | file size ours / llama.cpp | " + " | ".join(
    f"{n} KLD mean | {n} KLD p99 | {n} KLD mean, llama.cpp judging" for n, _, _ in evals) + " |"
L.append(hdr)
L.append("|---|---|---|---:|" + "---:|---:|---:|" * len(evals))
for e in ratios:
    cells = " | ".join(f"{f4(e[n]['kld_mean'], 3)} | {f4(e[n]['kld_p99'], 3)} | {f4(e[n].get('llama_judge_kld_mean'), 3)}"
                       for n, _, _ in evals)
    L.append(f"| {e['recipe']} | {by[e['ours']]['quantizer']} ({by[e['ours']]['imatrix']}) | "
             f"llama.cpp ({by[e['llamacpp']]['imatrix']}) | {e['file_bytes_ours']/e['file_bytes_llamacpp']:.5f} | {cells} |")
L.append("")
L.append("imatrix: `qforge` = `qforge calibrate`, `qforge+H` = same plus GPTQ Hessians (`--hessian`), `llama.cpp` = "
         "`llama-imatrix`, `none` = round-to-nearest. fp8 / fp8-int4 hold qforge extension types (`e4m3_b32`) "
         "that llama.cpp cannot load, so they have no llama-perplexity or ggml comparison. "
         "RMSE ours/ggml: `ggml_quant_bench --compare` (ggml quantizes the same F32 base with the same importance "
         "data; GPTQ minimises layer output error, not weight RMSE, so for it this ratio is only indicative). "
         "bpw = tensor bytes x 8 / parameters (file bytes add metadata: vocabulary, provenance). "
         "llama-perplexity: `-nr -fa off -ctk f32 -ctv f32`; on k-quant files it runs Q8_K-quantized activations, "
         "qforge F32 activations, so the two PPLs of one file differ slightly. 'llama.cpp judging': "
         "`llama-perplexity --kl-divergence` of each file against the F32 GGUF's saved logits.")
t = out["timings_s"]
if t.get("measure") and t.get("llama_imatrix"):
    L.append(f"Automatic mixes: `qforge calibrate` {t['calibrate']:.1f} s + `qforge measure` {t['measure']:.1f} s = "
             f"{(t['calibrate'] + t['measure']) / t['llama_imatrix']:.2f}x the {t['llama_imatrix']:.1f} s of `llama-imatrix` "
             "on the same text (solving is part of each quantize run).")
L.append(f"Wall time {int(secs)} s on {threads} threads.")
md = "\n".join(L) + "\n"
sys.stdout.write(md)
if md_out:
    open(md_out, 'w').write(md)
print(f"\nraw numbers: {json_out}", file=sys.stderr)
PY
