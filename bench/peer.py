"""The PyTorch peer: RecBole's SASRec vs our Scorer, one user, one thread, the ML-100k catalogue size.

Two long-lived worker processes, each in its own stack, are driven in alternating blocks (so both see
the same moments of this shared machine) and time every call themselves:

- peer: RecBole 1.2.1 SASRec (hidden 64, 2 layers, 2 heads, inner 256, max length 50, random weights,
  eval mode, `torch.inference_mode`, `torch.set_num_threads(1)`) in the virtualenv `--peer-python`
  (.cache/peer-venv: torch 2.13.0+cpu, recbole 1.2.1 --no-deps and the few packages it imports).
  Timed: `full_sort_predict` = the forward over a 50-item history + scores for all 1,683 item rows.
- ours (this interpreter, the dev venv): `Scorer.score` over the whole catalogue (1,682), and the API
  path `Scorer.retrieve(items, signals, 128, exclude=the history)` as `Recommender.recommend` calls it.

Also per stack: import time (a fresh process: `import torch` + the SASRec module; numpy + LiteRT +
rtrec.scorer), model build/load time, and installed size (the stack's site-packages that it imports).
The item count and the sequence length matter, not the data: histories are 50 random catalogue items.
Prints a table and writes bench/results/peer.json with the ratios.

    python bench/peer.py [--blocks 20] [--calls 50] [--peer-python .cache/peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
RESULTS = REPO_ROOT / "bench" / "results" / "peer.json"
DEFAULT_PEER_PYTHON = REPO_ROOT / ".cache" / "peer-venv" / "bin" / "python"
ENV1 = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ITEMS, SEQ = 1682, 50

PEER = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from recbole.model.sequential_recommender.sasrec import SASRec
t1 = time.perf_counter()
torch.set_num_threads(1)
torch.manual_seed(0)
config = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
          "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": SEQ,
          "device": torch.device("cpu"), "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
          "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
          "initializer_range": 0.02, "loss_type": "CE"}
class Dataset:
    def num(self, field):
        return ITEMS + 1  # RecBole's item ids include the padding id 0
model = SASRec(config, Dataset()).eval()
t2 = time.perf_counter()
g = torch.Generator().manual_seed(1)
seqs = [torch.randint(1, ITEMS + 1, (1, SEQ), generator=g) for _ in range(64)]
length = torch.tensor([SEQ])
def call(i):
    with torch.inference_mode():
        return model.full_sort_predict({"item_id_list": seqs[i % 64], "item_length": length})
out = call(0)
assert out.shape == (1, ITEMS + 1), out.shape
info = {"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "torch": torch.__version__}
print(json.dumps(info), flush=True)
i = 0
for line in sys.stdin:
    n = int(line)
    times = []
    for _ in range(n):
        s = time.perf_counter(); call(i); times.append((time.perf_counter() - s) * 1e3); i += 1
    print(json.dumps({"peer_full_sort_predict": times}), flush=True)
""".replace("SEQ", str(SEQ)).replace("ITEMS", str(ITEMS))

OURS = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from rtrec.scorer import Scorer
t1 = time.perf_counter()
scorer = Scorer.load(sys.argv[1], num_threads=1)
t2 = time.perf_counter()
from rtrec.features import HistoryStep, encode_history
rng = np.random.default_rng(1)
n = len(scorer.catalog)
histories = []
for _ in range(64):
    picks = rng.choice(np.arange(1, n + 1), size=50, replace=False)
    steps = [HistoryStep(scorer.catalog.item_at(int(p)), "rating", float(rng.integers(1, 6))) for p in picks]
    histories.append((*encode_history(steps, scorer.catalog), picks.astype(np.int64)))
everything = np.arange(1, n + 1)
def whole(i):
    items, signals, _ = histories[i % 64]; return scorer.score(items, signals, everything)
def api(i):
    items, signals, seen = histories[i % 64]; return scorer.retrieve(items, signals, 128, seen)
whole(0); api(0)
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "catalog": n}), flush=True)
i = 0
for line in sys.stdin:
    k = int(line)
    a, b = [], []
    for _ in range(k):
        s = time.perf_counter(); whole(i); a.append((time.perf_counter() - s) * 1e3)
        s = time.perf_counter(); api(i); b.append((time.perf_counter() - s) * 1e3)
        i += 1
    print(json.dumps({"ours_whole_catalogue": a, "ours_api_retrieve128": b}), flush=True)
"""


# Levers on our API path, measured in one process, interleaved per call, against "today" (the path before
# this change: user vector on the 128-wide interpreter, then the head as a second model call).
LEVERS = r"""
import json, sys, time
import numpy as np
import ai_edge_litert.interpreter as litert
from rtrec.scorer import Scorer, _FixedShapeRunner
from rtrec.features import HistoryStep, encode_history
from dataio.movielens import load_movielens
model_dir, users, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = Scorer.load(model_dir, num_threads=1)
content = open(model_dir + "/model.tflite", "rb").read()
class WithXnnpack:  # LiteRT's default delegates (XNNPACK) on, everything else as Scorer.load does
    OpResolverType = litert.OpResolverType
    @staticmethod
    def Interpreter(**kw):
        kw["experimental_op_resolver_type"] = litert.OpResolverType.AUTO
        return litert.Interpreter(**kw)
def variant(encoder, numpy_head, xnnpack=False):
    s = Scorer.load(model_dir, num_threads=1)
    head = s._head
    assert head is not None, "the numpy head did not match the model at load"
    if encoder == 128:
        s._encoder = s._shortlist
    if xnnpack:
        s._encoder = _FixedShapeRunner(WithXnnpack, content, encoder, 1)
    s._head = head if numpy_head else None
    return s
today = variant(128, False)
shipped = variant(1, True)
variants = {
    "today: 2 invokes (user vector on C=128, head in the model)": (today, 128),
    "C=1 encoder, head in the model (2 invokes)": (variant(1, False), 128),
    "C=128 encoder, numpy head (1 invoke)": (variant(128, True), 128),
    "shipped: C=1 encoder + numpy head (1 invoke)": (shipped, 128),
    "shipped + XNNPACK on the encoder": (variant(1, True, xnnpack=True), 128),
    "shipped, shortlist M=64": (shipped, 64),
    "shipped, shortlist M=32": (shipped, 32),
}
data, _ = load_movielens()
order = np.lexsort((np.arange(len(data)), data.timestamps, data.user_ids))
histories = []
catalog = base.catalog
users_sorted = data.user_ids[order]
starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
for a, b in zip(starts[:users], np.r_[starts[1:], len(order)][:users]):
    rows = order[a:b - 1]  # all but the user's last rating
    steps = [HistoryStep(str(data.item_ids[r]), "rating", float(data.ratings[r])) for r in rows]
    items, signals = encode_history(steps, catalog)
    seen = np.array([catalog.index_of(str(data.item_ids[r])) for r in rows], dtype=np.int64)
    histories.append((items, signals, seen[seen > 0]))
reference = [today.retrieve(i, s, 128, seen) for i, s, seen in histories]
out = {}
for name, (scorer, m) in variants.items():
    agree, gaps = [], []
    for (i, s, seen), (ref_idx, ref_scores) in zip(histories, reference):
        idx, sc = scorer.retrieve(i, s, max(m, 10), seen)
        agree.append(len(set(idx[:10].tolist()) & set(ref_idx[:10].tolist())) / 10)
        if m == 128:
            common = {int(k): float(v) for k, v in zip(ref_idx, ref_scores)}
            gaps.append(max(abs(common[int(k)] - float(v)) for k, v in zip(idx, sc) if int(k) in common))
    out[name] = {"top10_agreement": float(np.mean(agree)), "min_agreement": float(np.min(agree)),
                 "max_score_gap": float(max(gaps)) if gaps else None, "ms": [], "shortlist": m}
for r in range(calls):
    for name, (scorer, m) in variants.items():
        i, s, seen = histories[r % len(histories)]
        t = time.perf_counter(); scorer.retrieve(i, s, max(m, 10), seen)
        out[name]["ms"].append((time.perf_counter() - t) * 1e3)
print(json.dumps({"users": len(histories), "variants": out}))
"""


class Worker:
    def __init__(self, python: str, code: str, *argv: str) -> None:
        env = {**os.environ, **ENV1, "PYTHONPATH": str(REPO_ROOT / "layers" / "core")}
        self.proc = subprocess.Popen(
            [python, "-c", code, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def block(self, calls: int) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def cold_import_ms(python: str, statement: str, runs: int = 5) -> float:
    """Median wall time of a fresh interpreter doing `statement` minus one doing nothing."""
    env = {**os.environ, **ENV1, "PYTHONPATH": str(REPO_ROOT / "layers" / "core")}

    def once(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([python, "-c", code], check=True, env=env, capture_output=True)
        return (time.perf_counter() - start) * 1e3

    pairs = [(once(statement), once("pass")) for _ in range(runs)]
    return float(np.median([a - b for a, b in pairs]))


def installed_mb(python: str, distributions: list[str]) -> dict[str, float]:
    code = (
        "import importlib.metadata as m, json, os, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: d = m.distribution(name)\n"
        "    except m.PackageNotFoundError: continue\n"
        "    base = d.locate_file('')\n"
        "    out[name] = sum(os.path.getsize(os.path.join(base, str(f))) for f in (d.files or [])\n"
        "                    if os.path.isfile(os.path.join(base, str(f)))) / 1e6\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run([python, "-c", code, *distributions], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def run_levers(users: int, calls: int, peer_p50: float) -> dict:
    env = {
        **os.environ,
        **ENV1,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", LEVERS, str(MODEL_DIR), str(users), str(calls)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\nlevers: {out['users']} MovieLens users' histories (all but their last rating), exclude = seen; "
        f"{calls} calls each, interleaved per call; agreement = top-10 overlap with today's retrieve"
    )
    print("| variant | p50 ms | p99 ms | peer p50 / p50 | top-10 agreement (min) | max score gap |")
    print("|---|---|---|---|---|---|")
    for name, v in out["variants"].items():
        v.update(stats(v.pop("ms")))
        v["peer_p50_over_p50"] = peer_p50 / v["p50_ms"]
        gap = "–" if v["max_score_gap"] is None else f"{v['max_score_gap']:.4f}"
        print(
            f"| {name} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} | {v['peer_p50_over_p50']:.2f}× | "
            f"{v['top10_agreement']:.3f} ({v['min_agreement']:.1f}) | {gap} |"
        )
    return out


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "calls": len(a)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50, help="calls per block")
    parser.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON))
    parser.add_argument("--levers", action="store_true", help="also measure the levers on our path")
    parser.add_argument("--lever-users", type=int, default=300)
    parser.add_argument("--lever-calls", type=int, default=3000)
    args = parser.parse_args()
    if not Path(args.peer_python).exists():
        sys.exit(
            f"{args.peer_python} missing: python3.11 -m venv .cache/peer-venv && "
            ".cache/peer-venv/bin/pip install torch==2.13.0 && pip install --no-deps recbole==1.2.1 ..."
        )

    peer = Worker(args.peer_python, PEER)
    ours = Worker(sys.executable, OURS, str(MODEL_DIR))
    times: dict[str, list[float]] = {}
    for block in range(args.blocks):
        order = (peer, ours) if block % 2 == 0 else (ours, peer)
        for worker in order:
            for name, ms in worker.block(args.calls).items():
                times.setdefault(name, []).extend(ms)
    peer.close()
    ours.close()

    imports = {
        "peer": cold_import_ms(
            args.peer_python, "import torch; from recbole.model.sequential_recommender.sasrec import SASRec"
        ),
        "ours": cold_import_ms(
            sys.executable, "import numpy; import rtrec.scorer; import ai_edge_litert.interpreter"
        ),
    }
    peer_sizes = installed_mb(
        args.peer_python,
        ["torch", "recbole", "numpy", "pandas", "scipy", "colorlog", "texttable", "tensorboard", "colorama"],
    )
    our_sizes = installed_mb(sys.executable, ["numpy", "ai-edge-litert"])
    result = {name: stats(ms) for name, ms in times.items()}
    peer_p50 = result["peer_full_sort_predict"]["p50_ms"]
    ratios = {
        "peer_p50_over_ours_whole_catalogue_p50": peer_p50 / result["ours_whole_catalogue"]["p50_ms"],
        "peer_p50_over_ours_api_p50": peer_p50 / result["ours_api_retrieve128"]["p50_ms"],
        "peer_p99_over_ours_api_p99": result["peer_full_sort_predict"]["p99_ms"]
        / result["ours_api_retrieve128"]["p99_ms"],
    }
    labels = {
        "peer_full_sort_predict": "peer: SASRec forward + full-catalogue scores (torch)",
        "ours_whole_catalogue": "ours: Scorer.score, whole catalogue (LiteRT)",
        "ours_api_retrieve128": "ours: API path, retrieve 128 + head (LiteRT)",
    }
    print(
        f"one user, one thread, {ITEMS} items, history {SEQ}; "
        f"{args.blocks} interleaved blocks × {args.calls} calls"
    )
    print("| call | p50 ms | p99 ms | peer p50 / this p50 |")
    print("|---|---|---|---|")
    for name, label in labels.items():
        r = result[name]
        print(f"| {label} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {peer_p50 / r['p50_ms']:.2f}× |")
    print()
    print("| stack | cold import ms | model build/load ms | installed MB |")
    print("|---|---|---|---|")
    print(
        f"| peer: torch {peer.info['torch']} + recbole 1.2.1 | {imports['peer']:.0f} | "
        f"{peer.info['load_ms']:.0f} | "
        f"{sum(peer_sizes.values()):.0f} (torch {peer_sizes['torch']:.0f}) |"
    )
    print(
        f"| ours: numpy + ai-edge-litert + rtrec | {imports['ours']:.0f} | {ours.info['load_ms']:.0f} | "
        f"{sum(our_sizes.values()):.0f} |"
    )
    levers = run_levers(args.lever_users, args.lever_calls, peer_p50) if args.levers else None
    load = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "levers": levers,
                "items": ITEMS,
                "sequence_length": SEQ,
                "blocks": args.blocks,
                "calls_per_block": args.calls,
                "results": result,
                "ratios": ratios,
                "import_ms": imports,
                "load_ms": {"peer": peer.info["load_ms"], "ours": ours.info["load_ms"]},
                "installed_mb": {"peer": peer_sizes, "ours": our_sizes},
                "machine": {"cpus": os.cpu_count(), "loadavg": load, "python": platform.python_version()},
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)} (load average {load[0]:.1f})")


if __name__ == "__main__":
    main()
