"""rtrec.registry on moto S3 + SSM: publish, manifest, rollback, download and validation, the watcher."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from rtrec import registry
from rtrec.registry import (
    BOOTSTRAP,
    Manifest,
    ModelSource,
    ModelWatcher,
    RegistryError,
    object_key,
    publish,
    read_manifest,
    read_pointer,
    rollback,
    validate_artifact,
)
from rtrec.scorer import Scorer

MODEL_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "model"
BUCKET = "test-models"
POINTER = "/rtrec/test/model-pointer"
LAYER_VERSION = json.loads((MODEL_DIR / "metadata.json").read_text())["version"]


def model_variant(
    root: Path, version: str, *, rename_items: int = 0, rename_category: str | None = None
) -> Path:
    """A copy of the shipped artifact under another version; optionally with another vocabulary
    (the first ``rename_items`` item ids and the first category renamed: same shapes, so it still serves)."""
    target = root / version
    shutil.copytree(MODEL_DIR, target)
    metadata = json.loads((target / "metadata.json").read_text())
    metadata["version"] = version
    (target / "metadata.json").write_text(json.dumps(metadata))
    if rename_items or rename_category:
        items = json.loads((target / "items.json").read_text())
        key = "categories" if "categories" in items else "genres"
        for n in range(rename_items):
            items["item_ids"][n] = f"new-{items['item_ids'][n]}"
        if rename_category:
            items[key][0] = rename_category
        (target / "items.json").write_text(json.dumps(items))
    return target


@pytest.fixture
def clients(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=POINTER, Value=BOOTSTRAP, Type="String")
    return s3, ssm


def shipped_files() -> list[str]:
    """The artifact's files: the required ones and the optional ones it has (e.g. a co-occurrence blend)."""
    optional = [name for name in registry.OPTIONAL_FILES if (MODEL_DIR / name).exists()]
    return [*registry.MODEL_FILES, *optional]


def test_publish_uploads_under_the_content_version_with_a_manifest_and_moves_the_pointer(clients, tmp_path):
    s3, ssm = clients
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    window = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-29T00:00:00Z", "events": 12345}
    metrics = {"NDCG@10": 0.13}
    manifest = publish(
        MODEL_DIR,
        BUCKET,
        s3,
        ssm,
        POINTER,
        {"data_window": window, "metrics": metrics, "trainer": "make model"},
        now=lambda: when,
    )
    assert read_pointer(ssm, POINTER) == LAYER_VERSION
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {object_key(LAYER_VERSION, n) for n in (*shipped_files(), registry.MANIFEST)}
    stored = json.loads(
        s3.get_object(Bucket=BUCKET, Key=object_key(LAYER_VERSION, "manifest.json"))["Body"].read()
    )
    assert stored["version"] == LAYER_VERSION
    assert stored["created_at"] == "2026-11-30T12:00:00Z"
    assert stored["parent"] == BOOTSTRAP  # the pointer before
    assert (
        stored["data_window"] == window and stored["metrics"] == metrics and stored["trainer"] == "make model"
    )
    assert stored["files"]["model.tflite"]["bytes"] == (MODEL_DIR / "model.tflite").stat().st_size
    assert set(stored["files"]) == set(shipped_files())
    assert Manifest.from_json(stored) == manifest == read_manifest(s3, BUCKET, LAYER_VERSION)
    assert registry.list_versions(s3, BUCKET) == [LAYER_VERSION]


def test_the_next_version_names_the_live_one_as_its_parent(clients, tmp_path):
    s3, ssm = clients
    publish(MODEL_DIR, BUCKET, s3, ssm, POINTER)
    second = publish(model_variant(tmp_path, "v2"), BUCKET, s3, ssm, POINTER)
    assert second.parent == LAYER_VERSION and second.data_window is None
    assert read_pointer(ssm, POINTER) == "v2"


def test_a_missing_pointer_is_no_parent(aws, tmp_path):
    s3, ssm = boto3.client("s3"), boto3.client("ssm")
    s3.create_bucket(Bucket=BUCKET)
    assert read_pointer(ssm, POINTER) is None
    assert publish(MODEL_DIR, BUCKET, s3, ssm, POINTER).parent is None
    assert read_pointer(ssm, POINTER) == LAYER_VERSION


def test_a_version_names_one_content(clients, tmp_path):
    s3, ssm = clients
    publish(MODEL_DIR, BUCKET, s3, ssm, POINTER)
    again = publish(MODEL_DIR, BUCKET, s3, ssm, POINTER)  # same files: only the pointer moves
    assert again.version == LAYER_VERSION
    impostor = model_variant(tmp_path, LAYER_VERSION, rename_items=1)
    with pytest.raises(RegistryError, match="other content"):
        publish(impostor, BUCKET, s3, ssm, POINTER)


def test_publish_validates_before_uploading(clients, tmp_path):
    s3, ssm = clients
    broken = model_variant(tmp_path, "broken")
    (broken / "model.tflite").write_bytes((broken / "model.tflite").read_bytes()[:1000])
    with pytest.raises(RegistryError, match="does not load"):
        publish(broken, BUCKET, s3, ssm, POINTER, validate=validate_artifact)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert read_pointer(ssm, POINTER) == BOOTSTRAP


def test_rollback_moves_the_pointer_back_to_a_version_that_exists(clients, tmp_path):
    s3, ssm = clients
    publish(MODEL_DIR, BUCKET, s3, ssm, POINTER)
    publish(model_variant(tmp_path, "v2"), BUCKET, s3, ssm, POINTER)
    assert rollback(LAYER_VERSION, BUCKET, s3, ssm, POINTER) == "v2"
    assert read_pointer(ssm, POINTER) == LAYER_VERSION
    with pytest.raises(RegistryError, match="not in"):
        rollback("v9", BUCKET, s3, ssm, POINTER)
    assert read_pointer(ssm, POINTER) == LAYER_VERSION
    assert rollback(BOOTSTRAP, BUCKET, s3, ssm, POINTER) == LAYER_VERSION
    assert read_pointer(ssm, POINTER) == BOOTSTRAP


@pytest.mark.parametrize("version", ["", "a/b", "../x", BOOTSTRAP, "x" * 200])
def test_versions_are_one_safe_path_segment(version):
    with pytest.raises(RegistryError):
        registry.check_version(version)


def test_model_source_downloads_checks_and_loads_a_version(clients, tmp_path):
    s3, ssm = clients
    publish(model_variant(tmp_path / "src", "v2"), BUCKET, s3, ssm, POINTER)
    source = ModelSource(s3, BUCKET, tmp_path / "cache")
    scorer = source.load("v2")
    assert isinstance(scorer, Scorer) and scorer.version == "v2"
    assert sorted(p.name for p in (tmp_path / "cache" / "v2").iterdir()) == sorted(shipped_files())
    assert source.fetch("v2") == tmp_path / "cache" / "v2"  # already there and intact: no download
    source.prune({"other"})
    assert not (tmp_path / "cache" / "v2").exists()
    with pytest.raises(RegistryError, match="not in the registry"):
        source.load("v404")


def _publish_unchecked(s3, ssm, artifact: Path) -> str:
    """Publish without validation, as a broken pipeline could."""
    return publish(artifact, BUCKET, s3, ssm, POINTER).version


def test_a_truncated_model_is_refused_and_removed(clients, tmp_path):
    s3, ssm = clients
    broken = model_variant(tmp_path / "src", "truncated")
    (broken / "model.tflite").write_bytes((broken / "model.tflite").read_bytes()[:4096])
    _publish_unchecked(s3, ssm, broken)
    source = ModelSource(s3, BUCKET, tmp_path / "cache")
    with pytest.raises(RegistryError, match="does not load"):
        source.load("truncated")
    assert not (tmp_path / "cache" / "truncated").exists()


def test_an_items_table_that_does_not_match_the_embeddings_is_refused(clients, tmp_path):
    s3, ssm = clients
    broken = model_variant(tmp_path / "src", "extra-item")
    items = json.loads((broken / "items.json").read_text())
    items["item_ids"].append("one-too-many")
    items["category_ids" if "category_ids" in items else "genre_ids"].append([0])
    items["popularity"].append(0.0)
    (broken / "items.json").write_text(json.dumps(items))
    _publish_unchecked(s3, ssm, broken)
    with pytest.raises(RegistryError, match="does not match"):
        ModelSource(s3, BUCKET, tmp_path / "cache").load("extra-item")


def test_files_changed_after_publishing_are_refused(clients, tmp_path):
    s3, ssm = clients
    publish(model_variant(tmp_path / "src", "v2"), BUCKET, s3, ssm, POINTER)
    s3.put_object(Bucket=BUCKET, Key=object_key("v2", "items.json"), Body=b"{}")
    with pytest.raises(RegistryError, match="do not match the manifest"):
        ModelSource(s3, BUCKET, tmp_path / "cache").fetch("v2")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_the_smoke_scoring_refuses_non_finite_scores(tmp_path):
    class NaNScorer:
        def __init__(self, real):
            self.real, self.version, self.catalog = real, real.version, real.catalog

        def interests(self, items, signals):
            return self.real.interests(items, signals)

        def score(self, items, signals, candidates):
            return self.real.score(items, signals, candidates) * float("nan")

    with pytest.raises(RegistryError, match="smoke"):
        validate_artifact(MODEL_DIR, loader=lambda path: NaNScorer(Scorer.load(path)))
    with pytest.raises(RegistryError, match="expected"):
        validate_artifact(MODEL_DIR, "some-other-version")


# ---------- ModelWatcher ----------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(pointer: dict, loads: list, failures: list, clock: Clock, fail: set = frozenset()):
    def load(version: str) -> str:
        loads.append(version)
        if version in fail:
            raise RegistryError(f"{version} is broken")
        return f"model {version}"

    def read() -> str | None:
        if isinstance(pointer["value"], Exception):
            raise pointer["value"]
        return pointer["value"]

    return ModelWatcher(
        read,
        load,
        lambda: "layer model",
        loaded_version="layer-v",
        bootstrap_version="layer-v",
        check_every_s=60,
        on_failure=lambda kind, message, error: failures.append((kind, message)),
        retry_after_s=300,
        clock=clock,
    )


def test_the_watcher_swaps_when_the_pointer_moves_and_looks_at_most_once_per_interval():
    pointer, loads, failures, clock = {"value": BOOTSTRAP}, [], [], Clock()
    w = watcher(pointer, loads, failures, clock)
    assert w.poll() is None  # bootstrap = the layer's model, already loaded
    pointer["value"] = "v2"
    clock.now += 59
    assert w.poll() is None  # not looked at yet
    clock.now += 1
    swap = w.poll()
    assert swap is not None and (swap.version, swap.model) == ("v2", "model v2")
    assert w.loaded_version == "v2" and loads == ["v2"]
    clock.now += 60
    assert w.poll() is None and loads == ["v2"]
    pointer["value"] = BOOTSTRAP  # rollback to the layer's model
    clock.now += 60
    swap = w.poll()
    assert swap is not None and (swap.version, swap.model) == ("layer-v", "layer model")
    assert failures == []


def test_the_watcher_keeps_the_loaded_model_when_a_version_fails_and_retries_later():
    pointer, loads, failures, clock = {"value": "bad"}, [], [], Clock()
    w = watcher(pointer, loads, failures, clock, fail={"bad"})
    assert w.poll() is None
    assert w.loaded_version == "layer-v" and failures == [
        ("load", "model version bad failed to load; keeping layer-v")
    ]
    for _ in range(4):  # not tried again (nor reported again) before retry_after_s
        clock.now += 60
        assert w.poll() is None
    assert loads == ["bad"] and len(failures) == 1
    clock.now += 60
    assert w.poll() is None and loads == ["bad", "bad"] and len(failures) == 2
    pointer["value"] = "good"  # the pointer moves on: tried at once
    clock.now += 60
    assert w.poll().version == "good"


def test_an_unreadable_or_missing_pointer_keeps_the_loaded_model():
    pointer, loads, failures, clock = {"value": RuntimeError("ssm down")}, [], [], Clock()
    w = watcher(pointer, loads, failures, clock)
    assert w.poll() is None and failures == [("pointer", "the model pointer cannot be read")]
    pointer["value"] = None
    clock.now += 60
    assert w.poll() is None and loads == [] and w.loaded_version == "layer-v"


def test_the_cached_pointer_reads_a_missing_parameter_as_none_and_lets_other_errors_through(clients):
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    _s3, ssm = clients
    provider = SSMProvider(boto3_client=ssm)
    read = registry.cached_pointer(provider.get, POINTER, 60)
    assert read() == BOOTSTRAP
    ssm.put_parameter(Name=POINTER, Value="v2", Type="String", Overwrite=True)
    assert read() == BOOTSTRAP  # cached for its max age: no SSM call per request
    assert registry.cached_pointer(provider.get, "/no/such/pointer", 60)() is None

    def unreachable(name, max_age):
        raise ConnectionError("ssm unreachable")

    with pytest.raises(ConnectionError):
        registry.cached_pointer(unreachable, POINTER, 60)()


# ---------- the operator scripts (make publish-model, make rollback) ----------


def _script(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rtrec_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_and_rollback_scripts(clients, tmp_path, capsys):
    _s3, ssm = clients
    publish_model, rollback_model = _script("publish_model"), _script("rollback_model")
    names = ["--bucket", BUCKET, "--pointer", POINTER]
    assert publish_model.main(["--dir", str(MODEL_DIR), *names, "--window-end", "2026-11-29T00:00:00Z"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["version"] == LAYER_VERSION and manifest["parent"] == BOOTSTRAP
    assert manifest["data_window"]["end"] == "2026-11-29T00:00:00Z"
    window = manifest["data_window"]  # from metadata.json's data (seconds in artifacts built before ms)
    assert window.get("time_cutoff_ms", window.get("time_cutoff", 0) * 1000) == 889237269000
    assert manifest["metrics"]["test_quantized"]["NDCG@10"] > 0.1
    assert publish_model.main(["--dir", str(model_variant(tmp_path, "v2")), *names]) == 0
    assert read_pointer(ssm, POINTER) == "v2"
    broken = model_variant(tmp_path, "v3")
    (broken / "model.tflite").write_bytes(b"not a model")
    assert publish_model.main(["--dir", str(broken), *names]) == 1  # validated first: nothing moves
    assert read_pointer(ssm, POINTER) == "v2"
    capsys.readouterr()
    assert rollback_model.main([LAYER_VERSION, *names]) == 0
    assert read_pointer(ssm, POINTER) == LAYER_VERSION
    assert rollback_model.main(["v9", *names]) == 1
    assert rollback_model.main(["--list", *names]) == 0
    listing = capsys.readouterr().out
    assert f"* {LAYER_VERSION}" in listing and "  v2" in listing and "v3" not in listing


def test_lazy_builds_once_on_first_use():
    built = []
    lazy = registry.Lazy(lambda: built.append(1) or "client")
    assert built == []
    assert lazy() == "client" and lazy() == "client" and built == [1]
