"""Mint a token for the running local stack: python -m infra.local.token --sub alice"""

from __future__ import annotations

import argparse
import json

from infra.local.auth import LocalIdentityProvider
from infra.local.stack import DEFAULT_KEY_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sub", required=True, help="user id (the token's sub claim)")
    parser.add_argument("--token-use", choices=("access", "id"), default="access")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires")
    parser.add_argument("--key-file", default=str(DEFAULT_KEY_FILE))
    args = parser.parse_args(argv)
    key_file = DEFAULT_KEY_FILE.__class__(args.key_file)
    if not key_file.exists():
        parser.error(f"{key_file} not found: start the stack first (make local)")
    identity = json.loads(key_file.with_suffix(".json").read_text())
    provider = LocalIdentityProvider.from_key_file(key_file, identity["issuer"], identity["audiences"])
    print(provider.mint(args.sub, token_use=args.token_use, ttl_s=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
