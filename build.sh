#!/usr/bin/env bash
# qforge build driver — the two commands the README shows.
#   bash build.sh demo [MODEL]   install missing packages (as root), build, then run the main job on MODEL
#                                (an HF directory, shard index or archive; recipe q4_k_m); without MODEL, on a
#                                small DeepSeek-V3-style MoE in FP8 release layout qforge generates itself
#                                (recipe fp8-int4)
#   bash build.sh test           install missing packages, build, and run the whole test suite under ctest
#                                (a normal build, then an AddressSanitizer + UBSan build of the unit tests,
#                                then a bounded libFuzzer run of every parser when clang is available)
#   bash build.sh fuzz           only that fuzz step; QF_FUZZ_SECONDS=3600 runs each target for an hour
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc 2>/dev/null || echo 2)

packages="cmake make gcc g++ pkg-config git python3 libzstd-dev libssl-dev libcjson-dev libarchive-dev libpcre2-dev librsvg2-bin nodejs npm"

install_deps() {
    local missing=()
    for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    # nodejs/npm only serve the external llama.cpp reference; an existing node install is enough.
    if command -v node >/dev/null && command -v npm >/dev/null; then
        missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
    fi
    local want=(); for p in "${missing[@]}"; do [ -n "$p" ] && want+=("$p"); done
    [ ${#want[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "build.sh: missing Debian packages: ${want[*]} (run as root to install them)" >&2; exit 2
    fi
    echo "build.sh: installing ${want[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
}

build() { # build DIR [cmake args...]
    local dir=$1; shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
}

# llama.cpp's own converter (convert_hf_to_gguf.py, run by ../shared/ref/llamacpp_convert*.py) needs these
# Debian packages; the tests that compare our conversions with it skip, saying so, without them.
ref_python="python3-torch python3-numpy python3-sentencepiece python3-tqdm python3-yaml"

setup_reference() {
    # llama.cpp from ../shared/ref is the measuring instrument of the agreement tests; never linked.
    local ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
    if [ -d ../shared/ref ] && ! /usr/bin/python3 -c 'import torch, numpy, sentencepiece, yaml, tqdm' 2>/dev/null &&
        [ "$(id -u)" -eq 0 ]; then
        echo "build.sh: installing $ref_python (llama.cpp's converter, for the comparison tests)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $ref_python; } >/dev/null 2>&1 ||
            echo "build.sh: installing $ref_python failed; the converter comparisons will skip" >&2
    fi
    if [ -d ../shared/ref ] && [ ! -x "$ref/bin/llama-perplexity" ]; then
        bash ../shared/ref/setup_ref.sh "$ref" >/dev/null 2>&1 || echo "build.sh: llama.cpp reference setup failed; its tests will skip" >&2
    fi
}

cmd_demo() {
    install_deps
    build build
    local qf=build/qforge out=out/demo model=${1:-}
    # Texts for the demo: this repository's own documents (calibration and evaluation kept apart).
    local cal=README.md eval=docs/quant-types.md
    mkdir -p "$out"
    local recipe=q4_k_m
    if [ -z "$model" ]; then
        # what our users bring: a DeepSeek-V3-style MoE (MLA, routed + shared experts, a leading dense
        # layer, an MTP layer) in DeepSeek's FP8 release layout (E4M3 + 128x128 block scales, 3 shards),
        # taken in one pass to the FP8+INT4 mix
        model=$out/model
        recipe=fp8-int4
        echo "== generating a small random DeepSeek-V3-style checkpoint in FP8 release layout in $model"
        rm -rf "$model" # the demo's own model: synth never writes over an existing one
        "$qf" synth "$model" --arch deepseek-v3 --fp8 --shards 3 --mtp 1
    fi
    echo "== the checkpoint"
    "$qf" inspect "$model" | tail -n 1
    echo "== calibrate on $cal: importance matrix in llama.cpp's layout (routed experts per expert)"
    "$qf" calibrate "$model" --text "$cal" --ctx 128 --chunks 8 -o "$out/imatrix.gguf"
    echo "== quantize with the $recipe recipe and the importance matrix, straight from the checkpoint"
    "$qf" quantize "$model" --recipe "$recipe" --imatrix "$out/imatrix.gguf" -o "$out/model-$recipe.gguf"
    "$qf" inspect "$out/model-$recipe.gguf" | tail -n 1
    echo "== verify against the original on $eval (gate: mean KLD <= 0.05; MoE: routing agreement too)"
    "$qf" verify "$out/model-$recipe.gguf" --base "$model" --text "$eval" --ctx 128 --chunks 4 --max-kld 0.05 \
        --junit "$out/verify.junit.xml" --json "$out/verify.json"
    echo "== integrity digests and a transport pack"
    "$qf" verify "$out/model-$recipe.gguf" --integrity
    "$qf" pack "$out/model-$recipe.gguf" -o "$out/model-$recipe.qfz"
    echo "== done: outputs in $out/"
}

# libFuzzer needs clang and its runtime (Debian: clang + libclang-rt-<major>-dev, ~45 MB to download).
# They are optional extras: installed when missing and running as root, but a failed install, or a
# machine without them, only skips the fuzz step with a visible message.
fuzz_toolchain() {
    if ! command -v clang >/dev/null && [ "$(id -u)" -eq 0 ]; then
        echo "build.sh: installing clang for the fuzz step"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; } >/dev/null 2>&1 || true
    fi
    command -v clang >/dev/null || return 1
    local probe; probe=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
    if ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        local major; major=$(clang -dumpversion | cut -d. -f1)
        echo "build.sh: installing libclang-rt-$major-dev (libFuzzer) for the fuzz step"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "libclang-rt-$major-dev" >/dev/null 2>&1 || true
    fi
    local ok=0
    clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1 || ok=1
    rm -rf "$probe"
    return $ok
}

# Every fuzz target for QF_FUZZ_SECONDS (default 20; 13 targets: about 5 minutes), starting from the
# generated seeds plus what earlier runs found (build-fuzz/fuzz-corpus). Any crash, leak, sanitizer
# report or input slower than 25 s fails the step; the input is saved under build-fuzz/fuzz-artifacts.
cmd_fuzz() {
    if ! fuzz_toolchain; then
        echo "== SKIP: fuzz step (clang with libFuzzer not available; apt-get install clang libclang-rt-<N>-dev)"
        return 0
    fi
    echo "== fuzzing every parser for ${QF_FUZZ_SECONDS:-20}s each (libFuzzer + ASan + UBSan)"
    CC=clang build build-fuzz -DQF_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQF_CUDA=OFF
    local failed=() t name
    mkdir -p build-fuzz/fuzz-artifacts
    for t in build-fuzz/tests/fuzz/fuzz_*; do
        name=${t##*/fuzz_}
        mkdir -p "build-fuzz/fuzz-corpus/$name"
        if "$t" -max_total_time="${QF_FUZZ_SECONDS:-20}" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
                -print_final_stats=1 -artifact_prefix="build-fuzz/fuzz-artifacts/$name-" \
                "build-fuzz/fuzz-corpus/$name" "build-fuzz/tests/fuzz/seeds/$name" >"build-fuzz/fuzz-$name.log" 2>&1; then
            echo "fuzz $name: $(grep -a -m1 '^stat::number_of_executed_units' "build-fuzz/fuzz-$name.log" | awk '{print $2}') executions, clean"
        else
            failed+=("$name")
            echo "fuzz $name: FAILED (log build-fuzz/fuzz-$name.log; keep the input in tests/fuzz/regress/$name/)" >&2
            grep -a -E 'ERROR:|SUMMARY:|contract violated|runtime error' "build-fuzz/fuzz-$name.log" | head -5 >&2
        fi
    done
    [ ${#failed[@]} -eq 0 ] || { echo "build.sh: fuzz targets failed: ${failed[*]}" >&2; return 1; }
}

cmd_test() {
    install_deps
    setup_reference
    build build -DQF_WERROR=ON
    (cd build && ctest -j"$jobs" --output-on-failure --timeout 1200)
    echo "== unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer"
    # Optimised (-O2 -g) so the sanitizers see the code CI ships. Left out: the tests that only re-measure
    # agreement with llama.cpp or REFERENCE.json on real models (already run above; their C paths are
    # covered by the unit tests) and those asserting peak RSS, which ASan's shadow memory inflates.
    # (without the CUDA backend: the build above compiled it, and its kernels run only on a GPU)
    build build-asan -DQF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQF_CUDA=OFF
    (cd build-asan && QF_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 ctest -j"$jobs" --output-on-failure --timeout 1200 \
        -E '^(llamacpp_.*|memory_.*|bench_.*|runtime_ppl|trust_pack|test_imatrix_interop)$')
    cmd_fuzz
}

case "${1:-}" in
    demo) shift; cmd_demo "$@" ;;
    test) cmd_test ;;
    fuzz) install_deps; cmd_fuzz ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
