#!/usr/bin/env bash
# Profiles one run of the pipeline bench's default topic (compacting to CSV,
# history on) and writes a flame graph and the CPU by stage, as in
# BENCHMARKS.md "Where the time goes".
#
#   benches/profile.sh BIN RECORDING OUT_DIR
#
# BIN: a binary with symbols (cargo build --profile release-with-symbols);
# RECORDING: stream lines the pipeline bench generated. Needs `perf` (only
# its software clock is used, which works in VMs) and inferno
# (`cargo install inferno`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin=$1 recording=$2 out=$3
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
topic="$work/sql/bench-compact-csv"
mkdir -p "$topic"
printf 'event_type = "bench.compact_csv"\npartitioning_key = "article_id"\nordering_key = "version"\ncompact = true\n\n[output]\nformat = "csv"\n' \
    > "$topic/topic.toml"
sed "s/bench.event/bench.compact_csv/" "$here/pipeline/schema.json" > "$topic/schema.json"
cp "$here/pipeline/mapping.sql" "$topic/"
perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -o "$work/perf.data" \
    "$bin" --sql-dir "$work/sql" run --topic bench-compact-csv --json --no-progress \
    --output "$work/out" --source "$recording" > "$out/summary.json"
perf script -i "$work/perf.data" 2> /dev/null | inferno-collapse-perf > "$out/collapsed.txt"
inferno-flamegraph --title "materializer run: compacting to CSV, history on (default)" \
    --width 1400 --minwidth 0.2 < "$out/collapsed.txt" > "$out/flame.svg"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2> /dev/null \
    | grep -v "^#" | grep -v "^$" | head -10 > "$out/top-functions.txt" || true
python3 "$here/profile_stages.py" "$out/collapsed.txt" | tee "$out/stages.md"
