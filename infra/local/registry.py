"""The model registry on this machine: the template's ModelBucket and ModelPointer, made directly in moto.

moto's CloudFormation does not create the S3 bucket or the SSM parameter of the template here (the local
stack leaves both types out), so the recommend and ingest functions would find no pointer and keep the
layer's model. `create_registry` makes them under the very names the functions were given
(`MODEL_BUCKET`, `MODEL_POINTER`, resolved from the template by CloudFormation), the pointer set to
`bootstrap` as the template creates it. From then on the functions follow the pointer exactly as in
AWS (Powertools Parameters on SSM, versions downloaded from S3), and `scripts/publish_model.py`,
`scripts/rollback_model.py` and `python -m model_build.retrain` publish to it through the stack's
endpoint (`--endpoint-url`, or the stack's description file: `python -m infra.local.stack` writes one).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("local.registry")

BOOTSTRAP = "bootstrap"  # rtrec.registry.BOOTSTRAP, the template's initial pointer value


@dataclass(frozen=True)
class RegistryNames:
    bucket: str
    pointer: str


def registry_names(environments: Mapping[str, Mapping[str, str]]) -> RegistryNames | None:
    """The bucket and pointer the functions follow (by logical id: environment); None when none does.

    Every function that has both must have the same two: the local stack makes one registry.
    """
    found = {
        RegistryNames(env["MODEL_BUCKET"], env["MODEL_POINTER"])
        for env in environments.values()
        if env.get("MODEL_BUCKET") and env.get("MODEL_POINTER")
    }
    if len(found) > 1:
        raise ValueError(f"the functions follow different registries: {sorted(map(str, found))}")
    return next(iter(found), None)


def create_registry(s3: Any, ssm: Any, names: RegistryNames, region: str) -> None:
    """Create the bucket (versioned, as the template's) and the pointer (`bootstrap`) if missing."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if names.bucket not in existing:
        arguments: dict[str, Any] = {"Bucket": names.bucket}
        if region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**arguments)
        s3.put_bucket_versioning(Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"})
    with contextlib.suppress(ssm.exceptions.ParameterAlreadyExists):  # a restart keeps the pointer
        ssm.put_parameter(Name=names.pointer, Value=BOOTSTRAP, Type="String", Overwrite=False)
    log.info("model registry: s3://%s/models/, pointer %s", names.bucket, names.pointer)
