"""The `wardrobe` commands' client of a running gateway: one method per call, and every failure
as one line (``ApiError``): an unreachable gateway, a refused key, the API's own error message.

The URL and key come from the flags, else from ``WARDROBE_URL`` / ``WARDROBE_API_KEY`` (read
through ``CommonSettings``, like every other setting).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["ApiError", "Api", "api_from_args", "add_client_args"]


class ApiError(Exception):
    """One line for the user: what went wrong, never a traceback."""


class Api:
    def __init__(self, url: str, key: str | None, timeout: float = 30.0) -> None:
        import httpx  # here, not at import: building the command line stays quick

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def request(self, method: str, path: str, **kwargs) -> "httpx.Response":  # noqa: ANN003
        """The response (any status); ``ApiError`` only when the gateway cannot be reached."""
        import httpx

        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ApiError(f"cannot reach the gateway at {self.http.base_url} ({reason}); "
                           "is it up? (--url or WARDROBE_URL)") from None

    def call(self, method: str, path: str, **kwargs) -> dict | list:  # noqa: ANN003
        """The JSON answer of a successful call; ``ApiError`` with the API's message otherwise."""
        r = self.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise ApiError(error_line(r))
        return r.json() if r.content else {}


def error_line(r: "httpx.Response") -> str:
    try:
        body = r.json()
    except ValueError:
        body = r.text[:200]
    error = body.get("error", {}) if isinstance(body, dict) else {}
    line = f"error {r.status_code} ({error.get('code', 'http_error')}): {error.get('message', body)}"
    if r.status_code == 401:
        line += " (--key or WARDROBE_API_KEY)"
    return line


def add_client_args(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    parser.add_argument("--url", default=None, help="the gateway's base URL (default: WARDROBE_URL, else "
                        "http://127.0.0.1:8000)")
    parser.add_argument("--key", default=None, help="API key (default: WARDROBE_API_KEY)")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the API's JSON")


def api_from_args(args: argparse.Namespace, timeout: float = 30.0) -> Api:
    from shared.config import CommonSettings

    settings = CommonSettings()
    return Api(args.url or settings.wardrobe_url, args.key or settings.wardrobe_api_key, timeout)
