"""A local stand-in for the Cognito user pool: mints and checks RS256 JWTs.

Tokens carry the claims a Cognito access token carries (sub, iss, client_id,
token_use, scope, auth_time, iat, exp, jti, username); an ID token (aud instead of
client_id) can be minted too. Verification follows the HTTP API JWT authorizer:
signature, exp/nbf, iss equal to the configured issuer, and aud or client_id among
the configured audiences.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_ID = "rtrec-local-1"


class InvalidToken(Exception):
    """The request carries no token, or one the authorizer rejects."""


def generate_private_key_pem() -> bytes:
    """A fresh 2048-bit RSA key (PKCS8 PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalIdentityProvider:
    """Signs tokens for one issuer and verifies them like the HTTP API JWT authorizer."""

    def __init__(self, issuer: str, audiences: Iterable[str], private_key_pem: bytes | None = None) -> None:
        self.issuer = issuer
        self.audiences = [str(a) for a in audiences]
        if not self.audiences:
            raise ValueError("a JWT authorizer needs at least one audience")
        self.private_key_pem = private_key_pem or generate_private_key_pem()
        self._private_key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        self._public_key = self._private_key.public_key()

    @classmethod
    def from_key_file(cls, path: str | Path, issuer: str, audiences: Iterable[str]) -> LocalIdentityProvider:
        return cls(issuer, audiences, Path(path).read_bytes())

    def save_key(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.private_key_pem)
        path.chmod(0o600)

    def mint(
        self,
        sub: str,
        *,
        token_use: str = "access",
        ttl_s: int = 3600,
        scope: str = "aws.cognito.signin.user.admin",
        now: float | None = None,
        **extra: object,
    ) -> str:
        """A signed token for user `sub`, shaped like Cognito's access (or id) token."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, object] = {
            "sub": sub,
            "iss": self.issuer,
            "token_use": token_use,
            "auth_time": issued,
            "iat": issued,
            "exp": issued + ttl_s,
            "jti": str(uuid.uuid4()),
        }
        if token_use == "id":
            claims.update({"aud": self.audiences[0], "cognito:username": sub})
        else:
            claims.update({"client_id": self.audiences[0], "scope": scope, "username": sub})
        claims.update(extra)
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": KEY_ID})

    def verify(self, token: str) -> dict:
        """The token's claims if the authorizer would accept it, else InvalidToken."""
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        audience = claims.get("aud", claims.get("client_id"))
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in self.audiences for a in audiences):
            raise InvalidToken("audience/client_id not accepted")
        return claims


def bearer_token(header_value: str | None) -> str:
    """The token of an Authorization header ('Bearer <jwt>' or the bare token, as API Gateway accepts)."""
    if not header_value:
        raise InvalidToken("missing Authorization header")
    value = header_value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    if not value:
        raise InvalidToken("empty token")
    return value
