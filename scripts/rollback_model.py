"""Point the live model back at a version already in the registry (or at the layer's model).

    python scripts/rollback_model.py VERSION [--bucket B --pointer P | --stack-name S] [--endpoint-url URL]
    python scripts/rollback_model.py --list [...]

VERSION must have a manifest in s3://B/models/VERSION/ (``bootstrap`` = the model in the functions' layer).
Only the pointer moves: the recommend and ingest functions load that version within the pointer's max age,
and keep the one they have if it does not load. Without --bucket/--pointer they are read from the stack's
outputs (ModelBucketName, ModelPointerName).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT / "scripts"), str(REPO_ROOT)]

import boto3  # noqa: E402
from publish_model import add_registry_arguments, registry_names  # noqa: E402

from rtrec.registry import RegistryError, list_versions, read_pointer, rollback  # noqa: E402


def main(argv: list[str] | None = None, session: Any = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("version", nargs="?", help="a published version, or bootstrap")
    parser.add_argument("--list", action="store_true", help="list the published versions and the live one")
    add_registry_arguments(parser)
    args = parser.parse_args(argv)
    if not args.list and not args.version:
        parser.error("give a VERSION (or --list)")
    session = session or boto3.session.Session()
    bucket, pointer = registry_names(args, session)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    ssm = session.client("ssm", endpoint_url=args.endpoint_url)
    if args.list:
        live = read_pointer(ssm, pointer)
        for version in list_versions(s3, bucket):
            print(f"{'*' if version == live else ' '} {version}")
        print(f"live: {live}")
        return 0
    try:
        previous = rollback(args.version, bucket, s3, ssm, pointer)
    except RegistryError as error:
        print(f"not rolled back: {error}", file=sys.stderr)
        return 1
    print(f"{pointer} -> {args.version} (was {previous})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
