#!/usr/bin/env bash
# Runs two or more materializer binaries (builds of different commits) on the
# same recording, alternating within each repetition, and prints per binary
# the median wall time, read and map+write stages, the key state's share and
# the highest peak RSS. Used for the before/after tables in BENCHMARKS.md.
#
#   benches/compare-binaries.sh RECORDING CASE RUNS BIN...
#
# RECORDING: a folder of stream lines, e.g. the one the pipeline bench
# generates ($TMPDIR/materializer-bench/data/1000000-seed42-<generator>/stream,
# the folder named for the generator's fingerprint).
# CASE: flatten-csv, compact-csv, compact-csv-history (history on) or
# compact-parquet-history (history on, Parquet files).
# A binary built before the warehouse settings existed is given the topic
# without its [warehouse] section: prefix its path with "plain:".
# "nakadi:BIN" runs BIN reading the recording from a Nakadi-compatible server
# over HTTP streaming (the nakadi-server binary: $NAKADI_SERVER, else on PATH,
# e.g. target/release/nakadi-server), started once and serving the recording.
# "duckdb:EVENTS.ndjson" in place of a binary runs the bench's DuckDB script
# (pipeline/duckdb_script.py, 2 threads) on the same events as NDJSON, alternating
# with the binaries (its stage columns are empty).
#
# Build a commit's binary with the bench profile, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo bench --bench pipeline --no-run)
#   cp target/release/materializer /tmp/materializer-old
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
recording=$1 case=$2 runs=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

format=csv
case "$case" in *parquet*) format=parquet ;; esac

# topic DIR WAREHOUSE: the pipeline bench's topic for $case.
topic() {
    local dir=$1/bench-$case warehouse=$2 compact=true
    [ "$case" = flatten-csv ] && compact=false
    mkdir -p "$dir"
    printf 'event_type = "bench.%s"\npartitioning_key = "article_id"\nordering_key = "version"\ncompact = %s\n\n[output]\nformat = "%s"\n' \
        "${case//-/_}" "$compact" "$format" > "$dir/topic.toml"
    [ -n "$warehouse" ] && printf '\n[warehouse]\n%s\n' "$warehouse" >> "$dir/topic.toml"
    sed "s/bench.event/bench.${case//-/_}/" "$here/pipeline/schema.json" > "$dir/schema.json"
    cp "$here/pipeline/mapping.sql" "$dir/"
}
history="history = false"
case "$case" in *-history) history="" ;; esac
topic "$work/sql" "$history"
topic "$work/sql-plain" ""

# The Nakadi-compatible server, when a binary reads from it.
nakadi_url=""
for spec in "$@"; do
    [ "${spec#nakadi:}" = "$spec" ] || [ -n "$nakadi_url" ] && continue
    server=${NAKADI_SERVER:-nakadi-server}
    mkdir -p "$work/recordings"
    ln -s "$(cd "$recording" && pwd)" "$work/recordings/bench-$case"
    NAKADI_SERVER_LISTEN=127.0.0.1:0 RUST_LOG=info "$server" --sql-dir "$work/sql" \
        --recordings "$work/recordings" > /dev/null 2> "$work/nakadi.log" &
    nakadi_pid=$!
    trap 'kill $nakadi_pid 2>/dev/null; rm -rf "$work"' EXIT
    # It loads the recording into memory before it listens, then says where.
    until port=$(grep -o 'address=127.0.0.1:[0-9]*' "$work/nakadi.log" | head -1 | cut -d: -f2) && [ -n "$port" ]; do
        kill -0 $nakadi_pid 2>/dev/null || { cat "$work/nakadi.log" >&2; exit 1; }
        sleep 0.2
    done
    nakadi_url="http://127.0.0.1:$port"
done

results="$work/results"
for rep in $(seq "$runs"); do
    for spec in "$@"; do
        if [ "${spec#duckdb:}" != "$spec" ]; then
            shape=compact
            [ "$case" = flatten-csv ] && shape=flatten
            rm -f "$work/duckdb.$format"
            /usr/bin/time -f '%e %M' -o "$work/time" python3 "$here/pipeline/duckdb_script.py" "$shape" \
                "${spec#duckdb:}" "$work/duckdb.$format" "$format" 2 > /dev/null 2> "$work/err" \
                || { cat "$work/err" >&2; exit 1; }
            read -r wall kb < "$work/time"
            echo "duckdb $wall $((kb / 1024)) nan nan nan" >> "$results"
            continue
        fi
        bin=${spec#plain:} sql="$work/sql" source=(--source "$recording")
        [ "$bin" != "$spec" ] && sql="$work/sql-plain"
        if [ "${spec#nakadi:}" != "$spec" ]; then
            bin=${spec#nakadi:} source=(--nakadi-url "$nakadi_url")
        fi
        rm -rf "$work/out"
        /usr/bin/time -f '%e %M' -o "$work/time" "$bin" --sql-dir "$sql" run --topic "bench-$case" \
            --json --no-progress --output "$work/out" "${source[@]}" > "$work/summary.json" 2> "$work/err" \
            || { cat "$work/err" >&2; exit 1; }
        python3 - "$spec" "$work/summary.json" "$work/time" >> "$results" <<'PY'
import json, sys
spec, summary, timing = sys.argv[1:]
t = json.load(open(summary))["timings"]
wall, kb = open(timing).read().split()
print(spec, wall, int(kb) // 1024, t["read"], t["map_write"], t.get("key_state", float("nan")))
PY
    done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    spec, *values = line.split()
    rows.setdefault(spec, []).append([float(v) for v in values])
print("| binary | wall s | peak RSS MB | read s | map+write s | key state s |")
print("|---|---:|---:|---:|---:|---:|")
for spec, samples in rows.items():
    col = lambda i: statistics.median(s[i] for s in samples)
    print(f"| {spec} | {col(0):.2f} | {max(s[1] for s in samples):.0f} | {col(2):.2f} | {col(3):.2f} | {col(4):.2f} |")
PY
