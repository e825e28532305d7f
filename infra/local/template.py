"""Read what moto's CloudFormation does not cover from the SAM template: code and layer folders, the HTTP API.

moto creates the resources, functions and mappings from the translated template (`aws.deploy`);
the local stack still needs the functions' code and layer sources on disk, and the HttpApi's
routes, JWT authorizers and CORS settings, which it serves itself. Intrinsic functions in those
are resolved against the local resources.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

ACCOUNT_ID = "123456789012"
STACK_NAME = "rtrec-local"

# A property set to !Ref AWS::NoValue disappears; resolution returns this marker first.
NO_VALUE = object()


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi route of a function: method, path template and its authorizer (None = open).

    `required_scopes` are the route's AuthorizationScopes with the parameters' defaults. `scopes`, the
    ones the local HTTP API enforces, stays empty for routes behind the stack's own user pool: the
    deployed pool's pre token generation trigger adds the app client's scopes to every direct sign-in
    token, and the local stand-in for the pool mints tokens without them.
    """

    function_id: str
    api_id: str
    method: str
    path: str
    authorizer: str | None
    scopes: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class JwtAuthorizerSpec:
    """A JWT authorizer of an HttpApi: issuer and accepted audiences (token from the Authorization header)."""

    name: str
    issuer: Any
    audience: Any


@dataclass
class FunctionSpec:
    """Where a serverless function's code and layers are on disk (Globals merged in).

    Its environment, handler, timeout and memory are what moto's Lambda reports after CreateStack
    (`aws.DeployedFunction`): the translator and CloudFormation merge and resolve them there.
    """

    logical_id: str
    code_uri: str
    layers: list[Path] = field(default_factory=list)


class Template:
    """A parsed SAM template plus the resolution of its intrinsic functions."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        # samtranslator's loader turns the short tags (!Ref, !GetAtt, !Sub ...) into
        # their long form, exactly what CloudFormation receives.
        self.document: dict = yaml_parse(self.path.read_text())
        self.resources: dict[str, dict] = self.document.get("Resources", {})
        self.globals: dict = self.document.get("Globals", {})
        self.parameters: dict[str, Any] = {
            name: spec.get("Default") for name, spec in self.document.get("Parameters", {}).items()
        }

    def of_type(self, *types: str) -> dict[str, dict]:
        """Resources of the given CloudFormation/SAM types, by logical id (those whose Condition holds)."""
        return {
            rid: res
            for rid, res in self.resources.items()
            if res.get("Type") in types and self.condition_holds(res.get("Condition"))
        }

    def condition_holds(self, name: str | None) -> bool:
        """Whether a named condition is true with the parameters' default values."""
        if name is None:
            return True
        resolver = Resolver(self, lambda logical_id, attribute: f"{logical_id}.{attribute}", "us-east-1")
        return resolver.condition(name)

    def functions(self) -> list[FunctionSpec]:
        """Every AWS::Serverless::Function with code on disk, with its layers' source folders.

        Functions with InlineCode (the Cognito trigger) have no local counterpart: nothing local calls them.
        """
        defaults = self.globals.get("Function", {})
        specs = []
        for rid, res in self.of_type("AWS::Serverless::Function").items():
            props = res.get("Properties", {})
            if "InlineCode" in props:
                continue
            layers = list(defaults.get("Layers", [])) + list(props.get("Layers", []))
            specs.append(
                FunctionSpec(
                    logical_id=rid,
                    code_uri=str(props.get("CodeUri", defaults.get("CodeUri", "."))),
                    layers=[d for d in (self._layer_source(layer) for layer in layers) if d is not None],
                )
            )
        return specs

    def _layer_source(self, layer: Any) -> Path | None:
        """The ContentUri folder of a `!Ref` to an AWS::Serverless::LayerVersion of this template."""
        resource = self.resources.get(layer.get("Ref", "") if isinstance(layer, dict) else "")
        if not resource or resource.get("Type") != "AWS::Serverless::LayerVersion":
            return None
        content = resource.get("Properties", {}).get("ContentUri")
        return (self.root / content).resolve() if isinstance(content, str) else None

    def _events(self, event_type: str) -> list[tuple[str, dict]]:
        out = []
        for rid, res in self.of_type("AWS::Serverless::Function").items():
            if "InlineCode" in res.get("Properties", {}):
                continue
            for event in (res.get("Properties", {}).get("Events") or {}).values():
                if event.get("Type") == event_type:
                    out.append((rid, event.get("Properties", {})))
        return out

    def http_routes(self) -> list[HttpRoute]:
        """HttpApi routes of all functions, each with the authorizer that guards it."""
        routes = []
        for function_id, props in self._events("HttpApi"):
            api = props.get("ApiId")
            api_id = api.get("Ref") if isinstance(api, dict) else "ServerlessHttpApi"
            api_auth = self.http_api_auth(api_id)
            event_auth = props.get("Auth") or {}
            authorizer = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
            if authorizer == "NONE":
                authorizer = None
            # Scopes may be conditional (!If on the identity provider); decide them with the defaults.
            required = tuple(str(s) for s in self._static(event_auth.get("AuthorizationScopes") or []))
            own_pool = authorizer is not None and self._trusts_own_user_pool(api_id, authorizer)
            routes.append(
                HttpRoute(
                    function_id=function_id,
                    api_id=api_id,
                    method=str(props.get("Method", "ANY")).upper(),
                    path=str(props.get("Path", "$default")),
                    authorizer=authorizer,
                    scopes=() if own_pool else required,
                    required_scopes=required,
                )
            )
        return routes

    def _static(self, value: Any) -> Any:
        """A value with its conditions decided and parameters resolved; a resource becomes `<logical id>`."""
        return Resolver(self, lambda logical_id, attribute: f"<{logical_id}>", "us-east-1")(value)

    def _trusts_own_user_pool(self, api_id: str, authorizer: str) -> bool:
        spec = self.jwt_authorizers(api_id).get(authorizer)
        issuer = str(self._static(spec.issuer)) if spec else ""
        return any(f"<{pool}>" in issuer for pool in self.of_type("AWS::Cognito::UserPool"))

    def http_api_auth(self, api_id: str) -> dict:
        """The Auth block of an AWS::Serverless::HttpApi (Globals.HttpApi merged in)."""
        res = self.resources.get(api_id) or {}
        auth = dict(self.globals.get("HttpApi", {}).get("Auth", {}))
        auth.update(res.get("Properties", {}).get("Auth") or {})
        return auth

    def http_api_cors(self, api_id: str) -> dict | None:
        """The CorsConfiguration of an HttpApi, if any."""
        res = self.resources.get(api_id) or {}
        cors = res.get("Properties", {}).get("CorsConfiguration")
        return cors if isinstance(cors, dict) else None

    def jwt_authorizers(self, api_id: str) -> dict[str, JwtAuthorizerSpec]:
        out = {}
        for name, spec in (self.http_api_auth(api_id).get("Authorizers") or {}).items():
            jwt = spec.get("JwtConfiguration")
            if not jwt:
                continue
            out[name] = JwtAuthorizerSpec(
                name=name,
                issuer=jwt.get("issuer"),
                audience=jwt.get("audience") or [],
            )
        return out


class Resolver:
    """Resolves Ref, GetAtt, Sub, Join, Select, Split and If against local physical values.

    `attribute(logical_id, attribute_name)` returns a resource's value: attribute_name None
    means what Ref returns.
    """

    def __init__(
        self,
        template: Template,
        attribute: Callable[[str, str | None], Any],
        region: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.attribute = attribute
        self.parameters = dict(template.parameters)
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical_id, attr)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(v) for v in self(items))
            if key == "Fn::Select":
                index, items = arg
                return self(items)[int(self(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self(text)).split(sep)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self(when_true if self.condition(condition) else when_false)
        return {k: v for k, v in ((k, self(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.attribute(name, None)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.resources:
                logical_id, attr = name.split(".", 1)
                return str(self.attribute(logical_id, attr))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def condition(self, name_or_expr: Any) -> bool:
        """Evaluate a named condition (or a condition expression) with the parameter values."""
        if isinstance(name_or_expr, str):
            return self.condition(self.template.document.get("Conditions", {})[name_or_expr])
        ((key, arg),) = name_or_expr.items()
        if key == "Fn::Equals":
            left, right = (self(v) for v in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.condition(arg[0])
        if key == "Fn::And":
            return all(self.condition(c) for c in arg)
        if key == "Fn::Or":
            return any(self.condition(c) for c in arg)
        if key == "Condition":
            return self.condition(arg)
        raise ValueError(f"unsupported condition {key}")
