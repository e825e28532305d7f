"""Run the template's Lambda handlers in this process, the way the Lambda runtime would.

Each function gets its template environment (Globals merged, intrinsics resolved
to the local resources), its layers on the import path (as /opt/python is in
Lambda), and a context object. Invocations of one function are serialised: one
warm container per function, so a handler's module-level state (clients, model
interpreter) is never used by two threads at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.local.template import ACCOUNT_ID, STACK_NAME, FunctionSpec, Resolver, Template

log = logging.getLogger("local.lambda")

_LAYER_MOUNT = "/opt/"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_s: int
    started: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))


class LocalFunction:
    """One function of the template: its handler, imported once, invoked serially."""

    def __init__(self, spec: FunctionSpec, root: Path, region: str) -> None:
        self.spec = spec
        self.root = root
        self.name = f"{STACK_NAME}-{spec.logical_id}"
        self.arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.name}"
        self._handler: Callable[[dict, Any], Any] | None = None
        self.module: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import the handler module (after the environment is in place, as at a cold start)."""
        module_name, _, function_name = self.spec.handler.rpartition(".")
        code_dir = (self.root / self.spec.code_uri).resolve()
        output = _handler_output.running(self.spec.logical_id) if _handler_output else nullcontext()
        with output:
            module = _import_handler_module(self.root, code_dir, module_name)
        self.module = module
        self._handler = getattr(module, function_name)

    def invoke(self, event: dict) -> Any:
        """Call the handler with `event`; exceptions propagate (a function error)."""
        if self._handler is None:
            self.load()
        output = _handler_output.running(self.spec.logical_id) if _handler_output else nullcontext()
        with self._lock, output:
            context = LambdaContext(
                function_name=self.name,
                memory_limit_in_mb=self.spec.memory_mb,
                invoked_function_arn=self.arn,
                aws_request_id=str(uuid.uuid4()),
                timeout_s=self.spec.timeout_s,
                started=time.monotonic(),
                log_group_name=f"/aws/lambda/{self.name}",
            )
            return self._handler(event, context)


def _import_handler_module(root: Path, code_dir: Path, module_name: str):
    """Import `module_name` from `code_dir`, as a package module when the repo layout allows it.

    Importing `functions.collect.app` (rather than a bare `app`) keeps several
    functions' `app` modules apart in one process.
    """
    try:
        relative = code_dir.relative_to(root)
    except ValueError:
        relative = None
    if relative is not None and all(
        (root.joinpath(*relative.parts[: i + 1]) / "__init__.py").exists() for i in range(len(relative.parts))
    ):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module(".".join((*relative.parts, module_name)))
    unique = f"_local_lambda_{abs(hash(code_dir))}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, code_dir / f"{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module


def function_environment(spec: FunctionSpec, template: Template, resolver: Resolver) -> dict[str, str]:
    """The function's environment with references resolved and /opt paths mapped to the layers' sources."""
    layer_dirs = layer_directories(spec, template, resolver)
    env = {}
    for key, value in resolver(spec.environment).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text.startswith(_LAYER_MOUNT):
            mapped = _map_layer_path(text, layer_dirs)
            if mapped is None:
                # The path lives in a layer this function does not have: it cannot use it in
                # Lambda either, and must not override a function that does have the layer.
                continue
            text = mapped
        env[key] = text
    return env


def layer_directories(spec: FunctionSpec, template: Template, resolver: Resolver) -> list[Path]:
    """Source folders of the function's layers (ContentUri of each AWS::Serverless::LayerVersion)."""
    dirs = []
    for layer in spec.layers:
        logical_id = layer.get("Ref") if isinstance(layer, dict) else None
        resource = template.resources.get(logical_id or "")
        if not resource or resource.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        content = resolver(resource.get("Properties", {}).get("ContentUri"))
        if isinstance(content, str):
            dirs.append((template.root / content).resolve())
    return dirs


def layer_import_paths(layer_dirs: list[Path]) -> list[Path]:
    """What Lambda puts on sys.path from a layer: its python/ folder; a source layer holds packages itself."""
    return [d / "python" if (d / "python").is_dir() else d for d in layer_dirs]


def _map_layer_path(path: str, layer_dirs: list[Path]) -> str | None:
    relative = path[len(_LAYER_MOUNT) :]
    for layer_dir in layer_dirs:
        candidate = layer_dir / relative
        if candidate.exists():
            return str(candidate)
    return None


def prepare_process(paths: list[Path], env: dict[str, str]) -> dict[str, str | None]:
    """Put layer folders on the import path and the environment in os.environ (before any import).

    Returns the previous values, for restore_environment.
    """
    for path in paths:
        if path.is_dir() and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return previous


def restore_environment(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class HandlerOutput(io.TextIOBase):
    """stdout shared by all functions in one terminal: each handler line is prefixed with its function.

    Handlers write Powertools JSON logs and EMF metric lines to stdout, as in Lambda. EMF lines
    (CloudWatch metrics, meaningless locally) can be dropped to keep a demo readable.
    """

    def __init__(self, target: Any, drop_metrics: bool = False) -> None:
        super().__init__()
        self._target = target
        self._drop_metrics = drop_metrics
        self._local = threading.local()
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        function = getattr(self._local, "function", None)
        if function is None:
            with self._lock:
                return self._target.write(text)
        *lines, self._local.pending = (self._local.pending + text).split("\n")
        for line in lines:
            self._emit(function, line)
        return len(text)

    def _emit(self, function: str, line: str) -> None:
        if not line or (self._drop_metrics and line.startswith('{"_aws"')):
            return
        with self._lock:
            self._target.write(f"{function:<17}| {line}\n")
            self._target.flush()

    def flush(self) -> None:
        self._target.flush()

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        """Attribute this thread's output to `function` for the duration of the block."""
        previous = getattr(self._local, "function", None)
        self._local.function, self._local.pending = function, ""
        try:
            yield
        finally:
            if self._local.pending:
                self._emit(function, self._local.pending)
            self._local.function, self._local.pending = previous, ""


_handler_output: HandlerOutput | None = None


def install_handler_output(drop_metrics: bool = False) -> None:
    """Route handler stdout through a HandlerOutput (before the handlers are imported)."""
    global _handler_output
    if _handler_output is None:
        _handler_output = HandlerOutput(sys.stdout, drop_metrics)
        sys.stdout = _handler_output


def uninstall_handler_output() -> None:
    global _handler_output
    if _handler_output is not None and sys.stdout is _handler_output:
        sys.stdout = _handler_output._target
    _handler_output = None
