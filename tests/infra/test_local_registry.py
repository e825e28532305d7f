"""The local stack's model registry: the bucket and pointer the template declares, made in moto, followed by
the running functions exactly as in AWS (publish, hot swap, rollback over HTTP, no restart)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local.registry import RegistryNames, registry_names
from infra.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
LAYER_VERSION = json.loads((MODEL_DIR / "metadata.json").read_text())["version"]

pytestmark = pytest.mark.slow


def test_registry_names_come_from_the_functions_that_follow_one():
    both = {"MODEL_BUCKET": "b", "MODEL_POINTER": "/s/model-pointer"}
    assert registry_names({"R": both, "I": both, "C": {"MODEL_BUCKET": "", "OTHER": "x"}}) == RegistryNames(
        "b", "/s/model-pointer"
    )
    assert registry_names({"C": {}}) is None
    with pytest.raises(ValueError, match="different registries"):
        registry_names({"R": both, "I": {**both, "MODEL_BUCKET": "other"}})


def _version(stack: LocalStack, user: str) -> str:
    request = urllib.request.Request(
        stack.api_url + "/v1/recommendations?k=3", headers={"Authorization": f"Bearer {stack.token(user)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["model_version"])


def _answers_with(stack: LocalStack, wanted: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _version(stack, "someone") == wanted:
            return True
        time.sleep(0.2)
    return False


def test_the_running_stack_follows_its_registry_pointer(tmp_path):
    from scripts.publish_model import main as publish_main
    from scripts.rollback_model import main as rollback_main

    variant = tmp_path / "v-local-2"
    shutil.copytree(MODEL_DIR, variant)
    metadata = json.loads((variant / "metadata.json").read_text())
    metadata["version"] = "v-local-2"
    (variant / "metadata.json").write_text(json.dumps(metadata))

    with LocalStack(environment={"MODEL_POINTER_MAX_AGE_S": "1"}) as stack:
        try:
            names = stack.model_registry
            assert names is not None and stack.describe()["model_registry"] == {
                "bucket": names.bucket,
                "pointer": names.pointer,
            }
            clients = stack.clients("s3", "ssm")
            assert clients["ssm"].get_parameter(Name=names.pointer)["Parameter"]["Value"] == "bootstrap"
            assert clients["s3"].head_bucket(Bucket=names.bucket)
            recommend = stack.functions["RecommendFunction"].environment
            assert (recommend["MODEL_BUCKET"], recommend["MODEL_POINTER"]) == (names.bucket, names.pointer)
            assert _version(stack, "someone") == LAYER_VERSION

            registry = [
                "--bucket",
                names.bucket,
                "--pointer",
                names.pointer,
                "--endpoint-url",
                stack.aws_endpoint_url,
            ]
            assert publish_main(["--dir", str(variant), *registry]) == 0
            assert _answers_with(stack, "v-local-2")
            assert rollback_main(["bootstrap", *registry]) == 0
            assert _answers_with(stack, LAYER_VERSION)
        finally:
            # moto's server keeps its state in this process's backends: leave none for the next stack.
            reset = urllib.request.Request(stack.aws_endpoint_url + "/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=30).close()
