"""Publish a model artifact to the registry and make it the live version.

    python scripts/publish_model.py [--dir layers/model/model] [--bucket B --pointer P | --stack-name rtrec]
        [--window-start ISO --window-end ISO] [--endpoint-url URL]

The artifact is validated first (it loads, has the serving signature, a smoke scoring gives finite scores),
then uploaded to s3://B/models/<version>/ (version = metadata.json's `version`, the content version) with
a manifest (version, created_at, parent = the version live before, data window, metrics, file hashes), and
the pointer P (an SSM parameter) is moved to it. The recommend and ingest functions follow the pointer within
its max age (MODEL_POINTER_MAX_AGE_S), without a redeploy. Without --bucket/--pointer they are read from the
stack's outputs (ModelBucketName, ModelPointerName). Prints the manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]

import boto3  # noqa: E402

from rtrec.registry import RegistryError, publish, validate_artifact  # noqa: E402


def registry_names(args: argparse.Namespace, session: Any) -> tuple[str, str]:
    """--bucket and --pointer, or the stack's ModelBucketName and ModelPointerName outputs."""
    if args.bucket and args.pointer:
        return args.bucket, args.pointer
    cloudformation = session.client("cloudformation", endpoint_url=args.endpoint_url)
    stack = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return args.bucket or outputs["ModelBucketName"], args.pointer or outputs["ModelPointerName"]


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", help="the model bucket (stack output ModelBucketName)")
    parser.add_argument("--pointer", help="the pointer parameter's name (stack output ModelPointerName)")
    parser.add_argument("--stack-name", default="rtrec", help="where to read them when not given (rtrec)")
    parser.add_argument("--endpoint-url", help="a local S3/SSM (moto server) instead of AWS")


def manifest_extra(model_dir: Path, start: str | None, end: str | None) -> dict[str, Any]:
    """Data window and metrics for the manifest: given, else what the artifact's metadata.json records."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    window: dict[str, Any] = dict(metadata.get("data") or {})
    if start:
        window["start"] = start
    if end:
        window["end"] = end
    extra: dict[str, Any] = {}
    if window:
        extra["data_window"] = window
    if metadata.get("metrics"):
        extra["metrics"] = metadata["metrics"]
    return extra


def main(argv: list[str] | None = None, session: Any = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir", type=Path, default=REPO_ROOT / "layers" / "model" / "model", help="the artifact"
    )
    parser.add_argument("--window-start", help="first event the model was trained on (ISO 8601)")
    parser.add_argument("--window-end", help="last event the model was trained on (ISO 8601)")
    add_registry_arguments(parser)
    args = parser.parse_args(argv)
    session = session or boto3.session.Session()
    bucket, pointer = registry_names(args, session)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    ssm = session.client("ssm", endpoint_url=args.endpoint_url)
    try:
        manifest = publish(
            args.dir,
            bucket,
            s3,
            ssm,
            pointer,
            manifest_extra(args.dir, args.window_start, args.window_end),
            validate=validate_artifact,
        )
    except RegistryError as error:
        print(f"not published: {error}", file=sys.stderr)
        return 1
    print(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
    print(f"{pointer} -> {manifest.version} (was {manifest.parent})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
