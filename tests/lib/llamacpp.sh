# Shared by the tests that measure llama.cpp (the reference in ../shared/ref); sourced, not a test.
#
# llama_ppl MODEL TEXT CTX CHUNKS: prints llama-perplexity's final PPL (exact F32 attention and KV cache)
# or nothing. On a loaded machine it has once in a while printed no estimate; a second run is tried
# before giving up, and the log of the last run stays in $LLAMA_LOG for the failure message.
# -nr (no repacked weight buffers): on CPUs where the reference picks its AMX/repack buffers, it aborts
# on every DeepSeek (MLA) graph, its own converter's files included (GGML_ASSERT(*cur_backend_id != -1)
# in ggml_backend_sched_split_graph); the plain CPU buffers run the same operations on any CPU.
llama_ppl() {
    local model=$1 text=$2 ctx=$3 chunks=$4 try out
    LLAMA_LOG=${LLAMA_LOG:-$(mktemp)}
    for try in 1 2; do
        "$ref/bin/llama-perplexity" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" -t 2 -nr -fa off -ctk f32 -ctv f32 \
            >"$LLAMA_LOG" 2>&1 || true
        out=$(LC_ALL=C sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$LLAMA_LOG")
        if [ -n "$out" ]; then echo "$out"; return 0; fi
    done
    echo "llama-perplexity gave no estimate twice; last lines:" >&2
    tail -n 5 "$LLAMA_LOG" >&2
}
