"""CPU by stage from folded stacks (inferno-collapse-perf output): each
sample goes to the innermost stage its stack names. Prints a Markdown table.

    python3 benches/profile_stages.py collapsed.txt
"""
import collections
import sys

rules = [  # (stage, substrings), checked from the leaf up
    ("sha-256 of written files", ["sha2::"]),
    ("CSV encoding", ["csv_cells::"]),
    ("Parquet encoding", ["parquet::arrow::arrow_writer"]),
    ("file writes (object_store, kernel copy)", ["object_store::local"]),
    ("spool: spill/read back (IPC)", ["arrow_ipc::"]),
    ("key state (Parquet segments)", ["materializer_core::state::"]),
    ("decide: classify keys", ["run::decide::classify", "run::decide::classes", "run::decide::pass", "run::decide::keys", "run::decide::partition"]),
    ("split by class (filter)", ["split_by_class", "of_class"]),
    ("map: DataFusion (unnest, projection)", ["datafusion_physical_plan", "datafusion_physical_expr", "datafusion::", "datafusion_execution"]),
    ("decode: JSON to Arrow", ["materializer_core::decode::"]),
    ("read: recording bytes", ["source::recorded", "source::framing"]),
]
totals = collections.Counter(); total = 0
for line in open(sys.argv[1]):
    stack, n = line.rstrip().rsplit(" ", 1); n = int(n); total += n
    frames = stack.split(";")
    stage = None
    for f in reversed(frames):
        for name, subs in rules:
            if any(s in f for s in subs):
                stage = name; break
        if stage: break
    totals[stage or "other (runtime, allocator, kernel scheduling)"] += n
for k, v in totals.most_common():
    print(f"| {k} | {100*v/total:.1f} % |")
