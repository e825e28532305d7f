"""`make retrain`: train a candidate on the event archive, gate it against the serving model, publish it.

    python -m model_build.retrain --archive DIR|s3://BUCKET[/PREFIX] (--days N | --since DAY [--until DAY])
        [--items FILE] [--holdout-days 1] [--epochs 8] [--tolerance 0.005] [--min-holdout 30]
        [--bucket B --pointer P | --stack-name S | --local-stack FILE] [--endpoint-url URL] [--dry-run]

1. **Data**: the archive's events over the window of UTC days (``--days N``: the N days ending today;
   ``--since/--until``: inclusive), read through ``dataio.archive.ArchiveAdapter`` (the ``archive:`` data
   spec, ``sql/interaction_sequences.sql`` on DuckDB: events only, de-duplicated). An ``s3://`` archive is
   copied first, only the window's ``events/kind=event/dt=<day>/`` partitions and ``catalog/items/``. The
   catalog is ``--items``, else the archive's catalog export (``catalog/items/``), else the items the
   events name, with the serving model's categories where it knows the item.
2. **Held-out slice**: the most recent ``--holdout-days`` days, counted back from the day of the newest event
   in the window. For every user whose last *new* item (first interaction with it, as ``model_build.data``
   defines targets) falls in those days, that interaction is the target and everything before it the
   history; it and anything after it are taken out of the training data. Other users' events in those days
   stay in training (they happened before the next model serves).
3. **Candidate**: ``model_build.train.train`` on the rest (the usual per-user leave-one-out inside it picks
   the best epoch on validation), exported dynamic-range as ``make model`` does.
4. **Gate**: the candidate and the serving model (the version the registry's pointer names, or the
   layer's bootstrap model when it says ``bootstrap`` or there is no registry) are both loaded through
   ``rtrec.scorer.Scorer`` and rank every item of their own catalog for each held-out user, with the same
   metric code (``model_build.metrics``). A target a model does not know (a vocabulary difference) is a
   miss for it; history items it does not know are left out of its input, as serving does. The candidate
   is published only if NDCG@10 >= serving NDCG@10 - ``--tolerance``.
5. **Publish**: ``rtrec.registry.publish`` (validation, upload, manifest, pointer). The manifest carries
   the data window, both models' numbers on the slice, its size and the gate's decision; every run's
   report also goes to ``s3://<bucket>/retrain-runs/`` and to stdout.

Exit codes, for a scheduler: 0 published (``--dry-run`` or no registry: the gate passed, nothing
published); 3 the gate refused the candidate; 4 not enough data (no events in the window, or fewer
held-out users than ``--min-holdout``); 1 any other error; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from model_build.metrics import summary, target_rank

log = logging.getLogger("retrain")

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_DIR = REPO_ROOT / "layers" / "model" / "model"
DEFAULT_OUT = REPO_ROOT / ".cache" / "retrain"
K = 10
GATE_METRIC = f"NDCG@{K}"
# Why a tolerance and not "strictly better": a scheduled retrain that ties the serving model within the
# held-out slice's noise should still ship, since it knows the items and habits of the newest days. A few
# hundred held-out users put the standard error of an NDCG@10 difference near 0.01; 0.005 (under 4 % of
# the shipped model's 0.129) lets a tie through and refuses a real regression. The report gives the
# paired standard error of each run, so the choice can be checked against the data.
DEFAULT_TOLERANCE = 0.005
DEFAULT_HOLDOUT_DAYS = 1
DEFAULT_MIN_HOLDOUT = 30
DEFAULT_EPOCHS = 8
ARTIFACT_MODE = "float32"  # as model_build.train exports (docs/ARCHITECTURE.md, "Model", "Export mode")
CATALOG_EXPORT = "catalog/items"
RUNS_PREFIX = "retrain-runs/"
DAY_MS = 86_400_000

EXIT_PUBLISHED = 0
EXIT_ERROR = 1
EXIT_REFUSED = 3
EXIT_NO_DATA = 4


class NotEnoughData(RuntimeError):
    """The window holds too little to train or to judge a candidate."""


# -- the window -------------------------------------------------------------------------------------
def window_days(
    days: int | None, since: str | None, until: str | None, today: date | None = None
) -> tuple[str, str]:
    """(first, last) UTC day of the window, inclusive, as 'yyyy-MM-dd'."""
    today = today or datetime.now(UTC).date()
    if days is not None:
        if since or until:
            raise ValueError("give --days or --since/--until, not both")
        if days < 1:
            raise ValueError("--days must be at least 1")
        return (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
    if not since:
        raise ValueError("give --days N or --since DAY")
    first = date.fromisoformat(since)
    last = date.fromisoformat(until) if until else today
    if last < first:
        raise ValueError("--until is before --since")
    return first.isoformat(), last.isoformat()


def each_day(first: str, last: str) -> list[str]:
    start, stop = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((stop - start).days + 1)]


def sync_archive(s3: Any, url: str, first: str, last: str, target: Path) -> Path:
    """Copy the window's event partitions and the catalog export of an archive in S3 under ``target``."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    wanted = [f"{prefix}events/kind=event/dt={day}/" for day in each_day(first, last)]
    wanted.append(f"{prefix}{CATALOG_EXPORT}/")
    paginator = s3.get_paginator("list_objects_v2")
    copied = 0
    for part in wanted:
        for page in paginator.paginate(Bucket=bucket, Prefix=part):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                destination = target / key[len(prefix) :]
                destination.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(destination))
                copied += 1
    log.info("copied %d objects of s3://%s/%s (%s .. %s) to %s", copied, bucket, prefix, first, last, target)
    return target


def catalog_export(root: Path) -> Path | None:
    """The archive's catalog export (``catalog/items/``, the import format), when there is one file."""
    files = sorted(p for p in (root / CATALOG_EXPORT).glob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) > 1:
        raise ValueError(f"{root / CATALOG_EXPORT} holds {len(files)} files; expected one catalog export")
    return files[0] if files else None


def load_window(root: Path, first: str, last: str, items_path: Path | None, known: Any = None) -> Any:
    """The window's dataset. Without a catalog file, items seen get ``known``'s categories (a Catalog)."""
    from dataio.archive import ArchiveAdapter

    dataset = ArchiveAdapter(root, first, last, items_path).load()
    if items_path is None and known is not None:
        items = [
            replace(item, categories=tuple(known.categories_of(item.item_id)))
            if known.index_of(item.item_id)
            else item
            for item in dataset.items
        ]
        dataset = replace(dataset, items=items, vocabulary=tuple(known.categories))
    return dataset


# -- the held-out slice -----------------------------------------------------------------------------
@dataclass
class HoldOut:
    """One target per held-out user: the history before it (oldest first) and the item."""

    user_ids: list[str] = field(default_factory=list)
    histories: list[list[Any]] = field(default_factory=list)  # rtrec.features.HistoryStep
    targets: list[str] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.targets)


def holdout_start_ms(dataset: Any, holdout_days: int) -> int:
    """Midnight UTC at the start of the last ``holdout_days`` days ending on the newest event's day."""
    newest = int(dataset.interactions.timestamps_ms.max())
    return (newest // DAY_MS - (holdout_days - 1)) * DAY_MS


def hold_out(dataset: Any, start_ms: int, min_history: int = 1) -> tuple[Any, HoldOut]:
    """(training dataset, held-out slice): each user's last new item at or after ``start_ms``, when the
    user has at least ``min_history`` new items before it; it and the user's later rows leave training."""
    from model_build.data import new_item_positions
    from rtrec.features import HistoryStep

    columns = dataset.interactions
    item_ids, types = columns.item_ids.tolist(), columns.types.tolist()
    values = [None if np.isnan(v) else float(v) for v in columns.values.tolist()]
    stamps = columns.timestamps_ms.tolist()
    keep = np.ones(len(columns), dtype=bool)
    held = HoldOut()
    for user_id, rows in columns.user_sequences().items():
        order = rows.tolist()
        steps = [HistoryStep(str(item_ids[r]), str(types[r]), values[r]) for r in order]
        new = new_item_positions(steps)
        if len(new) < min_history + 1:
            continue
        last = new[-1]
        if int(stamps[order[last]]) < start_ms:
            continue
        held.user_ids.append(str(user_id))
        held.histories.append(steps[:last])
        held.targets.append(steps[last].item_id)
        held.timestamps_ms.append(int(stamps[order[last]]))
        keep[order[last:]] = False
    return replace(dataset, interactions=columns.take(keep)), held


# -- the same metric for both models ----------------------------------------------------------------
def ranks_on(scorer: Any, holdout: HoldOut) -> np.ndarray:
    """0-based rank of each target among all of the model's items (seen ones excluded, ties pessimistic).

    A target the model does not know ranks last (a miss); unknown history items are left out of the
    model's input, as ``rtrec.features.encode_history`` does when serving.
    """
    from rtrec.features import encode_history

    catalog = scorer.catalog
    candidates = np.arange(1, len(catalog) + 1, dtype=np.int64)
    ranks = np.empty(len(holdout), dtype=np.int64)
    for row, (history, target) in enumerate(zip(holdout.histories, holdout.targets, strict=True)):
        target_index = catalog.index_of(target)
        if not target_index:
            ranks[row] = len(catalog)
            continue
        items, signals = encode_history(history, catalog)
        seen = np.array(sorted({catalog.index_of(s.item_id) for s in history} - {0}), dtype=np.int64)
        scores = np.concatenate([[-np.inf], scorer.score(items, signals, candidates).astype(np.float64)])
        ranks[row] = target_rank(scores, target_index, seen)
    return ranks


def per_user_ndcg(ranks: np.ndarray, k: int = K) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def gate(candidate_ranks: np.ndarray, serving_ranks: np.ndarray, tolerance: float) -> dict[str, Any]:
    """The decision and its numbers: publish when candidate NDCG@10 >= serving NDCG@10 - tolerance."""
    candidate, serving = summary(candidate_ranks, K), summary(serving_ranks, K)
    differences = per_user_ndcg(candidate_ranks) - per_user_ndcg(serving_ranks)
    n = len(differences)
    standard_error = float(np.std(differences, ddof=1) / np.sqrt(n)) if n > 1 else None
    passed = candidate[GATE_METRIC] >= serving[GATE_METRIC] - tolerance
    return {
        "metric": GATE_METRIC,
        "rule": f"candidate {GATE_METRIC} >= serving {GATE_METRIC} - tolerance",
        "tolerance": tolerance,
        "candidate": candidate,
        "serving": serving,
        "difference": candidate[GATE_METRIC] - serving[GATE_METRIC],
        "difference_standard_error": standard_error,
        "passed": bool(passed),
    }


# -- the candidate ----------------------------------------------------------------------------------
def train_candidate(
    dataset: Any,
    out_root: Path,
    epochs: int,
    learning_rate: float | None = None,
    encoder_units: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train on ``dataset``, export (with the co-occurrence blend); returns (artifact directory, metadata).

    TensorFlow is imported here, not before: a run without enough data says so at once.
    """
    from model_build import data as data_module
    from model_build import train as train_module
    from model_build.export import artifact_version, convert, write_artifact
    from model_build.model import ModelConfig, build_serving_model

    splits = data_module.leave_one_out(dataset)
    if not splits:
        raise NotEnoughData("no user in the training data has 3 new items: nothing to train on")
    catalog = data_module.build_catalog(dataset, splits)
    if not catalog.categories:
        raise NotEnoughData("the catalog has no categories (give --items or a catalog export)")
    prepared = {
        "catalog": catalog,
        "splits": splits,
        "train": data_module.training_examples(splits, catalog),
        "valid": data_module.validation_examples(splits, catalog),
    }
    if not len(prepared["train"].targets):
        raise NotEnoughData("no training examples in the window")
    config = ModelConfig(**({"encoder_units": encoder_units} if encoder_units else {}))
    learning_rate = learning_rate or train_module.LEARNING_RATE
    started = time.time()
    layers, _, history = train_module.train(prepared, epochs, config=config, learning_rate=learning_rate)
    seconds = time.time() - started
    export_model = build_serving_model(layers, batch_size=1)
    item_embeddings = layers.item_embedding.get_weights()[0]
    model_bytes = convert(export_model, ARTIFACT_MODE, train_module.representative_data(prepared["train"]))
    # The co-occurrence blend the API adds to the model's scores, chosen on this run's validation split as
    # `make model` does (the gate compares the models alone, so the blend does not sway it).
    from model_build import cooccurrence

    neighbours, blend_entry = cooccurrence.attach(
        prepared, train_module.load_scorer(model_bytes, prepared, item_embeddings)
    )
    version = artifact_version(
        model_bytes, catalog, item_embeddings, ARTIFACT_MODE, neighbours, blend_entry.get("serving")
    )
    summary_ = dataset.summary()
    metadata = {
        "version": version,
        "quantization": ARTIFACT_MODE,
        "shortlist_size": train_module.SHORTLIST_SIZE,
        **train_module.artifact_signature(catalog, item_embeddings),
        "data": {
            "source": dataset.name,
            "fingerprint": dataset.fingerprint,
            "split": "the held-out slice removed (model_build.retrain), then leave-one-out per user",
            "interactions": summary_["interactions"],
            "users": len(splits),
            "items": len(catalog),
            "categories": len(catalog.categories),
        },
        "training": {
            "entry_point": "model_build.retrain",
            "epochs": epochs,
            "seconds": round(seconds, 1),
            "learning_rate": learning_rate,
            "seed": train_module.SEED,
            "config": asdict(layers.config),
            "validation_history": history,
        },
        "cooccurrence": blend_entry,
    }
    out_root.mkdir(parents=True, exist_ok=True)
    target = out_root / version
    scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=out_root))
    write_artifact(scratch, model_bytes, catalog, item_embeddings, metadata, neighbours)
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target, metadata


# -- the registry -----------------------------------------------------------------------------------
@dataclass
class Registry:
    """Where candidates are published: the model bucket and the pointer, with clients for them."""

    s3: Any
    ssm: Any
    bucket: str
    pointer: str


def registry_from(args: argparse.Namespace, session: Any = None) -> Registry | None:
    """--bucket/--pointer, a running local stack (--local-stack), or the stack's outputs (--stack-name);
    None when none is given, or --local-stack names no running stack (nothing to publish to)."""
    import boto3

    endpoint = args.endpoint_url
    bucket, pointer = args.bucket, args.pointer
    if args.local_stack and not (bucket and pointer):  # names given on the command line win
        path = Path(args.local_stack)
        if not path.exists():
            return None
        described = json.loads(path.read_text())
        registry = described.get("model_registry") or {}
        bucket, pointer = bucket or registry.get("bucket"), pointer or registry.get("pointer")
        endpoint = endpoint or described.get("aws_endpoint_url")
        if not (bucket and pointer and endpoint):
            return None
    session = session or boto3.session.Session()
    if not (bucket and pointer):
        if not args.stack_name:
            return None
        cloudformation = session.client("cloudformation", endpoint_url=endpoint)
        stack = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        bucket, pointer = bucket or outputs["ModelBucketName"], pointer or outputs["ModelPointerName"]
    return Registry(
        session.client("s3", endpoint_url=endpoint),
        session.client("ssm", endpoint_url=endpoint),
        bucket,
        pointer,
    )


def load_serving(registry: Registry | None, bootstrap_dir: Path, cache_dir: Path) -> tuple[str, str, Any]:
    """(version, where from, scorer) of the model serving now: the pointer's version, else the bootstrap."""
    from rtrec.registry import BOOTSTRAP, ModelSource, read_pointer
    from rtrec.scorer import Scorer

    pointer = read_pointer(registry.ssm, registry.pointer) if registry else None
    if registry is not None and pointer and pointer != BOOTSTRAP:
        scorer = ModelSource(registry.s3, registry.bucket, cache_dir).load(pointer)
        return pointer, f"s3://{registry.bucket}/models/{pointer}/", scorer
    scorer = Scorer.load(bootstrap_dir)
    return scorer.version, "bootstrap (the model layer)", scorer


# -- the run ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model_build.retrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--archive", required=True, help="the archive's root: a directory or s3://bucket[/prefix]"
    )
    parser.add_argument("--days", type=int, help="the window: the N UTC days ending today")
    parser.add_argument("--since", help="the window's first day, yyyy-MM-dd (instead of --days)")
    parser.add_argument("--until", help="the window's last day, yyyy-MM-dd (default: today)")
    parser.add_argument(
        "--items", type=Path, help="the catalog (an items file); default: the archive's export"
    )
    parser.add_argument(
        "--holdout-days", type=int, default=DEFAULT_HOLDOUT_DAYS, help="the held-out slice's days"
    )
    parser.add_argument(
        "--min-holdout", type=int, default=DEFAULT_MIN_HOLDOUT, help="fewest held-out users to judge"
    )
    parser.add_argument(
        "--tolerance", type=float, default=DEFAULT_TOLERANCE, help=f"gate: allowed {GATE_METRIC} drop"
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: model_build.train's")
    parser.add_argument("--encoder-units", type=int, default=None, help="a smaller encoder (tests)")
    parser.add_argument("--bootstrap-dir", type=Path, default=BOOTSTRAP_DIR, help="the layer's model")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where candidates are written")
    parser.add_argument("--report", type=Path, help="also write the run's report (JSON) here")
    parser.add_argument("--dry-run", action="store_true", help="train and gate, publish nothing")
    parser.add_argument("--bucket", help="the model bucket (stack output ModelBucketName)")
    parser.add_argument("--pointer", help="the pointer parameter (stack output ModelPointerName)")
    parser.add_argument("--stack-name", help="read the bucket and pointer from this stack's outputs")
    parser.add_argument("--local-stack", help="a running local stack's description (infra.local.stack)")
    parser.add_argument("--endpoint-url", help="a local S3/SSM (moto) instead of AWS")
    args = parser.parse_args(argv)
    if args.holdout_days < 1 or args.min_holdout < 1 or args.epochs < 1 or args.tolerance < 0:
        parser.error("--holdout-days, --min-holdout and --epochs must be positive, --tolerance not negative")
    try:
        args.window = window_days(args.days, args.since, args.until)
    except ValueError as error:
        parser.error(str(error))
    return args


def run(args: argparse.Namespace, session: Any = None) -> tuple[int, dict[str, Any]]:
    """The whole retraining; returns (exit code, report)."""
    from rtrec.registry import publish, validate_artifact

    first, last = args.window
    report: dict[str, Any] = {
        "started_at": _now(),
        "archive": str(args.archive),
        "window": {"first_day": first, "last_day": last},
    }
    registry = registry_from(args, session)
    report["registry"] = {"bucket": registry.bucket, "pointer": registry.pointer} if registry else None
    with tempfile.TemporaryDirectory(prefix="rtrec-retrain-") as scratch:
        root = Path(args.archive)
        if str(args.archive).startswith("s3://"):
            import boto3

            s3 = (session or boto3.session.Session()).client("s3", endpoint_url=args.endpoint_url)
            root = sync_archive(s3, str(args.archive), first, last, Path(scratch) / "archive")
        serving_version, serving_from, serving = load_serving(
            registry, args.bootstrap_dir, Path(scratch) / "models"
        )
        report["serving"] = {"version": serving_version, "from": serving_from}
        items_path = args.items or catalog_export(root)
        dataset = load_window(root, first, last, items_path, known=serving.catalog)
        if not len(dataset.interactions):
            raise NotEnoughData(f"no events in {root} between {first} and {last}")
        start_ms = holdout_start_ms(dataset, args.holdout_days)
        training, holdout = hold_out(dataset, start_ms)
        report["data"] = {
            **{k: v for k, v in dataset.summary().items() if k != "types"},
            "catalog": str(items_path) if items_path else "items of the events",
        }
        report["holdout"] = {
            "rule": f"each user's last new item on or after {_iso(start_ms)} (the last {args.holdout_days} "
            "day(s) up to the newest event), history = everything before it",
            "from": _iso(start_ms),
            "users": len(holdout),
        }
        if len(holdout) < args.min_holdout:
            raise NotEnoughData(
                f"{len(holdout)} held-out users since {_iso(start_ms)}, "
                f"fewer than --min-holdout {args.min_holdout}"
            )
        log.info(
            "window %s..%s: %d interactions, %d held out; serving %s",
            first,
            last,
            len(dataset.interactions),
            len(holdout),
            serving_version,
        )
        with contextlib.redirect_stdout(sys.stderr):  # Keras' progress lines: stdout is the report
            candidate_dir, metadata = train_candidate(
                training, args.out, args.epochs, args.learning_rate, args.encoder_units
            )
        from rtrec.scorer import Scorer

        candidate = Scorer.load(candidate_dir)
        decision = gate(ranks_on(candidate, holdout), ranks_on(serving, holdout), args.tolerance)
        decision["serving_version"] = serving_version
        decision["candidate_version"] = candidate.version
        decision["holdout_users"] = len(holdout)
        decision["candidate_knows_targets"] = sum(
            bool(candidate.catalog.index_of(t)) for t in holdout.targets
        )
        decision["serving_knows_targets"] = sum(bool(serving.catalog.index_of(t)) for t in holdout.targets)
        report["candidate"] = {
            "version": candidate.version,
            "dir": str(candidate_dir),
            **metadata["training"],
        }
        report["gate"] = decision
        if not decision["passed"]:
            report["outcome"] = "refused"
            code = EXIT_REFUSED
        elif args.dry_run or registry is None:
            report["outcome"] = (
                "passed, not published (" + ("--dry-run" if args.dry_run else "no registry") + ")"
            )
            code = EXIT_PUBLISHED
        else:
            data_window = {
                "first_day": first,
                "last_day": last,
                "first_event": _iso(int(dataset.interactions.timestamps_ms.min())),
                "last_event": _iso(int(dataset.interactions.timestamps_ms.max())),
                "holdout_from": _iso(start_ms),
                "archive": str(args.archive),
                "fingerprint": dataset.fingerprint,
                "interactions": len(dataset.interactions),
                "training_interactions": len(training.interactions),
            }
            manifest = publish(
                candidate_dir,
                registry.bucket,
                registry.s3,
                registry.ssm,
                registry.pointer,
                {
                    "data_window": data_window,
                    "metrics": {
                        "holdout": {
                            "users": len(holdout),
                            "candidate": decision["candidate"],
                            "serving": decision["serving"],
                            "serving_version": serving_version,
                        },
                        "validation_history": metadata["training"]["validation_history"],
                    },
                    "gate": decision,
                    "training": {k: v for k, v in metadata["training"].items() if k != "validation_history"},
                },
                validate=validate_artifact,
            )
            report["outcome"] = "published"
            report["manifest"] = manifest.to_json()
            code = EXIT_PUBLISHED
    report["finished_at"] = _now()
    if registry is not None:
        _store_report(registry, report)
    return code, report


def _store_report(registry: Registry, report: dict[str, Any]) -> None:
    """Every run's report next to the versions (refused candidates have no manifest to say why)."""
    outcome = str(report.get("outcome", "error")).split(" ")[0].rstrip(",")
    key = f"{RUNS_PREFIX}{report['started_at'].replace(':', '')}-{outcome}.json"
    try:
        registry.s3.put_object(
            Bucket=registry.bucket,
            Key=key,
            Body=json.dumps(report, indent=2, sort_keys=True, default=str).encode(),
            ContentType="application/json",
        )
    except Exception as error:  # the outcome stands; the copy of its report is a convenience
        log.warning("the run's report was not stored in s3://%s/%s: %s", registry.bucket, key, error)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None, session: Any = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s retrain %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        code, report = run(args, session)
    except NotEnoughData as error:
        print(f"retrain: not enough data: {error}", file=sys.stderr)
        code, report = EXIT_NO_DATA, {"outcome": "not enough data", "reason": str(error)}
    except Exception as error:
        log.exception("retrain failed")
        code, report = EXIT_ERROR, {"outcome": "error", "reason": f"{type(error).__name__}: {error}"}
    text = json.dumps(report, indent=2, sort_keys=True, default=str)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    print(text)
    gate_ = report.get("gate") or {}
    if gate_:
        print(
            f"retrain: {report['outcome']}: candidate {gate_['candidate_version']} {GATE_METRIC} "
            f"{gate_['candidate'][GATE_METRIC]:.4f} vs serving {gate_['serving_version']} "
            f"{gate_['serving'][GATE_METRIC]:.4f} on {gate_['holdout_users']} held-out users "
            f"(tolerance {gate_['tolerance']})",
            file=sys.stderr,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
