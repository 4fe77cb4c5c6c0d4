"""PyTorch DKT reference for bench/dkt.sh: the same files, split and hyperparameters as bench/dkt.c.

Piech et al.'s DKT as commonly implemented (e.g. pykt-toolkit): the answer (exercise e, correct c)
embedded as row e + c * n_items of nn.Embedding(2 * n_items, 100), nn.LSTM(100, 200,
batch_first=True), nn.Linear(200, n_items) with the logit of the next exercise picked, binary
cross-entropy with logits over the real (unpadded) steps. Sequences are cut into windows of 200
answers; windows with one answer are dropped; a minibatch of 64 windows is padded to its longest
window. Adam 1e-3; early stopping on the valid1 AUC (patience 5). Test: AUC over every predicted
answer, and over each student's answers 3-10 and 11-15 only.

Usage: dkt_torch.py DATASET [--threads N] [--epochs N] [--patience N] [--seed N] [--data DIR]
                    [--packed]   (pack_padded_sequence instead of padding: no padded steps run)
                    [--max-seconds S]   (stop training after S seconds, as bench/dkt.c does)
Prints the same "key value" lines as bench/dkt.c.
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn


def read_kt(path, ids):
    """Three-line KT file -> list of (items, correct) int arrays; ids maps the file's ids to 0.."""
    seqs = []
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    for i in range(0, len(lines), 3):
        n = int(lines[i].rstrip(","))
        q = [x for x in lines[i + 1].split(",") if x != ""]
        a = [int(x) for x in lines[i + 2].split(",") if x != ""]
        assert len(q) == n and len(a) == n, f"{path}:{i + 1}: length disagrees"
        items = np.array([ids.setdefault(x, len(ids)) for x in q], dtype=np.int64)
        seqs.append((items, np.array(a, dtype=np.int64)))
    return seqs


def windows(seqs, W):
    out = []
    for s, (q, a) in enumerate(seqs):
        for st in range(0, len(q), W):
            if len(q) - st >= 2:
                out.append((s, st, q[st:st + W], a[st:st + W]))
    return out


class DKT(nn.Module):
    def __init__(self, n_items, emb=100, hidden=200):
        super().__init__()
        self.n = n_items
        self.emb = nn.Embedding(2 * n_items, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_items)

    def forward(self, x, tgt, lengths=None):
        e = self.emb(x)
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=True)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        else:
            h, _ = self.lstm(e)
        return self.out(h).gather(2, tgt.unsqueeze(2)).squeeze(2)


def make_batch(ws, n_items, packed):
    ws = sorted(ws, key=lambda w: -len(w[2]))
    B, T = len(ws), len(ws[0][2]) - 1
    x = np.zeros((B, T), np.int64)
    tgt = np.zeros((B, T), np.int64)
    y = np.zeros((B, T), np.float32)
    mask = np.zeros((B, T), bool)
    pos = np.zeros((B, T), np.int64)
    stu = np.zeros((B, T), np.int64)
    lengths = []
    for b, (s, st, q, a) in enumerate(ws):
        L = len(q) - 1
        lengths.append(L)
        x[b, :L] = q[:-1] + a[:-1] * n_items
        tgt[b, :L] = q[1:]
        y[b, :L] = a[1:]
        mask[b, :L] = True
        pos[b, :L] = st + 2 + np.arange(L)
        stu[b, :L] = s
    t = torch.from_numpy
    return t(x), t(tgt), t(y), t(mask), pos, stu, (lengths if packed else None)


def auc(p, y):
    """ROC AUC with ties counted one half (same definition as ml_kt_auc)."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.int64)
    npos, nneg = y.sum(), len(y) - y.sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p), np.float64)
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return (ranks[y == 1].sum() - npos * (npos + 1) / 2.0) / (npos * nneg)


def predict(model, ws, n_items, packed, bs=256):
    model.eval()
    P, Y, POS = [], [], []
    with torch.no_grad():
        for i in range(0, len(ws), bs):
            x, tgt, y, mask, pos, stu, lengths = make_batch(ws[i:i + bs], n_items, packed)
            logit = model(x, tgt, lengths)
            m = mask.numpy()
            P.append(torch.sigmoid(logit).numpy()[m])
            Y.append(y.numpy()[m])
            POS.append(pos[m])
    model.train()
    return np.concatenate(P), np.concatenate(Y).astype(np.int64), np.concatenate(POS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--packed", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop training after this long (0: no limit)")
    ap.add_argument("--data", default=os.environ.get("METALEARN_DATA", "../shared/data"))
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    d = os.path.join(o.data, "knowledge-tracing", o.dataset)
    ids = {}
    # ids in order of the full train file then the test file, as ml_kt_dataset_load numbers them
    read_kt(os.path.join(d, f"{o.dataset}_train.csv"), ids)
    read_kt(os.path.join(d, f"{o.dataset}_test.csv"), ids)
    n_items = len(ids)
    train = windows(read_kt(os.path.join(d, f"{o.dataset}_train1.csv"), ids), o.window)
    valid = windows(read_kt(os.path.join(d, f"{o.dataset}_valid1.csv"), ids), o.window)
    test = windows(read_kt(os.path.join(d, f"{o.dataset}_test.csv"), ids), o.window)
    print(f"dataset {o.dataset} items {n_items} torch {torch.__version__} threads {torch.get_num_threads()} "
          f"packed {int(o.packed)}", flush=True)
    model = DKT(n_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.BCEWithLogitsLoss()
    best, best_state, best_epoch, since, train_s, epochs, last_s = -1.0, None, 0, 0, 0.0, 0, 0.0
    t_all = time.perf_counter()
    for ep in range(o.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        tot, n = 0.0, 0
        for i in range(0, len(order), o.batch):
            x, tgt, y, mask, _, _, lengths = make_batch([train[k] for k in order[i:i + o.batch]], n_items, o.packed)
            logit = model(x, tgt, lengths)
            loss = lossf(logit[mask], y[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * int(mask.sum())
            n += int(mask.sum())
        dt = time.perf_counter() - t0
        train_s += dt
        last_s = dt
        epochs = ep + 1
        p, y, _ = predict(model, valid, n_items, o.packed)
        a = auc(p, y)
        mark = ""
        if a > best:
            best, best_epoch, since, mark = a, ep + 1, 0, " *"
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
        print(f"torch epoch {ep + 1}: train loss {tot / n:.4f}, valid AUC {a:.4f}{mark} ({dt:.1f} s)", flush=True)
        if since >= o.patience:
            break
        if o.max_seconds > 0 and time.perf_counter() - t_all >= o.max_seconds:
            break
    total = time.perf_counter() - t_all
    model.load_state_dict(best_state)
    t0 = time.perf_counter()
    p, y, pos = predict(model, test, n_items, o.packed)
    pred_s = time.perf_counter() - t0
    q = np.clip(p, 1e-7, 1 - 1e-7)
    ll = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    acc = np.mean((p >= 0.5) == (y == 1))
    w1 = (pos >= 3) & (pos <= 10)
    w2 = (pos >= 11) & (pos <= 15)
    print(f"epochs {epochs} best_epoch {best_epoch} valid_auc {best:.4f} s_per_epoch {train_s / epochs:.3f} "
          f"last_epoch_s {last_s:.3f} train_s {train_s:.1f} total_s {total:.1f}")
    print(f"test auc {auc(p, y):.4f} auc_3_10 {auc(p[w1], y[w1]):.4f} auc_11_15 {auc(p[w2], y[w2]):.4f} "
          f"acc {acc:.4f} logloss {ll:.4f} n {len(p)} n_3_10 {int(w1.sum())} n_11_15 {int(w2.sum())} "
          f"predict_s {pred_s:.2f}")


if __name__ == "__main__":
    main()
