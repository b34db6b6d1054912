"""``wardrobe data delete --client KEY_ID``: delete one person's (one API key's) data.

Everything of that key goes from the database and the photo store: its classifications, all feedback
on them, the feedback it gave, and each of their photos no other row needs (``shared.retention``).
Like ``wardrobe keys``, it talks to the database directly (DATABASE_URL) and to the photo store
(PHOTO_DIR): whoever can run it can reach both, so it needs no API key. The key itself is left as it
is: revoke it with ``wardrobe keys revoke`` if the person should not come back.
"""

from __future__ import annotations

import argparse
import json


def cmd_delete(args: argparse.Namespace) -> int:
    from shared.config import CommonSettings
    from shared.db import run_migrations
    from shared.retention import delete_client_data
    from shared.storage import PhotoStore

    settings = CommonSettings()
    url = settings.resolved_database_url
    run_migrations(url)
    counts = delete_client_data(url, PhotoStore(settings.resolved_photo_dir), args.client)
    print(json.dumps({"client": args.client, **counts}) if args.json else
          f"deleted the data of key {args.client}: {counts['classifications']} classifications, "
          f"{counts['feedback']} feedback, {counts['photo_files']} photo files")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="people's data: delete one API key's classifications, photos, feedback")
    sub = data.add_subparsers(dest="data_command", required=True)
    delete = sub.add_parser("delete", help="delete everything of one API key (database and photo store)")
    delete.add_argument("--client", required=True, metavar="KEY_ID", help="the API key's id (`wardrobe keys list`)")
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(func=cmd_delete)
