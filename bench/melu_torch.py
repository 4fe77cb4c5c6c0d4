"""PyTorch reference of MeLU (Lee et al., KDD 2019) on metalearn's MovieLens-100K folds.

The same model as src/apps/recommend/model.c: one 32-d embedding per feature field (gender, age
bucket, occupation, zip prefix, release-year bucket; genres as a bias-free linear map of the
normalized multi-hot, i.e. the mean of their embeddings), concatenated, MLP 64-64-1 with ReLU and
a linear output offset by the training mean; the inner loop adapts only the MLP. Meta-training is
functional second-order MAML (torch.autograd.grad with create_graph=True), inner lr 0.01, 5 steps,
Adam 1e-3, gradient clip 10, 32 users per meta-batch; tasks = a random training user, query = 10
random ratings, support = the rest; tasks come from the training users with 13-100 ratings. Test users and their query / nested supports are
read from the fold file `metalearn train --dataset movielens --export DIR` writes, so both sides
score the same users on the same ratings.

usage: melu_torch.py --data ML100K_DIR --fold DIR/fold0.txt --iterations N --threads T
Prints per-K MAE (mean +- 95% CI over test users) and the time per meta-training epoch.
"""
import argparse
import math
import random
import time

import numpy as np
import torch

KS = [1, 3, 5, 10, None]


def age_bucket(a):
    for i, lim in enumerate([18, 25, 35, 45, 50, 56]):
        if a < lim:
            return i + 1
    return 7


def year_bucket(y):
    if y < 1800 or y > 2100:
        return 0
    if y < 1940:
        return 1
    if y < 1990:
        return 2 + (y - 1940) // 10
    if y < 1995:
        return 7
    if y < 2000:
        return 8
    if y < 2010:
        return 9
    return 10


def load(data):
    users, occ = {}, []
    for line in open(f"{data}/u.user", encoding="latin-1"):
        f = line.rstrip("\n").split("|")
        if f[3] not in occ:
            occ.append(f[3])
        z = f[4][0]
        users[int(f[0])] = (1 if f[2] == "M" else 2, age_bucket(int(f[1])), 1 + occ.index(f[3]) if occ.index(f[3]) < 31 else 0,
                            1 + int(z) if z.isdigit() else 0)
    items = {}
    for line in open(f"{data}/u.item", encoding="latin-1"):
        f = line.rstrip("\n").split("|")
        y = int(f[2][-4:]) if len(f[2]) >= 4 and f[2][-4:].isdigit() else 0
        g = np.array([int(x) for x in f[5:24]], dtype=np.float32)
        items[int(f[0])] = (year_bucket(y), g / g.sum() if g.sum() > 0 else g)
    ratings = {}
    for line in open(f"{data}/u.data"):
        u, i, r, t = (int(x) for x in line.split())
        ratings.setdefault(u, []).append((t, i, float(r)))
    for u in ratings:
        ratings[u].sort()
    return users, items, ratings


def parse_fold(path):
    roles, tests = {}, []
    for line in open(path):
        f = line.split()
        if f[0] == "role":
            roles[int(f[1])] = f[2]
        elif f[0] == "test":
            q = [(int(a), float(b)) for a, b in (x.split(":") for x in f[2].split(","))]
            s = [(int(a), float(b)) for a, b in (x.split(":") for x in f[3].split(","))] if len(f) > 3 else []
            tests.append((int(f[1]), q, s))
    return roles, tests


OFFS = [0, 3, 3 + 8, 3 + 8 + 32, 3 + 8 + 32 + 11]  # gender, age, occupation, zip, year tables
ROWS = OFFS[-1] + 11


def encode(users, items, u, pairs):
    g, a, o, z = users[u]
    idx = np.array([[g, OFFS[1] + a, OFFS[2] + o, OFFS[3] + z, OFFS[4] + items[i][0]] for i, _ in pairs], dtype=np.int64)
    gen = np.stack([items[i][1] for i, _ in pairs])
    y = np.array([r for _, r in pairs], dtype=np.float32)
    return torch.from_numpy(idx), torch.from_numpy(gen), torch.from_numpy(y)


class MeLU(torch.nn.Module):
    def __init__(self, mu, d=32, h=64, n_genres=19):
        super().__init__()
        self.mu = mu
        self.table = torch.nn.Embedding(ROWS, d)        # N(0, 1), as MeLU's nn.Embedding
        self.genre = torch.nn.Linear(n_genres, d, bias=False)
        self.fc1 = torch.nn.Linear(6 * d, h)
        self.fc2 = torch.nn.Linear(h, h)
        self.out = torch.nn.Linear(h, 1)

    def mlp_params(self):
        return [self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, self.out.weight, self.out.bias]

    def forward(self, idx, gen, w):
        e = self.table(idx).reshape(idx.shape[0], -1)
        x = torch.cat([e, self.genre(gen)], 1)
        x = torch.relu(torch.nn.functional.linear(x, w[0], w[1]))
        x = torch.relu(torch.nn.functional.linear(x, w[2], w[3]))
        return torch.nn.functional.linear(x, w[4], w[5]).squeeze(1) + self.mu


def adapt(model, sx, steps, lr, create_graph):
    w = model.mlp_params()
    for _ in range(steps):
        loss = torch.mean((model(sx[0], sx[1], w) - sx[2]) ** 2)
        g = torch.autograd.grad(loss, w, create_graph=create_graph)
        w = [p - lr * gp for p, gp in zip(w, g)]
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--fold", required=True)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first_order", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    users, items, ratings = load(a.data)
    roles, tests = parse_fold(a.fold)
    # the training mean over every training user; tasks from those with 13-100 ratings, as metalearn
    mu = float(np.mean([r for u in ratings if roles.get(u) == "train" for _, _, r in ratings[u]]))
    train = [u for u in ratings if roles.get(u) == "train" and 13 <= len(ratings[u]) <= 100]
    model = MeLU(mu)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch, steps, lr = 32, 5, 0.01
    t0 = time.perf_counter()
    for it in range(a.iterations):
        opt.zero_grad()
        total = 0.0
        for _ in range(batch):
            u = rng.choice(train)
            rs = [(i, r) for _, i, r in ratings[u]]
            rng.shuffle(rs)
            q, s = rs[:10], rs[10:100]
            sx, qx = encode(users, items, u, s), encode(users, items, u, q)
            w = adapt(model, sx, steps, lr, not a.first_order)
            loss = torch.mean((model(qx[0], qx[1], w) - qx[2]) ** 2) / batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    train_s = time.perf_counter() - t0
    it_s = train_s / max(a.iterations, 1)
    print(f"torch MeLU ({'fomaml' if a.first_order else 'maml'}): {1e3 * it_s:.2f} ms per meta-iteration of {batch} users, "
          f"{it_s * len(train) / batch:.2f} s per epoch of {len(train)} training users ({a.threads} threads)")
    maes = {k: [] for k in KS}
    for u, q, s in tests:
        qx = encode(users, items, u, q)
        for k in KS:
            sk = s if k is None else s[:k]
            w = adapt(model, encode(users, items, u, sk), steps, lr, False)
            with torch.no_grad():
                p = model(qx[0], qx[1], w).clamp(1, 5)
            maes[k].append(float(torch.mean(torch.abs(p - qx[2]))))
    line = []
    for k in KS:
        m = np.array(maes[k])
        ci = 1.96 * m.std(ddof=1) / math.sqrt(len(m)) if len(m) > 1 else 0.0
        line.append(f"{'full' if k is None else 'K=' + str(k)} {m.mean():.4f} +-{ci:.4f}")
    print(f"torch MeLU MAE over {len(tests)} test users: " + ", ".join(line))


if __name__ == "__main__":
    main()
