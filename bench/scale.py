"""A million items: approximate inner-product indexes compared by measurement, top-100, one thread.

Generates a synthetic catalogue of N items × 64 dims (clustered like trained embeddings: a mixture of
Gaussian topics with per-item popularity scaling the norm) and user queries drawn near a few topics, then
for each candidate index measures: the package's installed size, build time, save size, load time (a fresh
process: import + load from disk = what a cold start pays), resident memory after load, query p50/p99 for
top-100 (one thread, interleaved across indexes), and recall@100 against exact float32 search.

Candidates: `rtrec.item_index.ItemIndex` (numpy IVF, no dependency), exact numpy brute force (the baseline),
and, when importable in `--ann-python` (a venv under .cache/ holding usearch, faiss-cpu, hnswlib),
faiss IndexIVFFlat, hnswlib and usearch (HNSW). Prints a table, writes bench/results/scale.json.

    python bench/scale.py [--items 1000000] [--queries 300] [--ann-python .cache/ann-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "scale.json"
DEFAULT_ANN_PYTHON = REPO_ROOT / ".cache" / "ann-venv" / "bin" / "python"
DIM, K = 64, 100
ENV1 = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def synth(items: int, queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Clustered item embeddings (≈ √N/2 topics, anisotropic spread, popularity-scaled norms) and queries."""
    rng = np.random.default_rng(seed)
    topics = max(8, int(np.sqrt(items) / 2))
    centres = rng.normal(size=(topics, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weight = rng.zipf(1.3, size=topics).astype(np.float64)
    topic = rng.choice(topics, size=items, p=weight / weight.sum())
    spread = rng.uniform(0.3, 0.7, size=(topics, 1)).astype(np.float32)
    out = np.empty((items, DIM), dtype=np.float32)
    for start in range(0, items, 200_000):
        t = topic[start : start + 200_000]
        noise = rng.normal(size=(len(t), DIM)).astype(np.float32) / np.sqrt(DIM)
        out[start : start + len(t)] = centres[t] + spread[t] * noise * 2.0
    out *= rng.lognormal(0.0, 0.25, size=(items, 1)).astype(np.float32)  # popularity-ish norms
    mix = rng.choice(topics, size=(queries, 3), p=weight / weight.sum())
    user = centres[mix].sum(axis=1) + rng.normal(size=(queries, DIM)).astype(np.float32) * 0.3
    return out, user.astype(np.float32)


def exact_topk(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        s = items @ q
        top = np.argpartition(-s, k - 1)[:k]
        out[i] = top[np.argsort(-s[top])]
    return out


# Each candidate: build(items, dir) -> file(s); load(dir) -> object; query(obj, q, k) -> ids.
# Written as source so a fresh process (possibly another venv) can run it.
CANDIDATES = {
    "numpy brute force (float32)": dict(
        package=None,
        src=r"""
def build(items, d, **kw):
    np.save(f"{d}/m.npy", items)
def load(d, **kw):
    return np.load(f"{d}/m.npy")
def query(m, q, k, **kw):
    s = m @ q; top = np.argpartition(-s, k - 1)[:k]; return top[np.argsort(-s[top])]
""",
    ),
    "rtrec.item_index IVF int8 (numpy)": dict(
        package=None,
        src=r"""
from rtrec.item_index import ItemIndex
def build(items, d, lists=None, **kw):
    ItemIndex.build(items, lists=lists).save(f"{d}/ivf.npz")
def load(d, **kw):
    return ItemIndex.load(f"{d}/ivf.npz")
def query(ix, q, k, n_probe=None, **kw):
    return ix.search(q, k, n_probe=n_probe)[0]
""",
    ),
    "rtrec.item_index IVF float32 rows (numpy)": dict(
        package=None,
        src=r"""
from rtrec.item_index import ItemIndex
def build(items, d, lists=None, **kw):
    ItemIndex.build(items, lists=lists).save(f"{d}/ivf.npz")
def load(d, **kw):
    return ItemIndex.load(f"{d}/ivf.npz").dequantize()
def query(ix, q, k, n_probe=None, **kw):
    return ix.search(q, k, n_probe=n_probe)[0]
""",
    ),
    "faiss IndexIVFFlat (IP)": dict(
        package="faiss-cpu",
        src=r"""
import faiss
faiss.omp_set_num_threads(1)
def build(items, d, lists=None, **kw):
    nl = lists or int(2 * len(items) ** 0.5)
    quant = faiss.IndexFlatIP(items.shape[1])
    ix = faiss.IndexIVFFlat(quant, items.shape[1], nl, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    ix.train(items[rng.choice(len(items), min(len(items), nl * 64), replace=False)])
    ix.add(items); faiss.write_index(ix, f"{d}/ivf.faiss")
def load(d, **kw):
    return faiss.read_index(f"{d}/ivf.faiss")
def query(ix, q, k, n_probe=None, **kw):
    ix.nprobe = n_probe or 32; return ix.search(q[None, :], k)[1][0]
""",
    ),
    "hnswlib (ip, M=16)": dict(
        package="hnswlib",
        src=r"""
import hnswlib
def build(items, d, **kw):
    ix = hnswlib.Index(space="ip", dim=items.shape[1])
    ix.init_index(len(items), M=16, ef_construction=64, random_seed=0)
    ix.add_items(items, num_threads=2); ix.save_index(f"{d}/h.bin")
def load(d, items_count=None, **kw):
    ix = hnswlib.Index(space="ip", dim=64); ix.load_index(f"{d}/h.bin"); ix.set_num_threads(1); return ix
def query(ix, q, k, ef=None, **kw):
    ix.set_ef(ef or 128); return ix.knn_query(q[None, :], k=k, num_threads=1)[0][0].astype(np.int64)
""",
    ),
    "usearch HNSW (ip, f32)": dict(
        package="usearch",
        src=r"""
from usearch.index import Index
def build(items, d, **kw):
    ix = Index(ndim=items.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=64)
    ix.add(np.arange(len(items)), items, threads=2); ix.save(f"{d}/u.usearch")
def load(d, **kw):
    ix = Index.restore(f"{d}/u.usearch"); return ix
def query(ix, q, k, ef=None, **kw):
    ix.expansion_search = ef or 128; return np.asarray(ix.search(q, k, threads=1).keys, dtype=np.int64)
""",
    ),
}

# phase "build": build in this process, report seconds; phase "serve": a fresh process imports + loads,
# then answers every query `rounds` times per setting, interleaving settings, reporting per-query times.
CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
args = json.loads(sys.argv[1])
ns = {"np": np}
exec(args["src"], ns)
t1 = time.perf_counter()
if args["phase"] == "build":
    items = np.load(args["items"])
    t = time.perf_counter(); ns["build"](items, args["dir"], **args.get("build_kw", {}))
    print(json.dumps({"build_s": time.perf_counter() - t,
                      "bytes": sum(os.path.getsize(os.path.join(args["dir"], f))
                                   for f in os.listdir(args["dir"]))}))
    sys.exit(0)
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
rss0 = rss_mb()
t2 = time.perf_counter()
index = ns["load"](args["dir"])
t3 = time.perf_counter()
queries = np.load(args["queries"])
first = time.perf_counter()
ns["query"](index, queries[0], args["k"], **args["settings"][0])
first = time.perf_counter() - first
rss1 = rss_mb()
out = {"import_s": t1 - t0, "load_s": t3 - t2, "first_query_ms": first * 1e3, "rss_mb": rss1,
       "rss_load_mb": rss1 - rss0, "settings": []}
for s in args["settings"]:
    for q in queries[:20]:
        ns["query"](index, q, args["k"], **s)
times = {i: [] for i in range(len(args["settings"]))}
ids = {i: [] for i in range(len(args["settings"]))}
for r in range(args["rounds"]):
    for i, q in enumerate(queries):
        for j, s in enumerate(args["settings"]):
            t = time.perf_counter(); got = ns["query"](index, q, args["k"], **s)
            times[j].append((time.perf_counter() - t) * 1e3)
            if r == 0: ids[j].append(np.asarray(got, dtype=np.int64)[: args["k"]].tolist())
for j, s in enumerate(args["settings"]):
    out["settings"].append({"setting": s, "ms": times[j], "ids": ids[j]})
print(json.dumps(out))
"""


def run_child(python: str, payload: dict) -> dict:
    env = {**os.environ, **ENV1, "PYTHONPATH": str(REPO_ROOT / "layers" / "core")}
    proc = subprocess.run([python, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def package_mb(python: str, package: str | None) -> float | None:
    if package is None:
        return 0.0
    code = (
        "import importlib.metadata as m, os, sys\n"
        "d = m.distribution(sys.argv[1]); base = d.locate_file('')\n"
        "print(sum(os.path.getsize(os.path.join(base, str(f))) for f in (d.files or [])"
        " if os.path.exists(os.path.join(base, str(f)))))"
    )
    proc = subprocess.run([python, "-c", code, package], capture_output=True, text=True)
    return int(proc.stdout) / 1e6 if proc.returncode == 0 else None


def importable(python: str, src: str) -> bool:
    head = "\n".join(line for line in src.splitlines() if line.startswith(("import ", "from ")))
    env = {**os.environ, **ENV1, "PYTHONPATH": str(REPO_ROOT / "layers" / "core")}
    return subprocess.run([python, "-c", head], capture_output=True, env=env).returncode == 0


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ann-python", default=str(DEFAULT_ANN_PYTHON))
    parser.add_argument("--only", nargs="*", help="substring(s) of candidate names to run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rtrec-scale-"))
    t = time.perf_counter()
    items, queries = synth(args.items, args.queries)
    np.save(work / "items.npy", items)
    np.save(work / "queries.npy", queries)
    truth = exact_topk(items, queries, K)
    print(
        f"synthetic catalogue {items.shape} + {len(queries)} queries, "
        f"exact top-{K} in {time.perf_counter() - t:.1f}s"
    )

    lists = max(1, round(2 * np.sqrt(args.items)))
    probes = [{"n_probe": max(1, int(lists * f))} for f in (0.03, 0.06, 0.1, 0.15)]
    efs = [{"ef": e} for e in (200, 400, 800)]
    settings = {
        "numpy brute force (float32)": [{}],
        "rtrec.item_index IVF int8 (numpy)": probes,
        "rtrec.item_index IVF float32 rows (numpy)": probes,
        "faiss IndexIVFFlat (IP)": probes,
        "hnswlib (ip, M=16)": efs,
        "usearch HNSW (ip, f32)": efs,
    }
    rows = []
    for name, spec in CANDIDATES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        python = sys.executable if spec["package"] is None else args.ann_python
        if not Path(python).exists() or not importable(python, spec["src"]):
            print(f"skip {name}: not importable in {python}")
            rows.append({"name": name, "skipped": f"not importable in {python}"})
            continue
        d = work / name.split()[0].replace(".", "_") / str(len(rows))
        d.mkdir(parents=True)
        base = {
            "src": spec["src"],
            "dir": str(d),
            "items": str(work / "items.npy"),
            "queries": str(work / "queries.npy"),
            "k": K,
            "rounds": args.rounds,
            "build_kw": {"lists": lists} if "IVF" in name else {},
        }
        built = run_child(python, {**base, "phase": "build"})
        served = run_child(python, {**base, "phase": "serve", "settings": settings[name]})
        for s in served["settings"]:
            ms = np.asarray(s["ms"])
            row = {
                "name": name,
                "setting": s["setting"],
                "package": spec["package"],
                "package_mb": package_mb(python, spec["package"]),
                "build_s": built["build_s"],
                "file_mb": built["bytes"] / 1e6,
                "import_ms": served["import_s"] * 1e3,
                "load_ms": served["load_s"] * 1e3,
                "first_query_ms": served["first_query_ms"],
                "rss_mb": served["rss_mb"],
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "recall@100": recall(s["ids"], truth),
            }
            rows.append(row)
            print(
                f"{name:36} {json.dumps(s['setting']):16} p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} "
                f"recall {row['recall@100']:.3f} build {row['build_s']:.1f}s load {row['load_ms']:.0f}ms "
                f"file {row['file_mb']:.0f}MB rss {row['rss_mb']:.0f}MB pkg {row['package_mb']}",
                flush=True,
            )
        for f in d.iterdir():
            f.unlink()

    print()
    header = (
        "| index | setting | pkg MB | build s | file MB | import ms | load ms | RSS MB | p50 ms | p99 ms "
        "| recall@100 | meets |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        if "skipped" in r:
            print(f"| {r['name']} | skipped: {r['skipped']} |")
            continue
        meets = r["p99_ms"] <= 5 and r["recall@100"] >= 0.95 and r["load_ms"] + r["import_ms"] <= 300
        print(
            f"| {r['name']} | {json.dumps(r['setting'])} | {r['package_mb'] or 0:.1f} | {r['build_s']:.1f} | "
            f"{r['file_mb']:.0f} | {r['import_ms']:.0f} | {r['load_ms']:.0f} | {r['rss_mb']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall@100']:.3f} | {'yes' if meets else 'no'} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    RESULTS.write_text(
        json.dumps(
            {
                "items": args.items,
                "dim": DIM,
                "k": K,
                "queries": args.queries,
                "lists": lists,
                "targets": {"p99_ms": 5, "recall@100": 0.95, "load_ms": 300, "lambda_unzipped_mb": 250},
                "machine": {"cpus": os.cpu_count(), "loadavg": load, "python": platform.python_version()},
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)} (load average {load[0]:.1f})")
    for f in work.glob("*.npy"):
        f.unlink()


if __name__ == "__main__":
    main()
