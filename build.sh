#!/usr/bin/env bash
# qforge build driver — the two commands the README shows.
#   bash build.sh demo [MODEL]   install missing packages (as root), build, then run the main job on MODEL
#                                (an HF directory, shard index or archive); without MODEL, on a small Llama
#                                checkpoint qforge generates itself
#   bash build.sh test           install missing packages, build, and run the whole test suite under ctest
#                                (a normal build, then an AddressSanitizer + UBSan build of the unit tests)
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc 2>/dev/null || echo 2)

packages="cmake make gcc g++ pkg-config git python3 libzstd-dev libssl-dev libcjson-dev libarchive-dev libpcre2-dev nodejs npm"

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

setup_reference() {
    # llama.cpp from ../shared/ref is the measuring instrument of the agreement tests; never linked.
    local ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
    if [ -d ../shared/ref ] && [ ! -x "$ref/bin/llama-perplexity" ]; then
        bash ../shared/ref/setup_ref.sh "$ref" >/dev/null 2>&1 || echo "build.sh: llama.cpp reference setup failed; its tests will skip" >&2
    fi
}

cmd_demo() {
    install_deps
    build build
    local qf=build/qforge out=out/demo model=${1:-}
    mkdir -p "$out"
    if [ -z "$model" ]; then
        model=$out/model
        echo "== generating a small random Llama checkpoint in $model"
        "$qf" synth "$model"
    fi
    echo "== the checkpoint"
    "$qf" inspect "$model" | tail -n 3
    for type in f16 q8_0; do
        echo "== convert to $type"
        "$qf" convert "$model" -o "$out/model-$type.gguf" --type "$type"
        "$qf" inspect "$out/model-$type.gguf" | tail -n 1
    done
    echo "== done: outputs in $out/"
}

cmd_test() {
    install_deps
    setup_reference
    build build -DQF_WERROR=ON
    (cd build && ctest -j"$jobs" --output-on-failure --timeout 1200)
    echo "== unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer"
    build build-asan -DQF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -j"$jobs" --output-on-failure --timeout 1200 -E '^(llamacpp_|memory_|bench_)')
}

case "${1:-}" in
    demo) shift; cmd_demo "$@" ;;
    test) cmd_test ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
