"""Data sources shared by the model build, the local tools and the evaluation (no service code).

Every source is a ``DataAdapter`` whose ``load()`` gives a ``dataio.dataset.Dataset``; ``adapter_for(spec)``:

- ``movielens``: ``dataio.movielens.MovieLensAdapter``, MovieLens-100k (fetched, verified, never committed);
- ``ecommerce``: the generated e-commerce dataset (``dataio.synthetic`` with its default parameters),
  generated into ``.cache/data/ecommerce`` on first use and read by ``FileAdapter``;
- a directory: ``dataio.files.FileAdapter`` over its ``interactions.*`` and ``items.*`` (JSONL, CSV, Parquet);
- ``archive:<root>[?from=yyyy-MM-dd&to=yyyy-MM-dd&items=<items file>]``: ``dataio.archive.ArchiveAdapter``,
  the event archive (Firehose's S3 layout, or the local stack's ``.cache/archive``) over a window of days.

Submodules are imported only when used: ``import dataio`` loads nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataio.dataset import DataAdapter

SPECS = ("movielens", "ecommerce", "<directory>", "archive:<root>")


def adapter_for(spec: str) -> DataAdapter:
    """The adapter a data spec names: movielens, ecommerce, a directory or archive:<root> (module doc)."""
    name = spec.strip()
    if name.lower().startswith("archive:"):
        return _archive_adapter(name[len("archive:") :])
    if name.lower() in ("movielens", "ml-100k", "movielens-100k"):
        from dataio.movielens import MovieLensAdapter

        return MovieLensAdapter()
    from dataio.files import FileAdapter, find_data_files

    if name.lower() == "ecommerce":
        from dataio import synthetic

        interactions, items = find_data_files(synthetic.ensure(synthetic.DEFAULT_OUT))
        return FileAdapter(interactions, items, name="ecommerce")
    path = Path(name).expanduser()
    if path.is_dir():
        interactions, items = find_data_files(path)
        return FileAdapter(interactions, items)
    raise ValueError(
        f"unknown data spec {spec!r}: expected 'movielens', 'ecommerce', 'archive:<root>' or a directory "
        "holding interactions.{jsonl,jsonl.gz,csv,csv.gz,parquet} and items.{...}"
    )


def _archive_adapter(rest: str) -> DataAdapter:
    """``<root>[?from=...&to=...&items=...]`` -> ``ArchiveAdapter``; unknown options are an error."""
    from urllib.parse import parse_qs

    from dataio.archive import ArchiveAdapter

    root, _, query = rest.partition("?")
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"from", "to", "items"})
    if not root or unknown:
        raise ValueError(f"archive spec: expected archive:<root>[?from=&to=&items=], got {rest!r}")
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise ValueError(f"archive spec: {root_path} is not a directory")
    return ArchiveAdapter(
        root_path, options.get("from") or None, options.get("to") or None, options.get("items") or None
    )
