#!/usr/bin/env bash
# Side by side on one machine: `infer serve` and ../shared/ref/llama-server on the same `convert-weights synth` file, measured
# by `infer bench-serve` the same way (the issue's settings), plus `infer bench` tg for the single-client ratio.
# Run from the repository root on a quiet machine:  benchmarks/serve/compare-llama-server.sh [THREADS=2]
# Environment: PRESET (llama-3.2-1b), TYPE (q4_0), SLOTS (8), REQUESTS (64), PROMPT (128), MAX (128), OUT (/tmp/bench-serve).
set -euo pipefail
THREADS=${1:-2}
PRESET=${PRESET:-llama-3.2-1b} TYPE=${TYPE:-q4_0} SLOTS=${SLOTS:-8} REQUESTS=${REQUESTS:-64} PROMPT=${PROMPT:-128} MAX=${MAX:-128}
OUT=${OUT:-/tmp/bench-serve}
ROOT=$(pwd)
REF="$ROOT/../shared/ref/llama-server"
TOKENIZER="$ROOT/../shared/fixtures/models/llama3/llama3.q8_0.gguf"
mkdir -p "$OUT"

dotnet publish src/Cli -c Release -o "$OUT/infer" >/dev/null
dotnet publish tools/convert-weights -c Release -o "$OUT/convert" >/dev/null
INFER="$OUT/infer/infer"
MODEL="$OUT/$PRESET.$TYPE.gguf"
[ -f "$MODEL" ] || "$OUT/convert/convert-weights" synth --preset "$PRESET" --type "$TYPE" --tokenizer-from "$TOKENIZER" -o "$MODEL"

# A server this script started is stopped however the script ends (an error, Ctrl-C), so none is left running.
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT

wait_ready() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.5; done; echo "no server on $1" >&2; exit 1; }
load() { # port name clients requests
  "$INFER" bench-serve --url "http://127.0.0.1:$1" -c "$3" -n "$4" --prompt-tokens "$PROMPT" --max-tokens "$MAX" -o json > "$OUT/$2-c$3.json" \
    || echo "bench-serve against $2 with $3 clients reported errors (see the table)" >&2
}

"$INFER" bench -m "$MODEL" -t "$THREADS" -p "$PROMPT" -n "$MAX" -r 3 --device cpu -o json > "$OUT/infer-bench.json"

# llama-server: -c is the total context, split over the slots (512 per slot with 8 slots); ours: -c is per slot.
"$REF" -m "$MODEL" -t "$THREADS" -np "$SLOTS" -cb -c $((512 * SLOTS)) --port 18080 > "$OUT/llama-server.log" 2>&1 &
PID=$!
wait_ready 18080
load 18080 llama-server "$SLOTS" "$REQUESTS"
load 18080 llama-server 1 $((REQUESTS / 4))
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

"$INFER" serve -m "$MODEL" -t "$THREADS" -np "$SLOTS" -c 512 --device cpu --port 18081 > "$OUT/infer-serve.log" 2>&1 &
PID=$!
wait_ready 18081
load 18081 infer "$SLOTS" "$REQUESTS"
load 18081 infer 1 $((REQUESTS / 4))
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=

python3 - "$OUT" "$SLOTS" <<'PY'
import json, sys
out, slots = sys.argv[1], sys.argv[2]
j = lambda n: json.load(open(f"{out}/{n}.json"))
tg = [r for r in j("infer-bench")["results"] if r["test"].startswith("tg")][0]["tokens_per_second"]
print("| clients | server | output tokens/s | TTFT p50 ms | TPOT p50 ms | errors |")
print("| ---: | --- | ---: | ---: | ---: | ---: |")
for c in (slots, "1"):
    for name in ("llama-server", "infer"):
        r = j(f"{name}-c{c}")
        print(f"| {c} | {name} | {r['output_tokens_per_second']:.1f} | {r['ttft_s']['p50']*1000:.0f} | {r['tpot_s']['p50']*1000:.1f} | {r['errors']} |")
a, b = j(f"infer-c{slots}"), j(f"llama-server-c{slots}")
print(f"\n{slots} clients: tokens/s infer / llama-server = {a['output_tokens_per_second'] / b['output_tokens_per_second']:.2f} (goal >= 1.0); "
      f"TTFT p50 infer / llama-server = {a['ttft_s']['p50'] / b['ttft_s']['p50']:.2f} (goal <= 1.0)")
one = j('infer-c1')
print(f"1 client: infer bench tg = {tg:.1f} tokens/s; through HTTP: decode 1/TPOT p50 = {1 / one['tpot_s']['p50']:.1f} tokens/s "
      f"({1 / one['tpot_s']['p50'] / tg:.2f} x tg, goal >= 0.95), output tokens/s incl. prompt = {one['output_tokens_per_second']:.1f}")
PY
