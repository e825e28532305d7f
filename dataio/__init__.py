"""Data sources shared by the model build, the local tools and the evaluation (no service code).

Every source is a ``DataAdapter`` whose ``load()`` gives a ``dataio.dataset.Dataset``; ``adapter_for(spec)``:

- ``movielens``: ``dataio.movielens.MovieLensAdapter``, MovieLens-100k (fetched, verified, never committed);
- ``ecommerce``: the generated e-commerce dataset (``dataio.synthetic`` with its default parameters),
  generated into ``.cache/data/ecommerce`` on first use and read by ``FileAdapter``;
- a directory: ``dataio.files.FileAdapter`` over its ``interactions.*`` and ``items.*`` (JSONL, CSV, Parquet).

Submodules are imported only when used: ``import dataio`` loads nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataio.dataset import DataAdapter

SPECS = ("movielens", "ecommerce", "<directory>")


def adapter_for(spec: str) -> DataAdapter:
    """The adapter a data spec names: ``movielens``, ``ecommerce`` or a directory (see the module doc)."""
    name = spec.strip()
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
        f"unknown data spec {spec!r}: expected 'movielens', 'ecommerce' or a directory holding "
        "interactions.{jsonl,jsonl.gz,csv,csv.gz,parquet} and items.{...}"
    )
