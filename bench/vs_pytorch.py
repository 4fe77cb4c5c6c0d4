#!/usr/bin/env python3
"""PyTorch side of bench/vs_pytorch: times one configuration and prints one JSON line.

Functional PyTorch, the way learn2learn / torchmeta users write it: Conv4 (64 filters, 3x3 conv,
batch norm with batch statistics, ReLU, 2x2 max-pool, x4) on 28x28 single-channel images, weights
as plain tensors, MAML's inner loop with torch.autograd.grad(create_graph=True).

  vs_pytorch.py --config N --threads T [--warmup W] [--iters M]

Configurations (the same as metalearn's side, bench/vs_pytorch.c):
  1 MAML second order, 5-way 1-shot 15 query, meta-batch 32, 1 inner step    (s / meta-iteration)
  2 first-order MAML, same                                                     (s / meta-iteration)
  3 MAML second order, 20-way 1-shot 15 query, meta-batch 16, 5 inner steps   (s / meta-iteration)
  4 ProtoNet training episode, 60-way 5-shot 5 query                           (s / episode)
  5 ProtoNet evaluation episode, 5-way 1-shot 15 query                         (s / episode)
  6 Reptile, 5-way 5-shot, 5 inner Adam steps of batch 10, meta-batch 5         (s / meta-iteration)
Output: {"side": "torch", "version": ..., "config": N, "threads": T, "times": [...],
         "maxrss_kb": ..., "minflt_steady": ...}: maxrss is the process peak; minflt counts the
minor page faults during the timed iterations only."""
import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = {
    1: dict(kind="maml", way=5, shot=1, query=15, batch=32, steps=1, lr=0.4, second=True),
    2: dict(kind="maml", way=5, shot=1, query=15, batch=32, steps=1, lr=0.4, second=False),
    3: dict(kind="maml", way=20, shot=1, query=15, batch=16, steps=5, lr=0.1, second=True),
    4: dict(kind="proto_train", way=60, shot=5, query=5),
    5: dict(kind="proto_eval", way=5, shot=1, query=15),
    6: dict(kind="reptile", way=5, shot=5, query=0, batch=5, steps=5, inner_batch=10, lr=1e-3),
}


def conv4_params(n_out, filters=64, gen=None):
    w = {}
    cin = 1
    for i in range(4):
        w[f"conv{i}.weight"] = (torch.randn(filters, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5)
        w[f"conv{i}.bias"] = torch.zeros(filters)
        w[f"bn{i}.weight"] = torch.ones(filters)
        w[f"bn{i}.bias"] = torch.zeros(filters)
        cin = filters
    if n_out:
        w["head.weight"] = torch.randn(n_out, filters, generator=gen) * (1.0 / filters) ** 0.5
        w["head.bias"] = torch.zeros(n_out)
    for t in w.values():
        t.requires_grad_(True)
    return w


def features(w, x):
    h = x
    for i in range(4):
        h = F.conv2d(h, w[f"conv{i}.weight"], w[f"conv{i}.bias"], padding=1)
        h = F.batch_norm(h, None, None, w[f"bn{i}.weight"], w[f"bn{i}.bias"], training=True, eps=1e-5)
        h = F.max_pool2d(F.relu(h), 2)
    return h.flatten(1)


def logits(w, x):
    return F.linear(features(w, x), w["head.weight"], w["head.bias"])


def episode(gen, way, shot, query):
    """Synthetic binary 28x28 images with labels: the arithmetic of a real Omniglot episode."""
    def part(k):
        y = torch.arange(way).repeat_interleave(k)
        p = 0.1 + 0.05 * y.float()
        x = (torch.rand(way * k, 1, 28, 28, generator=gen) < p.view(-1, 1, 1, 1)).float()
        return x, y
    return part(shot), part(query) if query else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = CONFIGS[a.config]
    gen = torch.Generator().manual_seed(1)
    kind = c["kind"]
    way, shot, query = c["way"], c["shot"], c["query"]
    # a pool of distinct episodes, cycled, so data generation is not timed
    pool = [episode(gen, way, shot, query) for _ in range(8)]
    w = conv4_params(0 if kind.startswith("proto") else way, gen=gen)
    params = list(w.values())
    opt = torch.optim.Adam(params, lr=1e-3)
    counter = [0]

    def next_episode():
        counter[0] += 1
        return pool[counter[0] % len(pool)]

    def maml_step():
        opt.zero_grad(set_to_none=True)
        for _ in range(c["batch"]):
            (xs, ys), (xq, yq) = next_episode()
            fast = dict(w)
            for _ in range(c["steps"]):
                loss = F.cross_entropy(logits(fast, xs), ys)
                g = torch.autograd.grad(loss, list(fast.values()), create_graph=c["second"])
                if not c["second"]:
                    g = [gi.detach() for gi in g]
                fast = {k: v - c["lr"] * gi for (k, v), gi in zip(fast.items(), g)}
            (F.cross_entropy(logits(fast, xq), yq) / c["batch"]).backward()
        opt.step()

    def proto_loss(xs, ys, xq, yq):
        fs, fq = features(w, xs), features(w, xq)
        protos = fs.view(way, shot, -1).mean(1)
        d = torch.cdist(fq, protos) ** 2
        return F.cross_entropy(-d, yq), d

    def proto_train():
        (xs, ys), (xq, yq) = next_episode()
        opt.zero_grad(set_to_none=True)
        proto_loss(xs, ys, xq, yq)[0].backward()
        opt.step()

    def proto_eval():
        (xs, ys), (xq, yq) = next_episode()
        with torch.no_grad():
            _, d = proto_loss(xs, ys, xq, yq)
            (d.argmin(1) == yq).float().mean().item()

    def reptile_step():
        deltas = [torch.zeros_like(p) for p in params]
        for _ in range(c["batch"]):
            (xs, ys), _ = next_episode()
            fast = [p.detach().clone().requires_grad_(True) for p in params]
            inner = torch.optim.Adam(fast, lr=c["lr"], betas=(0.0, 0.999))
            fw = dict(zip(w.keys(), fast))
            perm = torch.randperm(xs.shape[0], generator=gen)
            for s in range(c["steps"]):
                idx = perm[(s * c["inner_batch"]) % xs.shape[0]:][:c["inner_batch"]]
                inner.zero_grad(set_to_none=True)
                F.cross_entropy(logits(fw, xs[idx]), ys[idx]).backward()
                inner.step()
            with torch.no_grad():
                for d, p, f in zip(deltas, params, fast):
                    d += (f - p) / c["batch"]
        with torch.no_grad():
            for p, d in zip(params, deltas):
                p += 1.0 * d

    step = {"maml": maml_step, "proto_train": proto_train, "proto_eval": proto_eval, "reptile": reptile_step}[kind]
    for _ in range(a.warmup):
        step()
    times = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(a.iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(json.dumps({"side": "torch", "version": torch.__version__, "config": a.config, "threads": a.threads,
                      "times": times, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "minflt_steady": f1 - f0}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
