#!/usr/bin/env bash
# A run of a pipeline bench topic read from a Nakadi-compatible server,
# locally and on a Ballista cluster of 1 and of 2 executors on this machine;
# prints per setup the median wall time and the peak RSS of the driver and of
# each executor.
#
#   benches/cluster.sh RECORDING RUNS BIN [compact|flatten]
#
# RECORDING: a folder of stream lines the pipeline bench generated
# ($TMPDIR/materializer-bench/data/<events>-seed42-<generator>/stream).
# BIN: a release build of materializer; nakadi-server comes from
# $NAKADI_SERVER, else PATH. The topic: `compact` (the default topic, as
# users write it: compacting, with history) or `flatten` (compact = false).
# Everything runs on this machine: the executors share its cores with the
# driver and the Nakadi server. Each run of a compacting topic starts from
# an empty output (no key state).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
recording=$1 runs=$2 bin=$3 kind=${4:-compact}
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

case $kind in
    compact) topic=bench-compact-csv compact=true ;;
    flatten) topic=bench-flatten-csv compact=false ;;
    *) echo "topic kind $kind: compact or flatten" >&2; exit 2 ;;
esac
event_type=bench.${topic#bench-}
event_type=${event_type//-/_}
dir=$work/sql/$topic
mkdir -p "$dir"
printf 'event_type = "%s"\npartitioning_key = "article_id"\nordering_key = "version"\ncompact = %s\n\n[output]\nformat = "csv"\n' \
    "$event_type" "$compact" > "$dir/topic.toml"
sed "s/bench.event/$event_type/" "$here/pipeline/schema.json" > "$dir/schema.json"
cp "$here/pipeline/mapping.sql" "$dir/"

# announced LOG PATTERN: the first number after PATTERN in LOG, once there.
announced() {
    until grep -qo "$2[0-9]*" "$1"; do sleep 0.2; done
    grep -o "$2[0-9]*" "$1" | head -1 | sed "s/$2//"
}

mkdir -p "$work/recordings"
ln -s "$(cd "$recording" && pwd)" "$work/recordings/$topic"
NAKADI_SERVER_LISTEN=127.0.0.1:0 RUST_LOG=info "${NAKADI_SERVER:-nakadi-server}" --sql-dir "$work/sql" \
    --recordings "$work/recordings" > /dev/null 2> "$work/nakadi.log" &
pids+=($!)
nakadi="http://127.0.0.1:$(announced "$work/nakadi.log" 'address=127.0.0.1:')"

# cluster N: a scheduler and N executors of 2 vcores, in place of the
# previous ones; sets $address, $executors.
cluster_pids=()
cluster() {
    for pid in "${cluster_pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    cluster_pids=()
    "$bin" cluster scheduler --bind-host 127.0.0.1 --bind-port 0 --external-host 127.0.0.1 \
        > "$work/scheduler.log" 2>&1 &
    pids+=($!)
    cluster_pids+=($!)
    local port
    port=$(announced "$work/scheduler.log" 'listening on 127.0.0.1:')
    address="df://127.0.0.1:$port"
    executors=()
    for n in $(seq "$1"); do
        "$bin" cluster executor --scheduler-host 127.0.0.1 --scheduler-port "$port" \
            --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port 0 --bind-grpc-port 0 \
            --work-dir "$work/executor-$1-$n" --vcores 2 > "$work/executor-$1-$n.log" 2>&1 &
        pids+=($!)
        cluster_pids+=($!)
        executors+=($!)
        announced "$work/executor-$1-$n.log" 'flight port ' > /dev/null
    done
    until [ "$(grep -c 'Received register executor request' "$work/scheduler.log")" -ge "$1" ]; do sleep 0.2; done
}

# measure SETUP [--cluster ADDRESS]: one run, appended to the results.
measure() {
    local setup=$1
    shift
    rm -rf "$work/out"
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" --sql-dir "$work/sql" run --topic "$topic" \
        --json --no-progress --output "$work/out" --nakadi-url "$nakadi" "$@" \
        > "$work/summary.json" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r wall kb < "$work/time"
    local executor_mb=""
    for pid in "${executors[@]:-}"; do
        [ -n "$pid" ] || continue
        executor_mb+="$(( $(grep VmHWM /proc/"$pid"/status | awk '{print $2}') / 1024 ))/"
    done
    echo "$setup $wall $((kb / 1024)) ${executor_mb%/}" >> "$work/results"
}

executors=()
for rep in $(seq "$runs"); do measure local; done
cluster 1
for rep in $(seq "$runs"); do measure "cluster-1" --cluster "$address"; done
cluster 2
for rep in $(seq "$runs"); do measure "cluster-2" --cluster "$address"; done

python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    setup, wall, driver, *executors = line.split()
    rows.setdefault(setup, []).append((float(wall), int(driver), executors[0] if executors else "-"))
print("| setup | wall s (median) | driver peak RSS MB | executors' peak RSS MB (since start) |")
print("|---|---:|---:|---|")
for setup, samples in rows.items():
    print(f"| {setup} | {statistics.median(s[0] for s in samples):.2f} | {max(s[1] for s in samples)} | {samples[-1][2]} |")
PY
