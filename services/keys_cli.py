"""``wardrobe keys create|list|revoke``: API keys, straight in the database (DATABASE_URL).

Whoever can run this can reach the database, so it needs no key itself; the secret of a new key
is printed once and only its hash is stored.
"""

from __future__ import annotations

import argparse
import json

from shared.auth import Role


def _database_url() -> str:
    from shared.config import CommonSettings
    from shared.db import run_migrations

    url = CommonSettings().resolved_database_url
    run_migrations(url)  # idempotent: a fresh install can make its first key before `up`
    return url


def _public(row) -> dict:  # noqa: ANN001 - shared.tables.ApiKey
    return {"id": row.id, "name": row.name, "role": row.role.value, "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "rate_limit_per_minute": row.rate_limit_per_minute, "max_photo_bytes": row.max_photo_bytes}


def cmd_create(args: argparse.Namespace) -> int:
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        new = api_keys.create_key(session, args.name, Role(args.role), rate_limit_per_minute=args.rate_limit,
                                  max_photo_bytes=args.max_photo_bytes)
        info = _public(new.row)
    print(json.dumps({**info, "key": new.token}, indent=2) if args.json else
          f"{info['role']} key {info['id']} ({info['name']}); the key, shown once:\n{new.token}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        rows = [_public(r) for r in api_keys.list_keys(session, include_revoked=args.all)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        print(f"{r['id']}  {r['role']:<8}  {r['name']:<24}  created {r['created_at']}  {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        row = api_keys.revoke(session, args.id)
    if row is None:
        print(f"no key with id {args.id!r}")
        return 1
    print(f"revoked key {row.id} ({row.name}); requests with it get 401 within AUTH_CACHE_S seconds (default 5)")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.client.value)
    create.add_argument("--rate-limit", type=int, default=None, metavar="N",
                        help="requests per minute (default: the gateway's RATE_LIMIT_PER_MINUTE; 0: none)")
    create.add_argument("--max-photo-bytes", type=int, default=None, help="upload cap of this key (bytes)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_create)
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_revoke)
