"""``python -m dataio SPEC``: load a data spec (movielens, ecommerce or a directory), print its summary.

Rows are validated as the model build would read them; ``--skip-invalid`` counts bad rows instead of
stopping at the first (file adapters only). Generate the e-commerce data with ``python -m dataio.synthetic``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "layers" / "core") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "layers" / "core"))  # rtrec, as in the Lambda layer

from dataio import adapter_for  # noqa: E402
from dataio.files import FileAdapter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataio", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="movielens, ecommerce, or a directory with interactions.* and items.*")
    parser.add_argument("--skip-invalid", action="store_true", help="count invalid rows instead of failing")
    args = parser.parse_args(argv)
    adapter = adapter_for(args.spec)
    if isinstance(adapter, FileAdapter):
        adapter.skip_invalid = args.skip_invalid
    started = time.perf_counter()
    summary = adapter.load().summary()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
