"""``wardrobe keys create|list|revoke``: API keys, through a running gateway or straight in the database.

With a key (``--key`` or ``WARDROBE_API_KEY``, an operator's) the commands call the gateway's
``/v1/keys`` (``--url`` or ``WARDROBE_URL``): what an operator of a deployment can reach. Without
one, or with ``--database``, they write the database itself (``DATABASE_URL``, else the SQLite
file under ``DATA_DIR``): whoever can reach it needs no key, which is how a fresh install makes
its first keys. Either way the secret of a new key is printed once and only its hash is stored.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.auth import Role

__all__ = ["add_parsers"]


def _database_url() -> str:
    from shared.config import CommonSettings
    from shared.db import run_migrations

    url = CommonSettings().resolved_database_url
    run_migrations(url)  # idempotent: a fresh install can make its first key before `up`
    return url


def _through_api(args: argparse.Namespace):  # noqa: ANN202 - services.api_client.Api or None
    """The gateway client when a key is given and ``--database`` is not; else None."""
    from services.api_client import api_from_args

    if args.database:
        return None
    api = api_from_args(args)
    return api if "Authorization" in api.http.headers else None


def _row(row) -> dict:  # noqa: ANN001 - shared.tables.ApiKey -> the API's ApiKeyPublic shape
    from shared.api_keys import public

    return public(row).model_dump()


def create(args: argparse.Namespace) -> dict:
    from shared.schemas import ApiKeyCreate

    # the API's own checks, also on the way straight into the database
    body = ApiKeyCreate(name=args.name, role=args.role, rate_limit_per_minute=args.rate_limit,
                        max_photo_bytes=args.max_photo_bytes).model_dump()
    api = _through_api(args)
    if api is not None:
        return api.call("POST", "/v1/keys", json=body)
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        new = api_keys.create_key(session, args.name, Role(args.role), rate_limit_per_minute=args.rate_limit,
                                  max_photo_bytes=args.max_photo_bytes)
        return {**_row(new.row), "key": new.token}


def listing(args: argparse.Namespace) -> list[dict]:
    api = _through_api(args)
    if api is not None:
        return api.call("GET", "/v1/keys", params={"include_revoked": args.all})
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        return [_row(r) for r in api_keys.list_keys(session, include_revoked=args.all)]


def revoke(args: argparse.Namespace) -> dict | None:
    api = _through_api(args)
    if api is not None:
        return api.call("DELETE", f"/v1/keys/{args.id}")
    from shared import api_keys
    from shared.db import session_scope

    with session_scope(_database_url()) as session:
        row = api_keys.revoke(session, args.id)
        return _row(row) if row is not None else None


def _run(fn):  # noqa: ANN001, ANN202 - a gateway's refusal or absence: one line, exit 1
    def wrapper(args: argparse.Namespace) -> int:
        from pydantic import ValidationError

        from services.api_client import ApiError

        try:
            return fn(args)
        except ApiError as exc:
            print(f"wardrobe keys {args.keys_command}: {exc}", file=sys.stderr)
            return 1
        except ValidationError as exc:  # a bad --name, --rate-limit, ...: one line, as argparse's own
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            print(f"wardrobe keys {args.keys_command}: {problems}", file=sys.stderr)
            return 2
    return wrapper


@_run
def cmd_create(args: argparse.Namespace) -> int:
    info = create(args)
    print(json.dumps(info, indent=2) if args.json else
          f"{info['role']} key {info['id']} ({info['name']}); the key, shown once:\n{info['key']}")
    return 0


@_run
def cmd_list(args: argparse.Namespace) -> int:
    rows = listing(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        print(f"{r['id']}  {r['role']:<8}  {r['name']:<24}  created {r['created_at']}  {state}")
    return 0


@_run
def cmd_revoke(args: argparse.Namespace) -> int:
    row = revoke(args)
    if row is None:
        print(f"wardrobe keys revoke: no key with id {args.id!r}", file=sys.stderr)
        return 1
    print(f"revoked key {row['id']} ({row['name']}); requests with it get 401 within AUTH_CACHE_S seconds (default 5)")
    return 0


def _where(parser: argparse.ArgumentParser) -> None:
    from services.api_client import add_client_args

    add_client_args(parser, json_flag=False)
    parser.add_argument("--database", action="store_true",
                        help="write the database itself (DATABASE_URL or DATA_DIR) even if a key is set")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke (through the gateway with an "
                                 "operator key, else straight in the database)")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create_p = sub.add_parser("create", help="create a key and print it once")
    create_p.add_argument("--name", required=True, help="who or what the key is for")
    create_p.add_argument("--role", choices=[r.value for r in Role], default=Role.client.value)
    create_p.add_argument("--rate-limit", type=int, default=None, metavar="N",
                          help="requests per minute (default: the gateway's RATE_LIMIT_PER_MINUTE; 0: none)")
    create_p.add_argument("--max-photo-bytes", type=int, default=None, help="upload cap of this key (bytes)")
    create_p.add_argument("--json", action="store_true")
    _where(create_p)
    create_p.set_defaults(func=cmd_create)
    list_p = sub.add_parser("list", help="list keys (never their secrets)")
    list_p.add_argument("--all", action="store_true", help="include revoked keys")
    list_p.add_argument("--json", action="store_true")
    _where(list_p)
    list_p.set_defaults(func=cmd_list)
    revoke_p = sub.add_parser("revoke", help="revoke a key by id")
    revoke_p.add_argument("id")
    _where(revoke_p)
    revoke_p.set_defaults(func=cmd_revoke)
