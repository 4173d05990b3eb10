#!/usr/bin/env bash
# The CUDA backend's device check, one prepared script (README: "CUDA backend").
#
#   bash bench/cuda_check.sh pack      on any machine with nvcc (no GPU needed): build with the CUDA backend
#                                      (build-cuda/) and put what the device run needs into .cuda-check/
#                                      (ignored by git): the binaries and the shared libraries they load,
#                                      q4_K_M GGUFs of ../shared/models/qf-llama-a and qf-deepseek-a, a text
#   bash bench/cuda_check.sh [OUTDIR]  on the device (after pack, with .cuda-check carried along): every check,
#                                      figures as JSON in OUTDIR (default $OUT, else build-cuda/cuda-check)
#
# The device run, well inside 10 minutes on one H200 with 16 cores:
#   1. tests/test_cuda_types.cu (decoders vs the CPU's, host) and tests/test_cuda.c (every backend operation
#      and whole models, CPU backend vs CUDA backend on the same bytes);
#   2. perplexity --backend cpu vs --backend cuda on each model: relative difference <= 1e-4, and both
#      backends' tokens per second;
#   3. calibrate --backend cpu vs cuda on qf-deepseek-a (MLA, MoE): the same importance-matrix bytes;
#   4. bench/cuda_gemv.c: dequantizing GEMV of Q4_K, Q8_0, Q6_K and FP8 at 2048 x 7168 and 7168 x 16384
#      against a device-to-device copy measured in the same run.
# Files in OUTDIR: cuda_check.json (every figure and verdict), gemv.json, test_cuda.log, test_cuda_types.log,
# run.log. Exit 0 when every check passes, 1 when one fails, 2 when the run could not start.
#
# Binaries built on one machine may not load on another (other system libraries): the device run uses the
# packed ones when they start there, and builds from source (cmake + nvcc there) when they do not.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pack=$root/.cuda-check
py=python3

if [ "${1:-}" = pack ]; then
    set -e
    shared=${QF_SHARED:-../shared}
    cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DQF_CUDA=ON >/dev/null
    cmake --build build-cuda -j"$(nproc)" --target qforge_cli test_cuda test_cuda_types cuda_gemv >/dev/null
    rm -rf "$pack" && mkdir -p "$pack/stage/bin" "$pack/stage/lib" "$pack/stage/models"
    cp build-cuda/qforge build-cuda/tests/test_cuda build-cuda/tests/test_cuda_types build-cuda/bench/cuda_gemv "$pack/stage/bin/"
    # every library the binaries load but the C runtime's own (those come with any Linux)
    for lib in $(ldd build-cuda/qforge build-cuda/tests/test_cuda | awk '/=> \//{print $3}' | sort -u); do
        case ${lib##*/} in libc.so* | libm.so* | libpthread* | libdl.so* | librt.so* | ld-linux* | libstdc++* | libgcc_s*) ;;
        *) cp -L "$lib" "$pack/stage/lib/" ;;
        esac
    done
    for m in qf-llama-a qf-deepseek-a; do
        build-cuda/qforge quantize "$shared/models/$m" --recipe q4_k_m -o "$pack/stage/models/$m-q4_k_m.gguf" -q
    done
    head -c 400000 "$shared/text/tinystories-valid-head.txt" >"$pack/stage/text.txt"
    tar -C "$pack/stage" -czf "$pack/check.tgz" .
    rm -rf "$pack/stage"
    echo "cuda_check: packed $(du -h "$pack/check.tgz" | cut -f1) into .cuda-check/check.tgz; on the device run:"
    echo "  bash bench/cuda_check.sh        (carry: .cuda-check)"
    exit 0
fi

out=${1:-${OUT:-$root/build-cuda/cuda-check}}
mkdir -p "$out"
log=$out/run.log
: >"$log"
say() { echo "cuda_check: $*" | tee -a "$log"; }
t_start=$(date +%s)

# ---- tools: the packed binaries if they start here, else a build from source ----------------------------
work=$(mktemp -d /tmp/qf-cuda-check.XXXXXX)
bin=
if [ -f "$pack/check.tgz" ]; then
    tar -C "$work" -xzf "$pack/check.tgz"
    if LD_LIBRARY_PATH=$work/lib "$work/bin/qforge" --version >>"$log" 2>&1; then
        bin=$work/bin
        export LD_LIBRARY_PATH=$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        say "using the packed binaries"
    else
        say "the packed binaries do not start here (see run.log); building from source"
    fi
fi
if [ -z "$bin" ]; then
    if ! { cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DQF_CUDA=ON &&
        cmake --build build-cuda -j"$(nproc)" --target qforge_cli test_cuda test_cuda_types cuda_gemv; } >>"$log" 2>&1; then
        say "build failed (run.log)"
        exit 2
    fi
    mkdir -p "$work/bin"
    cp build-cuda/qforge build-cuda/tests/test_cuda build-cuda/tests/test_cuda_types build-cuda/bench/cuda_gemv "$work/bin/"
    bin=$work/bin
fi
models=$work/models
text=$work/text.txt
if [ ! -d "$models" ]; then # built from source: the models from ../shared (QF_SHARED), quantized here
    shared=${QF_SHARED:-../shared}
    mkdir -p "$models"
    for m in qf-llama-a qf-deepseek-a; do
        [ -d "$shared/models/$m" ] && "$bin/qforge" quantize "$shared/models/$m" --recipe q4_k_m -o "$models/$m-q4_k_m.gguf" -q
    done
    [ -f "$shared/text/tinystories-valid-head.txt" ] && head -c 400000 "$shared/text/tinystories-valid-head.txt" >"$text"
fi
device=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "device: ${device:-unknown (nvidia-smi not available)}"

# ---- 1. kernel tests --------------------------------------------------------------------------------------
"$bin/test_cuda_types" >"$out/test_cuda_types.log" 2>&1
rc_types=$?
"$bin/test_cuda" "$root" "$work/scratch" >"$out/test_cuda.log" 2>&1
rc_cuda=$?
say "test_cuda_types: exit $rc_types; test_cuda: exit $rc_cuda ($(tail -1 "$out/test_cuda.log"))"

# ---- 2. perplexity on both backends ------------------------------------------------------------------------
ppl_rows=()
for g in "$models"/*.gguf; do
    [ -f "$g" ] && [ -f "$text" ] || continue
    name=$(basename "$g" .gguf)
    for b in cpu cuda; do
        "$bin/qforge" perplexity "$g" -f "$text" -c 512 --chunks 32 --backend "$b" --json >"$work/ppl-$name-$b.json" 2>>"$log"
        echo "ppl $name $b exit $?" >>"$log"
    done
    ppl_rows+=("$name")
done

# ---- 3. calibrate on both backends ---------------------------------------------------------------------------
calib=null
ds=$(ls "$models"/qf-deepseek-a*.gguf 2>/dev/null | head -1)
if [ -n "$ds" ] && [ -f "$text" ]; then
    for b in cpu cuda; do
        "$bin/qforge" calibrate "$ds" -f "$text" -c 256 --chunks 8 --backend "$b" -o "$work/im-$b.gguf" -q 2>>"$log"
    done
    if cmp -s "$work/im-cpu.gguf" "$work/im-cuda.gguf"; then calib=true; else calib=false; fi
fi

# ---- 4. GEMV against the copy bandwidth ---------------------------------------------------------------------
"$bin/cuda_gemv" "$out/gemv.json" 2>&1 | tee -a "$log"
rc_gemv=${PIPESTATUS[0]}

# ---- summary ----------------------------------------------------------------------------------------------------
$py - "$out" "$work" "$rc_types" "$rc_cuda" "$rc_gemv" "$calib" "$device" "$(($(date +%s) - t_start))" "${ppl_rows[@]}" <<'PY'
import json, os, sys
out, work, rc_types, rc_cuda, rc_gemv, calib, device, seconds = sys.argv[1:9]
names = sys.argv[9:]
def load(p):
    try:
        with open(p) as f: return json.load(f)
    except Exception: return None
ppl = []
for n in names:
    c, g = load(f"{work}/ppl-{n}-cpu.json"), load(f"{work}/ppl-{n}-cuda.json")
    row = {"model": n, "ok": False}
    if c and g:
        rel = abs(g["ppl"] - c["ppl"]) / c["ppl"]
        row.update(ppl_cpu=c["ppl"], ppl_cuda=g["ppl"], relative_difference=rel, ok=rel <= 1e-4,
                   tokens_per_second_cpu=c["tokens_per_second"], tokens_per_second_cuda=g["tokens_per_second"],
                   chunks=c["chunks"], ctx=c["ctx"])
    ppl.append(row)
gemv = load(f"{out}/gemv.json")
s = {"schema": "qforge.cuda_check/1", "device": device, "seconds": int(seconds),
     "test_cuda_types": {"exit": int(rc_types), "ok": rc_types == "0"},
     "test_cuda": {"exit": int(rc_cuda), "ok": rc_cuda == "0"},
     "perplexity": ppl, "perplexity_ok": bool(ppl) and all(r["ok"] for r in ppl),
     "calibrate_same_bytes": None if calib == "null" else calib == "true",
     "gemv": gemv, "gemv_ok": rc_gemv == "0" and gemv is not None}
s["ok"] = (s["test_cuda_types"]["ok"] and s["test_cuda"]["ok"] and s["perplexity_ok"] and s["calibrate_same_bytes"] is True
           and s["gemv_ok"])
with open(f"{out}/cuda_check.json", "w") as f: json.dump(s, f, indent=1)
for r in ppl:
    if "ppl_cpu" in r:
        print(f"cuda_check: {r['model']}: PPL cpu {r['ppl_cpu']:.6f} cuda {r['ppl_cuda']:.6f} (rel {r['relative_difference']:.2e}), "
              f"{r['tokens_per_second_cpu']:.0f} vs {r['tokens_per_second_cuda']:.0f} tokens/s")
    else: print(f"cuda_check: {r['model']}: perplexity failed (run.log)")
for r in (gemv or {}).get("gemv", []):
    print(f"cuda_check: gemv {r['type']} {r['rows']}x{r['k']}: {r['bytes_per_second']/1e9:.0f} GB/s, "
          f"{100*r['fraction_of_copy']:.0f}% of copy")
print(f"cuda_check: calibrate same bytes: {s['calibrate_same_bytes']}; all checks {'pass' if s['ok'] else 'FAIL'} "
      f"({seconds} s); {out}/cuda_check.json")
sys.exit(0 if s["ok"] else 1)
PY
rc=$?
rm -rf "$work"
exit $rc
