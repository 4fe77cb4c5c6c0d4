#!/usr/bin/env python3
"""Projection of meta-training throughput to many ranks (docs/SCALING.md), from two measured
figures of bench/scaling: the computation per task on one core and the gradient block's size.

  iteration = k * t_task + t_step + log2(R) * (alpha + n / beta)

k = tasks per rank (meta-batch / R), each rank one core here (T threads divide k * t_task by T);
the exchange is metalearn's recursive doubling: log2(R) rounds, each sending and receiving the
whole n-byte block at once (full duplex). alpha is the per-message latency, beta the usable
bandwidth. A measured time per round (ROUND_MS, e.g. the exchange over TCP between network
namespaces) adds rows with that figure in place of the line-rate model.
usage: scaling_model.py TASK_MS BLOCK_BYTES [STEP_MS [ROUND_MS]]"""
import math
import sys

task_ms = float(sys.argv[1])
block = float(sys.argv[2])
step_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
nets = [("10 Gb/s Ethernet, TCP", 30e-6, 10e9 / 8 * 0.9), ("100 Gb/s RDMA (InfiniBand/RoCE)", 3e-6, 100e9 / 8 * 0.9)]
if len(sys.argv) > 4:
    nets.append(("measured TCP round (veth)", float(sys.argv[4]) * 1e-3, math.inf))


def row(R, k, net):
    name, alpha, beta = net
    comm = math.log2(R) * (alpha + block / beta) * 1e3 if R > 1 else 0.0
    it = k * task_ms + step_ms + comm
    tput = R * k / it * 1e3
    ideal = R / task_ms * 1e3
    return name, R, R * k, k, k * task_ms, comm, it, tput, tput / ideal


print("| ranks | network | meta-batch | tasks / rank | compute ms | all-reduce ms | iteration ms | tasks / s | efficiency |")
print("|---|---|---|---|---|---|---|---|---|")
for R, B in [(8, 32), (32, 32), (64, 64), (64, 256), (512, 512), (512, 2048)]:
    for net in nets:
        name, R_, B_, k, comp, comm, it, tput, eff = row(R, B // R, net)
        print(f"| {R_} | {name} | {B_} | {k} | {comp:.0f} | {comm:.2f} | {it:.1f} | {tput:.0f} | {100 * eff:.0f}% |")
