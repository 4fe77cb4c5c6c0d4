#!/usr/bin/env python3
"""The PyTorch side of bench/accuracy: functional second-order MAML on Conv4, trained and tested on
exactly the episodes that bench/accuracy exported, from the same initial weights.

    accuracy_torch.py WORKDIR [--check-first]     (normally started by build/bench/accuracy)
    accuracy_torch.py --probe                     (prints the torch version, or exits 3)

WORKDIR/setup.json names the files: the decoded pixels (uint8, ink = 255), the initial parameters
(safetensors), and per episode the dataset index, quarter turns (numpy.rot90) and label of each
example, support first. Inputs are rebuilt as rot90(uint8 image) / 255 in float32 and checked bit
for bit against the tensors metalearn fed itself (check_x.safetensors). Training: for each task,
one inner SGD step on the support with torch.autograd.grad(create_graph=True), the query loss of
the adapted weights, backward through both; the meta-gradient is the mean over the meta-batch
and torch.optim.Adam applies it. Test: 3 inner steps (no second order needed) and query accuracy.
Batch-norm uses batch statistics throughout (training mode, no running averages), as MAML and
metalearn do. Prints one JSON line: acc, ci95, train_seconds, eval_seconds, threads,
torch_version and the training-loss summary. Needs only torch and numpy (the safetensors files
are read and written here, the format is a JSON header and raw little-endian data).
"""
import json
import os
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # bench/accuracy prints how to install; exit 3 tells it why
    print(f"accuracy_torch.py: {e}", file=sys.stderr)
    sys.exit(3)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def forward(w, x, blocks, eps):
    """Conv4 as metalearn's: blocks x [conv3x3 pad 1, batch-norm (batch statistics), ReLU, max-pool 2], linear."""
    h = x
    for i in range(1, blocks + 1):
        h = F.conv2d(h, w[f"conv{i}.weight"], w[f"conv{i}.bias"], padding=1)
        h = F.batch_norm(h, None, None, w[f"bn{i}.weight"], w[f"bn{i}.bias"], training=True, eps=eps)
        h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), w["head.weight"], w["head.bias"])


def main():
    args = sys.argv[1:]
    if args == ["--probe"]:
        print(json.dumps({"torch_version": torch.__version__, "numpy_version": np.__version__}))
        return 0
    if not args or len(args) > 2 or (len(args) == 2 and args[1] != "--check-first"):
        print(__doc__, file=sys.stderr)
        return 2
    wd, check_first = args[0], len(args) == 2
    with open(os.path.join(wd, "setup.json")) as f:
        S = json.load(f)
    threads = int(S["threads"])
    torch.set_num_threads(threads)  # the project's rule: explicit and equal on both sides
    if S["clip_norm"] != 0:
        raise SystemExit("accuracy_torch.py: gradient clipping is not implemented here")

    # data: rotations precomputed once per quarter turn, then an episode is one gather
    N, H, W = S["images"]["shape"]
    pixels = np.fromfile(os.path.join(wd, S["images"]["file"]), dtype=np.uint8).reshape(N, H, W)
    rotated = np.stack([np.ascontiguousarray(np.rot90(pixels, k, axes=(1, 2))) for k in range(4)])

    def episodes(part):
        P = S[part]
        ld = lambda key: np.fromfile(os.path.join(wd, P[key]), dtype="<i4").reshape(-1, P["n_s"] + P["n_q"])
        return ld("src"), ld("rot"), ld("label"), P["n_s"]

    def episode(table, r):
        src, rot, lab, n_s = table
        # numpy's float32 division is IEEE division, as metalearn's (float)p / 255.0f
        x = torch.from_numpy(rotated[rot[r], src[r]].astype(np.float32) / np.float32(255)).unsqueeze(1)
        y = torch.from_numpy(lab[r].astype(np.int64))
        return x[:n_s], y[:n_s], x[n_s:], y[n_s:]

    train, test = episodes("train"), episodes("test")
    B, I, E = S["train"]["meta_batch"], S["train"]["iterations"], S["test"]["episodes"]

    chk = read_safetensors(os.path.join(wd, S["check_inputs"]))
    for name, ref in chk.items():
        part, idx, which = name.split(".")
        xs, _, xq, _ = episode(train if part == "train" else test, int(idx))
        mine = (xs if which == "xs" else xq).numpy()
        if mine.shape != ref.shape or not np.array_equal(mine, ref):
            raise SystemExit(f"accuracy_torch.py: rebuilt input {name} differs from metalearn's")

    names = S["params"]["names"]
    init = read_safetensors(os.path.join(wd, S["params"]["file"]))
    params = {n: torch.tensor(init[n], requires_grad=True) for n in names}
    plist = [params[n] for n in names]
    opt = torch.optim.Adam(plist, lr=S["meta_lr"], betas=(S["beta1"], S["beta2"]), eps=S["adam_eps"],
                           weight_decay=S["weight_decay"])
    blocks, eps, alpha = S["blocks"], S["bn_eps"], S["inner_lr"]

    def adapt(w, xs, ys, steps, create_graph):
        for _ in range(steps):
            loss = F.cross_entropy(forward(w, xs, blocks, eps), ys)
            g = torch.autograd.grad(loss, list(w.values()), create_graph=create_graph)
            w = {n: wi - alpha * gi for (n, wi), gi in zip(w.items(), g)}
            if not create_graph:  # test time: each step starts a fresh graph
                w = {n: wi.detach().requires_grad_(True) for n, wi in w.items()}
        return w

    losses, accs = [], []
    every = max(1, I // 10)
    t0 = time.perf_counter()
    for it in range(I):
        opt.zero_grad(set_to_none=False)
        lq_sum = acc_sum = 0.0
        for t in range(B):
            xs, ys, xq, yq = episode(train, it * B + t)
            fast = adapt(params, xs, ys, S["inner_steps"], create_graph=True)
            logits = forward(fast, xq, blocks, eps)
            lq = F.cross_entropy(logits, yq)
            (lq / B).backward()  # the meta-batch mean, one task's graph at a time
            lq_sum += lq.item()
            acc_sum += (logits.argmax(1) == yq).float().mean().item()
        if check_first and it == 0:
            grads = {f"grad.{n}": p.grad.detach().numpy().copy() for n, p in params.items()}
        opt.step()
        losses.append(lq_sum / B)
        accs.append(acc_sum / B)
        if (it + 1) % every == 0 or it + 1 == I:
            print(f"torch: iteration {it + 1}/{I}  loss {losses[-1]:.4f}  acc {accs[-1]:.3f}  "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    train_seconds = time.perf_counter() - t0

    if check_first:
        grads.update({f"param.{n}": p.detach().numpy() for n, p in params.items()})
        write_safetensors(os.path.join(wd, "check_torch.safetensors"), grads)

    t0 = time.perf_counter()
    scores = []
    for e in range(E):
        xs, ys, xq, yq = episode(test, e)
        fast = adapt({n: p.detach().requires_grad_(True) for n, p in params.items()}, xs, ys,
                     S["inner_steps_test"], create_graph=False)
        with torch.no_grad():
            scores.append((forward(fast, xq, blocks, eps).argmax(1) == yq).double().mean().item())
    eval_seconds = time.perf_counter() - t0
    acc = float(np.mean(scores)) if E else None  # JSON null: no test episodes in --check-first
    ci95 = 1.96 * float(np.std(scores, ddof=1)) / np.sqrt(E) if E > 1 else 0.0  # as ml_mean_ci95
    if E:
        print(f"torch: test accuracy {100 * acc:.2f}% +- {100 * ci95:.2f}% ({eval_seconds:.1f} s)", file=sys.stderr)

    print(json.dumps({
        "acc": acc, "ci95": ci95, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "loss_first": losses[0], "loss_last": losses[-1], "loss_last10": float(np.mean(losses[-10:])),
        "acc_last10": float(np.mean(accs[-10:])), "episodes": E, "iterations": I,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
