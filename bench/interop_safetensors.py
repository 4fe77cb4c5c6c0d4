#!/usr/bin/env python3
"""Interop check (optional, not run by the tests): a metalearn checkpoint must load with the
reference `safetensors` Python package, and a file that package writes must load in metalearn.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install safetensors numpy
    /tmp/venv/bin/python bench/interop_safetensors.py IN.safetensors OUT.safetensors [--scale S]

Reads IN (written by ml_checkpoint_save) with safetensors' own validating reader, checks its
layout and metadata, prints a summary, and writes OUT with safetensors.numpy.save_file: the same
tensors (parameters multiplied by S, default 1) and the same metadata, so that
ml_checkpoint_load(OUT) restores the run. Exits nonzero on any mismatch.
"""
import argparse
import json
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the parameters (not optimizer state)")
    a = ap.parse_args()

    # raw layout as the spec says: u64 LE header size, JSON padded with spaces to 8, no holes
    with open(a.inp, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header_bytes = raw[8 : 8 + n]
    problems = []
    if n % 8:
        problems.append(f"header length {n} is not a multiple of 8")
    if not header_bytes.rstrip(b" ").endswith(b"}"):
        problems.append("header is not a JSON object followed by space padding")
    header = json.loads(header_bytes)
    meta = header.pop("__metadata__", {})
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    end = 0
    for b, e in spans:
        if b != end:
            problems.append(f"offsets not contiguous at {b}")
        end = e
    if end != len(raw) - 8 - n:
        problems.append("data section not fully indexed")

    tensors = {}
    with safe_open(a.inp, framework="numpy") as f:  # the reference reader validates the file
        file_meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    if file_meta != meta:
        problems.append("metadata differs between raw JSON and safe_open")
    if file_meta.get("format") != "metalearn":
        problems.append(f"metadata format = {file_meta.get('format')!r}, expected 'metalearn'")
    for k, t in tensors.items():
        if t.dtype != np.float32:
            problems.append(f"{k}: dtype {t.dtype}, expected float32")
        if list(t.shape) != header[k]["shape"]:
            problems.append(f"{k}: shape {t.shape} != header {header[k]['shape']}")
        if not np.all(np.isfinite(t)):
            problems.append(f"{k}: non-finite values")

    n_params = sum(1 for k in tensors if not k.startswith("optim."))
    print(f"{a.inp}: {len(tensors)} tensors ({n_params} parameters), "
          f"optim={file_meta.get('optim.kind', 'none')} step={file_meta.get('optim.step', '-')}")
    for k in sorted(tensors):
        t = tensors[k]
        print(f"  {k:32s} {str(t.shape):20s} sum={float(t.astype(np.float64).sum()):.6g}")

    out = {k: (t * np.float32(a.scale) if not k.startswith("optim.") else t) for k, t in tensors.items()}
    save_file(out, a.out, metadata=file_meta)
    with safe_open(a.out, framework="numpy") as f:
        for k in out:
            if not np.array_equal(f.get_tensor(k), out[k]):
                problems.append(f"{k}: round trip through {a.out} differs")

    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    print(f"wrote {a.out}" + (f" (parameters x {a.scale:g})" if a.scale != 1 else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
