"""Print a Cognito access token for the deployed stack's user pool.

    python scripts/get_token.py --username alice@example.com            # asks for the password
    RTREC_PASSWORD=... python scripts/get_token.py --username alice@example.com
    export TOKEN=$(python scripts/get_token.py --username alice@example.com)

The app client id comes from the stack's outputs (`UserPoolClientId`; the stack made the pool only
when JwtIssuerUrl was empty). It signs in with USER_PASSWORD_AUTH: the password travels to Cognito
over TLS, as it would to the hosted login page, and nothing here stores it. A user an administrator
created must replace the temporary password on first sign-in: pass --new-password (or answer the
prompt). The API wants the *access* token (its routes check scopes, which only access tokens carry);
the pool's pre token generation trigger adds the app client's rtrec/* scopes to it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError


class SignInError(Exception):
    """The user pool refused the sign-in (wrong password, unknown user, disabled flow, ...)."""


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs as {OutputKey: OutputValue}."""
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def access_token(
    cognito: Any,
    client_id: str,
    username: str,
    password: str,
    new_password: str | None = None,
) -> str:
    """Sign in with USER_PASSWORD_AUTH and return the access token.

    A NEW_PASSWORD_REQUIRED challenge (an administrator-created user's first sign-in) is answered
    with `new_password`; without one, SignInError says so.
    """
    try:
        response = cognito.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        if response.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
            if not new_password:
                raise SignInError("the user must set a new password first: pass --new-password")
            response = cognito.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=response["Session"],
                ChallengeResponses={
                    # The pool signs users in by email; the challenge wants the user name behind it.
                    "USERNAME": response.get("ChallengeParameters", {}).get("USER_ID_FOR_SRP", username),
                    "NEW_PASSWORD": new_password,
                },
            )
        elif response.get("ChallengeName"):
            raise SignInError(
                f"unsupported challenge {response['ChallengeName']} (MFA is off in the stack's pool)"
            )
    except ClientError as exc:
        error = exc.response["Error"]
        raise SignInError(f"{error.get('Code')}: {error.get('Message')}") from exc
    return response["AuthenticationResult"]["AccessToken"]


def main(argv: list[str] | None = None, session: Any = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--username", required=True, help="the user's email (the pool's user name)")
    parser.add_argument("--stack-name", default="rtrec", help="the deployed stack (default: rtrec)")
    parser.add_argument("--region", help="default: your AWS profile's region")
    parser.add_argument("--client-id", help="app client id; default: the stack's UserPoolClientId output")
    parser.add_argument("--new-password", help="answer a NEW_PASSWORD_REQUIRED challenge with this password")
    args = parser.parse_args(argv)

    session = session or boto3.session.Session(region_name=args.region)
    client_id = args.client_id
    if not client_id:
        outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
        client_id = outputs.get("UserPoolClientId")
        if not client_id:
            parser.error(
                f"stack {args.stack_name} has no UserPoolClientId output (deployed with JwtIssuerUrl?)"
            )
    password = os.environ.get("RTREC_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    try:
        token = access_token(
            session.client("cognito-idp"), client_id, args.username, password, args.new_password
        )
    except SignInError as exc:
        print(f"sign-in failed: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
