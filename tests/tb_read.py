#!/usr/bin/env python3
"""Reads a run directory's TensorBoard event files with TensorBoard's own reader and checks that
they hold the same scalars as metrics.jsonl (every numeric key but "iter", at step = "iter").
Usage: tb_read.py RUN_DIR. Prints "ok: N scalars" and exits 0, or prints the mismatch and exits 1.
Run by tests/test_report.c when a Python with the tensorboard package is available."""
import json
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = sys.argv[1]
ea = EventAccumulator(run, size_guidance={"scalars": 0})  # 0 = keep every event
ea.Reload()
got = {}
for tag in ea.Tags()["scalars"]:
    for e in ea.Scalars(tag):
        got[(tag, e.step)] = e.value
want = {}
with open(run + "/metrics.jsonl") as f:
    for line in f:
        d = json.loads(line)
        for k, v in d.items():
            if k != "iter" and isinstance(v, (int, float)) and not isinstance(v, bool):
                want[(k, d["iter"])] = float(v)
bad = 0
for key, v in sorted(want.items()):
    g = got.get(key)
    if g is None or not math.isclose(g, v, rel_tol=1e-6, abs_tol=1e-30):
        print("mismatch %s step %d: jsonl %r, tensorboard %r" % (key[0], key[1], v, g))
        bad += 1
extra = set(got) - set(want)
if extra:
    print("scalars in the event files but not in metrics.jsonl: %s" % sorted(extra)[:5])
    bad += 1
if not want:
    print("metrics.jsonl has no scalars")
    bad += 1
print("ok: %d scalars" % len(want) if not bad else "%d problems" % bad)
sys.exit(1 if bad else 0)
