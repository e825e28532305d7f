"""The model registry: versions in S3, a pointer in SSM naming the live one, and the hot swap.

Layout: ``s3://<bucket>/models/<version>/{model.tflite,items.json,metadata.json,item_embeddings.npz,
manifest.json}``, where ``<version>`` is the artifact's content version (metadata.json's ``version``).
The manifest is written last, so a version without one is incomplete and is never loaded. The pointer
(an SSM String parameter) holds a version, or ``bootstrap``: the model shipped in the function's layer.

- ``publish`` uploads an artifact under its version with a manifest (version, created_at, parent = the
  pointer before, per-file sha256 and size, data window and metrics when given) and moves the pointer.
- ``rollback`` moves the pointer to a version that exists (or to ``bootstrap``).
- ``ModelSource`` downloads a version to a local directory (Lambda's /tmp), checks it against its
  manifest and validates it (``validate_artifact``: it loads, has the serving signature, and a smoke
  scoring gives finite scores of the right shape) before anyone serves it.
- ``ModelWatcher`` reads the pointer at most every ``check_every_s`` and hands back a newly loaded
  model when it names another version; on any failure the caller keeps what it has.

boto3 only through injected clients: the functions and scripts pass theirs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from rtrec.features import SEQUENCE_LENGTH

if TYPE_CHECKING:
    from rtrec.settings import ModelRegistrySettings

MODEL_FILES = ("model.tflite", "items.json", "metadata.json", "item_embeddings.npz")
# Shipped when the model build made one (large catalogues): travels with its version like the rest.
OPTIONAL_FILES = ("item_index.npz", "cooccurrence.npz")  # the second: rtrec.cooccurrence's neighbours
MANIFEST = "manifest.json"
PREFIX = "models/"
# The pointer value meaning "the model in the function's layer" (also the template's initial value).
BOOTSTRAP = "bootstrap"
DEFAULT_CACHE_DIR = "/tmp/models"  # Lambda's only writable directory
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

T = TypeVar("T")


class RegistryError(RuntimeError):
    """A registry operation was refused: unknown version, inconsistent content, invalid artifact."""


def object_key(version: str, name: str) -> str:
    return f"{PREFIX}{version}/{name}"


def check_version(version: str) -> str:
    """A version usable as one S3 path segment and one directory name (``bootstrap`` is reserved)."""
    if not _VERSION.match(version) or version == BOOTSTRAP or ".." in version:
        raise RegistryError(f"invalid model version {version!r}")
    return version


def artifact_version(artifact_dir: str | Path) -> str:
    """The content version of a model artifact: metadata.json's ``version``."""
    metadata = json.loads((Path(artifact_dir) / "metadata.json").read_text())
    return check_version(str(metadata["version"]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of each artifact file; a missing file is a RegistryError."""
    out: dict[str, dict[str, Any]] = {}
    for name in MODEL_FILES:
        path = Path(artifact_dir) / name
        if not path.is_file():
            raise RegistryError(f"{name} is missing from {artifact_dir}")
        out[name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    for name in OPTIONAL_FILES:
        path = Path(artifact_dir) / name
        if path.is_file():
            out[name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    return out


@dataclass(frozen=True)
class Manifest:
    """What a registry version is: where it came from and what it measured."""

    version: str
    created_at: str
    parent: str | None
    files: dict[str, dict[str, Any]]
    data_window: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "version": self.version,
            "created_at": self.created_at,
            "parent": self.parent,
            "files": self.files,
        }
        if self.data_window is not None:
            out["data_window"] = self.data_window
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        known = {"version", "created_at", "parent", "files", "data_window", "metrics"}
        return cls(
            version=str(data["version"]),
            created_at=str(data["created_at"]),
            parent=None if data.get("parent") is None else str(data["parent"]),
            files=dict(data["files"]),
            data_window=data.get("data_window"),
            metrics=data.get("metrics"),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _is_missing(error: Exception, *codes: str) -> bool:
    response = getattr(error, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in codes or type(error).__name__ in codes


def read_pointer(ssm: Any, pointer_name: str) -> str | None:
    """The pointer's value; None when the parameter does not exist (other errors propagate)."""
    try:
        value = ssm.get_parameter(Name=pointer_name)["Parameter"]["Value"]
    except Exception as error:
        if _is_missing(error, "ParameterNotFound"):
            return None
        raise
    return str(value).strip() or None


def cached_pointer(get: Callable[..., Any], pointer_name: str, max_age_s: int) -> Callable[[], str | None]:
    """The pointer through a caching getter (Powertools ``SSMProvider.get``: one SSM call per max age).

    A parameter that does not exist reads as None (nothing to follow: the loaded model stays, quietly);
    other errors propagate to the watcher, which reports them.
    """

    def read() -> str | None:
        try:
            value = get(pointer_name, max_age=max_age_s)
        except Exception as error:
            if "ParameterNotFound" in f"{error} {error.__cause__}":
                return None
            raise
        return None if value is None else str(value).strip()

    return read


def move_pointer(ssm: Any, pointer_name: str, version: str) -> None:
    ssm.put_parameter(Name=pointer_name, Value=version, Type="String", Overwrite=True)


def read_manifest(s3: Any, bucket: str, version: str) -> Manifest | None:
    """The manifest of a version; None when the version is not (completely) in the registry."""
    try:
        body = s3.get_object(Bucket=bucket, Key=object_key(check_version(version), MANIFEST))["Body"].read()
    except Exception as error:
        if _is_missing(error, "NoSuchKey", "404", "NotFound"):
            return None
        raise
    return Manifest.from_json(json.loads(body))


def publish(
    artifact_dir: str | Path,
    bucket: str,
    s3: Any,
    ssm: Any,
    pointer_name: str,
    manifest_extra: Mapping[str, Any] | None = None,
    *,
    validate: Callable[[Path, str], Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Manifest:
    """Upload ``artifact_dir`` under its content version with a manifest, then move the pointer to it.

    ``manifest_extra`` may carry ``data_window`` and ``metrics`` (and any other JSON fields). The same
    version published again with the same files only moves the pointer; with other files it is refused
    (a version names one content). ``validate(dir, version)`` runs before anything is uploaded.
    """
    artifact_dir = Path(artifact_dir)
    version = artifact_version(artifact_dir)
    files = file_digests(artifact_dir)
    if validate is not None:
        validate(artifact_dir, version)
    parent = read_pointer(ssm, pointer_name)
    existing = read_manifest(s3, bucket, version)
    if existing is not None:
        if existing.files != files:
            raise RegistryError(f"version {version} is already in the registry with other content")
        manifest = existing
    else:
        extra = dict(manifest_extra or {})
        manifest = Manifest(
            version=version,
            created_at=now().isoformat(timespec="seconds").replace("+00:00", "Z"),
            parent=parent,
            files=files,
            data_window=extra.pop("data_window", None),
            metrics=extra.pop("metrics", None),
            extra={k: v for k, v in extra.items() if k not in ("version", "created_at", "parent", "files")},
        )
        for name in files:
            s3.upload_file(str(artifact_dir / name), bucket, object_key(version, name))
        # Last: a version is complete once its manifest exists.
        s3.put_object(
            Bucket=bucket,
            Key=object_key(version, MANIFEST),
            Body=json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )
    move_pointer(ssm, pointer_name, version)
    return manifest


def rollback(version: str, bucket: str, s3: Any, ssm: Any, pointer_name: str) -> str | None:
    """Point at ``version`` (or ``bootstrap``, the layer's model) after checking it exists; returns the
    previous pointer value."""
    if version != BOOTSTRAP and read_manifest(s3, bucket, version) is None:
        raise RegistryError(f"version {version!r} is not in s3://{bucket}/{PREFIX}")
    previous = read_pointer(ssm, pointer_name)
    move_pointer(ssm, pointer_name, version)
    return previous


def list_versions(s3: Any, bucket: str) -> list[str]:
    """Versions with a manifest (complete ones), in key order."""
    versions: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for item in page.get("Contents", []):
            key = str(item["Key"])
            if key.endswith("/" + MANIFEST):
                versions.append(key[len(PREFIX) : -len(MANIFEST) - 1])
    return versions


def validate_artifact(
    model_dir: str | Path, expected_version: str | None = None, loader: Callable[[Path], Any] | None = None
) -> Any:
    """Load the artifact and prove it serves; returns the loaded scorer, raises RegistryError otherwise.

    Checks: it loads (``Scorer.load`` checks the signature's tensor names and that the embeddings match
    items.json), its version is the expected one, the interest head covers the catalog's categories, and
    a smoke scoring of a short history returns finite scores of the right shape.
    """
    model_dir = Path(model_dir)
    if loader is None:
        from rtrec.scorer import Scorer

        loader = Scorer.load
    try:
        scorer = loader(model_dir)
    except Exception as error:
        raise RegistryError(f"the artifact does not load: {type(error).__name__}: {error}") from error
    if expected_version is not None and str(scorer.version) != expected_version:
        raise RegistryError(f"metadata.json says {scorer.version!r}, expected {expected_version!r}")
    try:
        _smoke(scorer)
    except RegistryError:
        raise
    except Exception as error:
        raise RegistryError(f"smoke scoring failed: {type(error).__name__}: {error}") from error
    return scorer


def _smoke(scorer: Any) -> None:
    catalog = scorer.catalog
    count = len(catalog)
    if count < 1:
        raise RegistryError("the catalog is empty")
    items = np.zeros(SEQUENCE_LENGTH, dtype=np.int32)
    history = np.arange(1, min(count, 5) + 1, dtype=np.int32)
    items[-history.size :] = history
    signals = np.where(items > 0, 4, 0).astype(np.int32)
    interests = np.asarray(scorer.interests(items, signals))
    if interests.shape != (len(catalog.categories),) or not np.isfinite(interests).all():
        raise RegistryError("the interest head does not match the catalog's categories")
    candidates = np.arange(1, min(count, 8) + 1, dtype=np.int64)
    scores = np.asarray(scorer.score(items, signals, candidates))
    if scores.shape != candidates.shape or not np.isfinite(scores).all():
        raise RegistryError("smoke scoring returned malformed scores")
    top = min(count, 10)
    indices, retrieved = scorer.retrieve(items, signals, top)
    indices, retrieved = np.asarray(indices), np.asarray(retrieved)
    if (
        indices.shape != retrieved.shape
        or indices.size == 0
        or not np.isfinite(retrieved).all()
        or indices.min() < 1
        or indices.max() > count
    ):
        raise RegistryError("smoke retrieval returned malformed candidates")


class ModelSource:
    """Registry versions as local, validated artifacts: download, verify against the manifest, load."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        loader: Callable[[Path], Any] | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.cache_dir = Path(cache_dir)
        self.loader = loader

    def fetch(self, version: str) -> Path:
        """``<cache_dir>/<version>/`` with the version's files, each checked against the manifest."""
        version = check_version(version)
        target = self.cache_dir / version
        manifest = read_manifest(self.s3, self.bucket, version)
        if manifest is None:
            raise RegistryError(f"version {version!r} is not in the registry")
        if target.is_dir():
            try:
                if file_digests(target) == manifest.files:
                    return target
            except RegistryError:
                pass
            shutil.rmtree(target, ignore_errors=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache_dir))
        try:
            for name in manifest.files:
                self.s3.download_file(self.bucket, object_key(version, name), str(scratch / name))
            if file_digests(scratch) != manifest.files:
                raise RegistryError(f"version {version}: the files do not match the manifest")
            scratch.rename(target)  # whole or not at all
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target

    def load(self, version: str) -> Any:
        """The version's scorer, validated; RegistryError (or the download's error) otherwise."""
        path = self.fetch(version)
        try:
            return validate_artifact(path, version, self.loader)
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def prune(self, keep: set[str]) -> None:
        """Remove downloaded versions other than ``keep`` (/tmp is small and shared by every version)."""
        if not self.cache_dir.is_dir():
            return
        for entry in self.cache_dir.iterdir():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)


class Lazy(Generic[T]):
    """A value built on first use: the functions' registry clients cost nothing at init (cold start)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None

    def __call__(self) -> T:
        if self._value is None:
            self._value = self._factory()
        return self._value


@dataclass
class Swap(Generic[T]):
    """A newly loaded model and the version it is."""

    version: str
    model: T


class ModelWatcher(Generic[T]):
    """Follows the pointer: at most one look every ``check_every_s``, never per request.

    ``poll()`` returns a ``Swap`` when the pointer names a version other than the loaded one and it
    loaded; ``None`` otherwise. The pointer's ``bootstrap`` (or an empty value) is the layer's model,
    loaded with ``load_bootstrap``. A pointer that cannot be read, or a parameter that does not exist,
    keeps the loaded model. A version that failed to load is not tried again for ``retry_after_s``
    (unless the pointer moves), and every failure is reported once to ``on_failure``.
    """

    def __init__(
        self,
        read_pointer: Callable[[], str | None],
        load: Callable[[str], T],
        load_bootstrap: Callable[[], T],
        loaded_version: str,
        bootstrap_version: str,
        check_every_s: float,
        on_failure: Callable[[str, str, BaseException], None],
        *,
        retry_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_pointer = read_pointer
        self.load = load
        self.load_bootstrap = load_bootstrap
        self.loaded_version = loaded_version
        self.bootstrap_version = bootstrap_version
        self.check_every_s = check_every_s
        self.on_failure = on_failure
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._next_check: float | None = None
        self._failed: dict[str, float] = {}  # version -> when it may be tried again

    def poll(self) -> Swap[T] | None:
        now = self.clock()
        if self._next_check is not None and now < self._next_check:
            return None
        self._next_check = now + self.check_every_s
        try:
            pointer = self.read_pointer()
        except Exception as error:
            self.on_failure("pointer", "the model pointer cannot be read", error)
            return None
        if pointer is None:
            return None
        wanted = self.bootstrap_version if pointer in ("", BOOTSTRAP) else pointer
        if wanted == self.loaded_version:
            return None
        retry_at = self._failed.get(wanted)
        if retry_at is not None and now < retry_at:
            return None
        try:
            model = self.load_bootstrap() if wanted == self.bootstrap_version else self.load(wanted)
        except Exception as error:
            self._failed = {wanted: now + self.retry_after_s}
            self.on_failure(
                "load", f"model version {wanted} failed to load; keeping {self.loaded_version}", error
            )
            return None
        self._failed.pop(wanted, None)
        self.loaded_version = wanted
        return Swap(wanted, model)


def watch_registry(
    registry: ModelRegistrySettings,
    load: Callable[[ModelSource, str], T],
    load_bootstrap: Callable[[], T],
    loaded_version: str,
    bootstrap_version: str,
    on_failure: Callable[[str, str, BaseException], None],
) -> ModelWatcher[T]:
    """A function's watcher on the registry's pointer, with clients made at the first look.

    The pointer is read through Powertools Parameters (cached for the pointer's max age) on an SSM
    client with the registry's timeouts; S3 and SSM clients are built on first use, so cold starts do
    not pay for them. ``load`` turns a downloaded, validated version into the function's model.
    """
    from rtrec.stores.clients import aws_client

    def ssm_provider() -> Any:
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        return SSMProvider(boto3_client=aws_client("ssm", registry.ssm))

    pointers = Lazy(ssm_provider)
    source = Lazy(lambda: ModelSource(aws_client("s3", registry.s3), registry.bucket, registry.cache_dir))
    return ModelWatcher(
        cached_pointer(lambda *a, **k: pointers().get(*a, **k), registry.pointer, registry.pointer_max_age_s),
        lambda version: load(source(), version),
        load_bootstrap,
        loaded_version=loaded_version,
        bootstrap_version=bootstrap_version,
        check_every_s=registry.pointer_max_age_s,
        on_failure=on_failure,
    )
