"""Run the template's Lambda handlers in this process, the way the Lambda runtime would.

`load_functions` is the one place that wires them, for the local stack, the in-process
harness and the tests: each function gets its environment by one rule (the template's, as
CloudFormation resolved it: Globals < the function's own; then the caller's overrides), its
layers on the import path (as /opt/python is in Lambda, /opt paths mapped to the layers'
sources) and a context object. Invocations of one function are serialised: one warm container
per function, so a handler's module-level state is never used by two threads at once.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from infra.local.aws import DeployedFunction, Deployment, deploy
from infra.local.template import FunctionSpec, Template

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
    """One function of the template: its handler, imported once with its environment, invoked serially."""

    def __init__(
        self, spec: FunctionSpec, deployed: DeployedFunction, root: Path, environment: dict[str, str]
    ) -> None:
        self.spec = spec
        self.deployed = deployed
        self.root = root
        self.environment = environment
        self.name = deployed.name
        self.arn = deployed.arn
        self.module: Any = None
        self._handler: Callable[[dict, Any], Any] | None = None
        self._lock = threading.Lock()

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    def load(self) -> None:
        """Import the handler module with this function's environment in place, as at a cold start.

        The module is loaded from its file under a name of its own, so every load is a fresh cold
        start and two functions' `app` modules never meet in sys.modules.
        """
        module_name, _, function_name = self.deployed.handler.rpartition(".")
        path = (self.root / self.spec.code_uri / f"{module_name}.py").resolve()
        unique = f"_local_lambda_{self.logical_id}_{module_name}_{id(self)}"
        spec = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        with environment_applied(self.environment):
            spec.loader.exec_module(module)
        self.module = module
        self._handler = getattr(module, function_name)

    def invoke(self, event: dict) -> Any:
        """Call the handler with `event`; exceptions propagate (a function error)."""
        if self._handler is None:
            self.load()
        with self._lock:
            context = LambdaContext(
                function_name=self.name,
                memory_limit_in_mb=self.deployed.memory_mb,
                invoked_function_arn=self.arn,
                aws_request_id=str(uuid.uuid4()),
                timeout_s=self.deployed.timeout_s,
                started=time.monotonic(),
                log_group_name=f"/aws/lambda/{self.name}",
            )
            return self._handler(event, context)


def load_functions(
    template: Template, deployment: Deployment, overrides: Mapping[str, str] | None = None
) -> dict[str, LocalFunction]:
    """Every template function with code on disk, imported with its environment, by logical id.

    One environment rule: the template's (Globals < the function's own, merged and resolved by
    CloudFormation), /opt paths mapped to the function's layer sources, then `overrides`. Each
    handler module is imported with exactly its own environment on top of the process's.
    """
    functions = {}
    for spec in template.functions():
        deployed = deployment.functions[spec.logical_id]
        environment = {**lambda_environment(deployed.environment, spec.layers), **(overrides or {})}
        functions[spec.logical_id] = LocalFunction(spec, deployed, template.root, environment)
        for path in layer_import_paths(spec.layers):
            if path.is_dir() and str(path) not in sys.path:
                sys.path.insert(0, str(path))
    for function in functions.values():
        function.load()
        log.info("loaded %s (%s)", function.logical_id, function.deployed.handler)
    return functions


def shared_environment(functions: Mapping[str, LocalFunction]) -> dict[str, str]:
    """The variables every function has with the same value: os.environ while they all run here.

    One process hosts every function, so a value only some functions have cannot be in os.environ
    during invocations; the handlers read their settings at import, where each had its own.
    """
    environments = [f.environment for f in functions.values()]
    first = environments[0] if environments else {}
    return {key: value for key, value in first.items() if all(e.get(key) == value for e in environments)}


def lambda_environment(environment: Mapping[str, str], layer_dirs: list[Path]) -> dict[str, str]:
    """The function's environment with /opt paths mapped to its layers' sources.

    A path into a layer the function does not have is left out: it could not use it in Lambda either.
    """
    out = {}
    for key, value in environment.items():
        if value.startswith(_LAYER_MOUNT):
            mapped = _map_layer_path(value, layer_dirs)
            if mapped is None:
                continue
            value = mapped
        out[key] = value
    return out


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


@contextmanager
def environment_applied(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `env` on top for the duration of the block."""
    previous = prepare_process(env)
    try:
        yield
    finally:
        restore_environment(previous)


def prepare_process(env: Mapping[str, str]) -> dict[str, str | None]:
    """Put `env` into os.environ; returns the previous values, for restore_environment."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return previous


def restore_environment(previous: dict[str, str | None]) -> None:
    """Undo `prepare_process`."""
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class WithoutMetricLines(io.TextIOBase):
    """stdout without the CloudWatch metric (EMF) lines the handlers print at every invocation.

    Locally those lines are noise between the logs. POWERTOOLS_METRICS_DISABLED would not do: it
    changes the handlers' behaviour, and Powertools prints the cold-start metric regardless.
    """

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = target
        self._dropping = threading.local()  # print() writes the line, then its end, in two calls

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text.startswith('{"_aws"'):
            self._dropping.line = True
        elif text == "\n" and getattr(self._dropping, "line", False):
            self._dropping.line = False
        else:
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


# Set in os.environ while the functions run here: boto3 clients the handlers create go to moto with
# fixed fake credentials (real ones, if the shell has any, are never used or sent anywhere), and
# there is no X-Ray daemon to send traces to.
LOCAL_PROCESS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


# moto answers slower than the AWS services it stands in for, above all on a busy machine: the functions'
# client timeouts, sized for AWS, would turn its slow answers into degraded answers and retries.
LOCAL_CLIENT_TIMEOUTS = {
    f"{service}_{kind}_TIMEOUT_S": seconds
    for service in ("DYNAMODB", "KINESIS", "SQS")
    for kind, seconds in (("CONNECT", "2"), ("READ", "5"))
}


class FunctionHost:
    """This process as the host of the template's functions, for the local stack and the in-process harness.

    `start` puts the local AWS settings into os.environ, deploys the template into moto
    (`aws.deploy`) and loads the handlers (`load_functions`); `stop` restores os.environ.
    """

    def __init__(
        self,
        template: Template,
        region: str,
        overrides: Mapping[str, str] | None = None,
        drop_metric_lines: bool = False,
    ) -> None:
        self.template = template
        self.region = region
        self.overrides = {**LOCAL_CLIENT_TIMEOUTS, **dict(overrides or {})}
        self.drop_metric_lines = drop_metric_lines
        self.deployment: Deployment | None = None
        self.functions: dict[str, LocalFunction] = {}
        self._previous: dict[str, str | None] = {}

    def start(self, endpoint_url: str | None) -> None:
        """Deploy into moto at `endpoint_url` (None: moto's in-memory `mock_aws`, already started)."""
        process = {**LOCAL_PROCESS_ENVIRONMENT, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
        if endpoint_url:
            process["AWS_ENDPOINT_URL"] = endpoint_url
        self._previous = prepare_process(process)
        if self.drop_metric_lines and not isinstance(sys.stdout, WithoutMetricLines):
            sys.stdout = WithoutMetricLines(sys.stdout)
        self.deployment = deploy(self.template, self.session(), endpoint_url)
        self.functions = load_functions(self.template, self.deployment, self.overrides)
        shared = prepare_process(shared_environment(self.functions))
        self._previous.update({k: v for k, v in shared.items() if k not in self._previous})

    def stop(self) -> None:
        """Restore os.environ and stdout as they were before `start`."""
        restore_environment(self._previous)
        self._previous = {}
        if isinstance(sys.stdout, WithoutMetricLines):
            sys.stdout = sys.stdout.target

    def session(self) -> boto3.session.Session:
        """A boto3 session for the local AWS (fake credentials)."""
        return boto3.session.Session(
            region_name=self.region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
