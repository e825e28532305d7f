"""MovieLens-100k from the recbole==1.2.1 wheel: fetch, verify, parse.

The dataset is never committed (its licence forbids redistribution): it is fetched from PyPI inside
the recbole wheel, checked against a pinned sha256 and cached under .cache/data.
``MovieLensAdapter`` gives it as a ``dataio.dataset.Dataset`` (the adapter interface);
``load_movielens`` and ``parse_dataset`` stay for their existing callers.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataio.dataset import Dataset, InteractionColumns
from rtrec.catalog import validate_item

WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
DATASET_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
DATA_DIR = Path(__file__).resolve().parent.parent / ".cache" / "data"
TIME_CUTOFF_QUANTILE = 0.8

# MovieLens-100k's genre vocabulary in the dataset's own order: ``Interactions.catalog_genre_ids`` index
# into it. It belongs to this dataset, not to the core (whose categories come from the data).
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_INDEX: dict[str, int] = {name: i for i, name in enumerate(GENRES)}


class ChecksumMismatch(RuntimeError):
    """The downloaded wheel is not the one whose checksum we pinned."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(work_dir: Path = DATA_DIR) -> Path:
    """Download the recbole wheel (no dependencies) once and verify its sha256."""
    work_dir.mkdir(parents=True, exist_ok=True)
    wheel = work_dir / WHEEL_NAME
    if not wheel.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                WHEEL_REQUIREMENT,
                "-d",
                str(work_dir),
            ],
            check=True,
        )
    actual = sha256_of(wheel)
    if actual != WHEEL_SHA256:
        raise ChecksumMismatch(f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256}")
    return wheel


@dataclass
class Interactions:
    """All ratings in file order, plus the item table (titles are never read)."""

    user_ids: np.ndarray  # str
    item_ids: np.ndarray  # str
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64
    catalog_item_ids: list[str]
    catalog_genre_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.user_ids)


def _columns(header: str) -> dict[str, int]:
    return {name.split(":")[0]: i for i, name in enumerate(header.split("\t"))}


def titles_from_wheel(wheel: Path) -> dict[str, str]:
    """Movie titles ("Title (year)") by item id, read from the dataset wheel (never written anywhere)."""
    with zipfile.ZipFile(wheel) as archive:
        lines = archive.read(f"{DATASET_PREFIX}.item").decode("latin-1").splitlines()
    columns = _columns(lines[0])
    titles = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) <= columns["movie_title"]:
            continue
        title = fields[columns["movie_title"]]
        year = fields[columns["release_year"]] if len(fields) > columns["release_year"] else ""
        titles[fields[columns["item_id"]]] = f"{title} ({year})" if year else title
    return titles


def parse_dataset(inter_text: str, item_text: str) -> Interactions:
    """Parse RecBole atomic files (.inter and .item, tab-separated with typed headers)."""
    inter_lines = inter_text.splitlines()
    cols = _columns(inter_lines[0])
    rows = [line.split("\t") for line in inter_lines[1:] if line.strip()]
    user_ids = np.array([r[cols["user_id"]] for r in rows], dtype=object)
    item_ids = np.array([r[cols["item_id"]] for r in rows], dtype=object)
    ratings = np.array([float(r[cols["rating"]]) for r in rows], dtype=np.float32)
    timestamps = np.array([int(float(r[cols["timestamp"]])) for r in rows], dtype=np.int64)

    item_lines = item_text.splitlines()
    icols = _columns(item_lines[0])
    catalog: list[tuple[str, list[int]]] = []
    for line in item_lines[1:]:
        if not line.strip():
            continue
        fields = line.split("\t")
        genre_field = fields[icols["class"]] if len(fields) > icols["class"] else ""
        genres = sorted({GENRE_INDEX[g] for g in genre_field.split() if g in GENRE_INDEX})
        catalog.append((fields[icols["item_id"]], genres or [GENRE_INDEX["unknown"]]))
    catalog.sort(key=lambda entry: int(entry[0]) if entry[0].isdigit() else entry[0])
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=ratings,
        timestamps=timestamps,
        catalog_item_ids=[c[0] for c in catalog],
        catalog_genre_ids=[c[1] for c in catalog],
    )


def load_movielens(work_dir: Path = DATA_DIR) -> tuple[Interactions, str]:
    """Fetch (if needed), verify and parse ml-100k; returns the data and the wheel's sha256."""
    wheel = fetch_wheel(work_dir)
    with zipfile.ZipFile(wheel) as archive:
        inter = archive.read(f"{DATASET_PREFIX}.inter").decode("latin-1")
        item = archive.read(f"{DATASET_PREFIX}.item").decode("latin-1")
    return parse_dataset(inter, item), WHEEL_SHA256


def time_cutoff(data: Interactions, quantile: float = TIME_CUTOFF_QUANTILE) -> int:
    """Global timestamp cutoff for the streaming replay: events at or before it are 'history'."""
    return int(np.quantile(data.timestamps, quantile, method="lower"))


def as_dataset(data: Interactions, fingerprint: str, name: str = "movielens-100k") -> Dataset:
    """The parsed ratings as a ``Dataset``: type ``rating``, value = stars, seconds -> milliseconds.

    Items carry their genre names as categories (``unknown`` when none); titles are never read. The
    vocabulary is ``GENRES`` in the dataset's order.
    """
    interactions = InteractionColumns(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        types=np.full(len(data), "rating", dtype=object),
        values=data.ratings.astype(np.float32),
        timestamps_ms=data.timestamps.astype(np.int64) * 1000,
    )
    items = [
        validate_item({"item_id": item_id, "categories": [GENRES[g] for g in genre_ids]}, now_ms=0)
        for item_id, genre_ids in zip(data.catalog_item_ids, data.catalog_genre_ids, strict=True)
    ]
    return Dataset(
        name=name, interactions=interactions, items=items, fingerprint=fingerprint, vocabulary=GENRES
    )


@dataclass
class MovieLensAdapter:
    """MovieLens-100k as a ``Dataset`` (fetched from the pinned recbole wheel, cached under ``work_dir``).

    The fingerprint is the wheel's pinned sha256. Items have ``created_at`` 0 (unknown).
    """

    work_dir: Path = DATA_DIR

    def load(self) -> Dataset:
        data, sha256 = load_movielens(self.work_dir)
        return as_dataset(data, sha256)
