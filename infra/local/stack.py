"""The whole service on one machine: moto as AWS, the real handlers, the stream poller, the HTTP API.

`make local` (python -m infra.local.stack) starts it and keeps it running until Ctrl-C,
printing a token for the API. `LocalStack` is also used by the demo and the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.local.archive import LocalArchive, archived_streams, attach_impression_sink, subscribed_functions
from infra.local.auth import LocalIdentityProvider
from infra.local.aws import MotoServer
from infra.local.http_api import BoundRoute, LocalHttpApi, PageHandler
from infra.local.log_subscriptions import LogSubscriptions
from infra.local.poller import KinesisPoller, sqs_destination
from infra.local.registry import RegistryNames, create_registry, registry_names
from infra.local.runtime import FunctionHost, LocalFunction
from infra.local.template import Resolver, Template
from infra.local.web import DEFAULT_WEB_DIR, LocalWebPage

log = logging.getLogger("local.stack")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_KEY_FILE = REPO_ROOT / ".cache" / "local-signing-key.pem"
DEFAULT_ARCHIVE_DIR = REPO_ROOT / ".cache" / "archive"  # the event archive's layout (infra/local/archive.py)
# Where `make local` describes the running stack (endpoints, model registry) for other processes:
# `make retrain` publishes to the registry it names.
DEFAULT_READY_FILE = REPO_ROOT / ".cache" / "local-stack.json"
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(name)-13s %(levelname)-7s %(message)s"


class LocalStack:
    """Starts moto, deploys the template into it, runs the real handlers behind the poller and HTTP API."""

    def __init__(
        self,
        template_path: str | Path = DEFAULT_TEMPLATE,
        *,
        host: str = "127.0.0.1",
        api_port: int = 0,
        signing_key_pem: bytes | None = None,
        region: str | None = None,
        poll_interval_s: float = 0.1,
        environment: dict[str, str] | None = None,
        drop_metric_lines: bool = False,
        archive_dir: str | Path | None = None,
        web_dir: str | Path | None = None,
    ) -> None:
        """``archive_dir``: write the event archive there (streams a Firehose of the template reads).

        ``web_dir``: also serve the demo page from there, with its local-only token endpoint
        (infra/local/web.py); the template has no such thing.
        """
        self.web_dir = Path(web_dir) if web_dir else None
        self.template = Template(template_path)
        self.archive = LocalArchive(archive_dir) if archive_dir else None
        self.host = host
        self.api_port = api_port
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.poll_interval_s = poll_interval_s
        self._signing_key_pem = signing_key_pem
        self.moto = MotoServer(host=host)
        # Downloaded model versions: one directory per stack, not Lambda's /tmp/models (shared on a machine).
        self._model_cache = tempfile.mkdtemp(prefix="rtrec-local-models-")
        environment = {"MODEL_CACHE_DIR": self._model_cache, **(environment or {})}
        self.functions_host = FunctionHost(self.template, self.region, environment, drop_metric_lines)
        self.model_registry: RegistryNames | None = None
        self.pollers: list[KinesisPoller] = []
        self.identity: dict[str, LocalIdentityProvider] = {}
        self.api: LocalHttpApi | None = None
        self._started: list[Any] = []

    @property
    def functions(self) -> dict[str, LocalFunction]:
        return self.functions_host.functions

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._started.append(self.moto)
        endpoint = self.moto.start()
        self._started.append(self.functions_host)
        self.functions_host.start(endpoint)
        deployment = self.functions_host.deployment
        # Log subscriptions (impression lines -> the ingest function's shown-item fold), delivered in batches.
        subscriptions = LogSubscriptions(self.template.document, self.functions).install().start()
        self._started.append(subscriptions)
        resolver = Resolver(self.template, deployment.attribute, self.region)
        self._create_model_registry()

        clients = self.clients("kinesis", "sqs")
        for source in deployment.kinesis_sources():
            destination = None
            if source.on_failure_arn and ":sqs:" in source.on_failure_arn:
                queue_name = source.on_failure_arn.rsplit(":", 1)[-1]
                queue_url = clients["sqs"].get_queue_url(QueueName=queue_name)["QueueUrl"]
                destination = sqs_destination(clients["sqs"], queue_url)
            elif source.on_failure_arn:
                log.warning("OnFailure %s is not an SQS queue: not delivered locally", source.on_failure_arn)
            archive = self._archive_for(source.stream_name)
            poller = KinesisPoller(
                source,
                self.functions[source.function_id],
                clients["kinesis"],
                region=self.region,
                send_to_destination=destination,
                poll_interval_s=self.poll_interval_s,
                archive=archive.write if archive else None,
            )
            self._started.append(poller)
            poller.start()
            self.pollers.append(poller)

        if self.archive is not None:  # the impression subscription: impression log lines to the archive
            for function_id in subscribed_functions(self.template.document):
                if function_id in self.functions:
                    attach_impression_sink(self.functions[function_id].module, self.archive)

        routes = self.template.http_routes()
        api_ids = sorted({r.api_id for r in routes})
        if len(api_ids) > 1:
            log.warning("several HTTP APIs (%s); all routes are served on one port", ", ".join(api_ids))
        key = self._signing_key_pem
        for api_id in api_ids:
            for name, spec in self.template.jwt_authorizers(api_id).items():
                audience = resolver(spec.audience)
                provider = LocalIdentityProvider(
                    resolver(spec.issuer), audience if isinstance(audience, list) else [audience], key
                )
                key = provider.private_key_pem  # one local key signs for every authorizer
                self.identity[name] = provider
        self.api = LocalHttpApi(
            [BoundRoute.of(r, self.functions[r.function_id]) for r in routes],
            self.identity,
            api_id=api_ids[0] if api_ids else "local",
            host=self.host,
            port=self.api_port,
            cors=self._cors(resolver, api_ids),
            pages=self._web_page(),
        )
        self._started.append(self.api)
        self.api.start()

    def _web_page(self) -> PageHandler | None:
        """The demo page's handler when a web directory was given and there is a token to sign in with."""
        if self.web_dir is None or not self.identity:
            return None
        provider = self.identity_provider()
        return LocalWebPage(lambda user, ttl_s: provider.mint(user, ttl_s=ttl_s), self.web_dir).handle

    @property
    def web_url(self) -> str:
        """The demo page's address ('' when the stack does not serve it)."""
        return f"{self.api_url}/" if self.api and self.api.pages else ""

    def _create_model_registry(self) -> None:
        """The registry the functions follow (moto's CloudFormation makes neither bucket nor parameter)."""
        self.model_registry = registry_names({k: f.environment for k, f in self.functions.items()})
        if self.model_registry is not None:
            clients = self.clients("s3", "ssm")
            create_registry(clients["s3"], clients["ssm"], self.model_registry, self.region)

    def _archive_for(self, stream_name: str) -> LocalArchive | None:
        """The archive when the template's Firehose reads this stream (moto's Firehose never does)."""
        if self.archive is None:
            return None
        refs = self.functions_host.deployment.refs
        if not any(
            refs.get(stream_id) == stream_name for stream_id in archived_streams(self.template.document)
        ):
            return None
        log.info("archiving %s to %s (as the template's Firehose would)", stream_name, self.archive.root)
        return self.archive

    def _cors(self, resolver: Resolver, api_ids: list[str]) -> dict | None:
        cors = resolver(self.template.http_api_cors(api_ids[0])) if api_ids else None
        return cors if isinstance(cors, dict) else None  # !Ref AWS::NoValue: no CORS

    def stop(self) -> None:
        """Stop the HTTP API, the pollers, the functions and moto, newest first; nothing keeps running."""
        if not self._started:
            shutil.rmtree(self._model_cache, ignore_errors=True)
            return
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", type(part).__name__)
        shutil.rmtree(self._model_cache, ignore_errors=True)
        log.info("local stack stopped")

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for the demo and tests -----------------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.api.url if self.api else ""

    @property
    def aws_endpoint_url(self) -> str:
        return self.moto.endpoint_url

    def clients(self, *services: str) -> dict[str, Any]:
        """boto3 clients for the local AWS."""
        session = self.functions_host.session()
        return {s: session.client(s, endpoint_url=self.aws_endpoint_url) for s in services}

    def resource(self, logical_id: str, attribute: str | None = None) -> Any:
        """A template resource's local physical value (Ref when attribute is None)."""
        return self.functions_host.deployment.attribute(logical_id, attribute)

    def identity_provider(self, authorizer: str | None = None) -> LocalIdentityProvider:
        if authorizer is None:
            authorizer = next(iter(self.identity))
        return self.identity[authorizer]

    def token(self, sub: str, **claims: Any) -> str:
        """A token the API's authorizer accepts, for user `sub`."""
        return self.identity_provider().mint(sub, **claims)

    def wait_for_stream(self, timeout_s: float = 30.0) -> bool:
        """Wait until every poller has drained its stream."""
        return all(p.wait_idle(timeout_s) for p in self.pollers)

    def describe(self) -> dict:
        """Where everything is, for other processes (tests, scripts)."""
        provider = self.identity_provider() if self.identity else None
        return {
            "api_url": self.api_url,
            "aws_endpoint_url": self.aws_endpoint_url,
            "region": self.region,
            "resources": {rid: {"Ref": ref} for rid, ref in self.functions_host.deployment.refs.items()},
            "issuer": provider.issuer if provider else None,
            "audiences": provider.audiences if provider else [],
            "routes": [b.route.route_key for b in self.api.routes] if self.api else [],
            "web_url": self.web_url,
            "model_registry": (
                {"bucket": self.model_registry.bucket, "pointer": self.model_registry.pointer}
                if self.model_registry
                else None
            ),
        }


def configure_logging(level: str = "INFO") -> None:
    """Local components log to stderr; handlers' Powertools JSON logs go to stdout: one terminal."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_or_create_key(path: Path) -> bytes | None:
    """The saved local signing key, so tokens minted earlier keep working across restarts."""
    return path.read_bytes() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the service locally until Ctrl-C.")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_API_PORT", "3000")))
    parser.add_argument("--key-file", default=str(DEFAULT_KEY_FILE), help="RSA key that signs local tokens")
    parser.add_argument(
        "--ready-file",
        default=str(DEFAULT_READY_FILE),
        help="write the stack's endpoints here (JSON) once it is up, removed at exit; empty = none",
    )
    parser.add_argument("--sub", default="local-user", help="user id of the printed token")
    parser.add_argument("--log-level", default=os.environ.get("LOCAL_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--archive-dir",
        default=os.environ.get("LOCAL_ARCHIVE_DIR", str(DEFAULT_ARCHIVE_DIR)),
        help="where the event archive goes (events/kind=<kind>/dt=<day>/*.jsonl.gz); empty = no archive",
    )
    parser.add_argument(
        "--web-dir",
        default=str(DEFAULT_WEB_DIR),
        help="serve the demo page from this directory at the API's / (empty = no page)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    key_file = Path(args.key_file)
    stack = LocalStack(
        args.template,
        api_port=args.port,
        signing_key_pem=load_or_create_key(key_file),
        archive_dir=args.archive_dir or None,
        web_dir=args.web_dir or None,
    )
    try:
        stack.start()
        if stack.identity:
            provider = stack.identity_provider()
            provider.save_key(key_file)
            identity = {"issuer": provider.issuer, "audiences": provider.audiences}
            key_file.with_suffix(".json").write_text(json.dumps(identity))
        if args.ready_file:
            Path(args.ready_file).parent.mkdir(parents=True, exist_ok=True)
            Path(args.ready_file).write_text(json.dumps(stack.describe(), indent=2))
        print_banner(stack, args.sub)
        # Wake up now and then rather than block for good: Linux may deliver Ctrl-C to one of the
        # server threads, which only flags it for the main thread, and a main thread blocked in an
        # untimed wait never looks at the flag (seen as a rare hang on stop under CPU load).
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        stack.stop()
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)
    return 0


def print_banner(stack: LocalStack, sub: str) -> None:
    info = stack.describe()
    lines = [
        "",
        f"Local stack up. API: {stack.api_url}   AWS (moto): {stack.aws_endpoint_url}",
        f"Routes: {', '.join(info['routes'])}",
    ]
    if stack.identity:
        lines += [
            f"Token for user {sub!r} (valid 1 h; more: python -m infra.local.token --sub NAME):",
            f"export TOKEN={stack.token(sub)}",
            f'curl -s -H "Authorization: Bearer $TOKEN" {stack.api_url}/v1/recommendations?k=10',
        ]
    if stack.web_url:
        lines.append(f"Web page (signs in as a demo user, local only): {stack.web_url}")
    lines += ["Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
