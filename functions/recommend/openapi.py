"""The API's OpenAPI document (collect and recommend routes), generated from the resolvers' routes.

`python -m functions.recommend.openapi` rewrites docs/openapi.json; a test fails when the
committed document and the routes disagree.

The handler validates by hand (no pydantic at cold start), so its route functions take no
parameters. The document is built from the handler's route table (paths, methods, summaries,
descriptions) with each route's documented signature and responses from `schemas.py`, on a
documentation-only resolver with Powertools' OpenAPI machinery.
"""

import json
import os
from pathlib import Path

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def documented_resolver() -> APIGatewayHttpResolver:
    """A resolver with the handler's routes, each with its documented signature and responses.

    A route of the handler without an entry in `schemas.ROUTES` (or the reverse) is an error.
    """
    from functions.collect.app import app as collect_app
    from functions.recommend import schemas
    from functions.recommend.app import app as recommend_app

    # Powertools keeps no public route list.
    routes = [
        route for app in (collect_app, recommend_app) for route in app._static_routes + app._dynamic_routes
    ]
    served = {(route.method, route.path) for route in routes}
    if served != set(schemas.ROUTES):
        raise ValueError(f"routes and schemas.ROUTES disagree: {sorted(served ^ set(schemas.ROUTES))}")
    docs = APIGatewayHttpResolver(enable_validation=True)
    for route in routes:
        signature, responses = schemas.ROUTES[(route.method, route.path)]
        if signature.__name__ != route.func.__name__:
            raise ValueError(
                f"{route.method} {route.path}: document {route.func.__name__}, not {signature.__name__}"
            )
        docs.route(
            route.path,
            route.method,
            summary=route.summary,
            description=route.description,
            responses=responses,
        )(signature)
    return docs


def document() -> str:
    """The OpenAPI 3 document of the recommend routes as stable, indented JSON."""
    schema = documented_resolver().get_openapi_json_schema(
        title="rtrec API",
        version="1.0.0",
        description=(
            "Behaviour events in, real-time recommendations out. The user is always the JWT `sub` "
            "(API Gateway JWT authorizer); no route takes a user id. Every error has the shape "
            '`{"message": ..., "errors": [...]}`.'
        ),
        security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
        security=[{"jwt": []}],
    )
    data = json.loads(schema)
    # Powertools documents its default 422 for validation errors; this API answers them with 400.
    for path in data["paths"].values():
        for operation in path.values():
            operation["responses"].pop("422", None)
            for response in operation["responses"].values():
                if response.get("content") == {"application/json": {}}:
                    del response["content"]  # a 204 has no body
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        data["components"]["schemas"].pop(name, None)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main() -> None:
    # Importing the handler needs the template's environment; the values do not reach the document.
    for name, value in {
        "USER_STATE_TABLE": "UserState",
        "EVENT_STREAM_NAME": "Events",
        "MODEL_DIR": str(DOCUMENT_PATH.parents[1] / "layers" / "model" / "model"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "rtrec",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    DOCUMENT_PATH.write_text(document())
    print(f"wrote {DOCUMENT_PATH}")


if __name__ == "__main__":
    main()
