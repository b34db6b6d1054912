"""uvicorn's httptools protocol with limits on request headers: ``--http services.gateway.http:BoundedHttpTools``.

uvicorn 0.54's httptools protocol (the fast one the gateway runs, bench/rehedge.py) bounds neither
the size nor the number of request headers, nor how long they may take: 20 MB of small headers
left the gateway at 634 MB, one 64 MB header stalled ``/healthz`` for 6.5 s, and 300 clients
sending a byte a second held 300 connections for as long as they liked (issue [G2]). (Its h11
protocol has ``h11_max_incomplete_event_size``, 16 KiB by default, but costs more CPU per request,
and neither has a header deadline.) This subclass adds, per request:

* ``MAX_HEADER_BYTES``: at most this many bytes of request line and headers are handed to the
  parser; a request whose headers have not ended by then is answered 431 and closed. Counting
  happens *before* the parser sees the bytes, so a single huge header is never accumulated.
* ``MAX_HEADER_COUNT``: more headers than this: 431, closed.
* ``HEADER_TIMEOUT_S``: the request line and headers must be complete this long after their
  first byte (408, closed). Idle keep-alive connections keep uvicorn's own ``--timeout-keep-alive``.

Bodies are the admission middleware's (``services.gateway.admission``): it knows the route's
limit and the caller, and times a body out only while the app is waiting for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BoundedHttpTools", "HeaderLimits", "header_limits"]

PROTOCOL = "services.gateway.http:BoundedHttpTools"  # what `uvicorn --http` is given


@dataclass(frozen=True)
class HeaderLimits:
    max_bytes: int
    max_count: int
    timeout_s: float


@cache
def header_limits() -> HeaderLimits:
    """From the gateway's settings, once per process (uvicorn builds the protocol, not our code)."""
    from services.gateway.config import GatewaySettings

    s = GatewaySettings()
    return HeaderLimits(s.max_header_bytes, s.max_header_count, s.header_timeout_s)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is already written."""


class BoundedHttpTools(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        self.limits = header_limits()
        self._in_headers = True  # between the end of a request (or the connection's start) and its headers' end
        self._header_bytes = 0
        self._header_count = 0
        self._header_deadline: asyncio.TimerHandle | None = None
        self._refused = False

    # --- counting before parsing ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        while data and self._in_headers and not self._refused:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(self.limits.timeout_s, self._headers_too_slow)
            room = self.limits.max_bytes - self._header_bytes
            if room <= 0:
                self._refuse(431, f"request headers over {self.limits.max_bytes} bytes")
                return
            head, data = data[:room], data[room:]
            self._header_bytes += len(head)
            super().data_received(head)  # may end the headers (and even the request) part way through
        if data and not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_count:
            self._refuse(431, f"more than {self.limits.max_count} request headers")
            raise _Refused  # stops the parser; send_400_response below stays quiet
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_headers, self._header_bytes = True, 0
        super().on_message_complete()

    # --- answering ------------------------------------------------------------------------------
    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._in_headers and not self.transport.is_closing():
            self._refuse(408, f"request headers not complete within {self.limits.timeout_s:g} s")

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` in plain text and close: no request was formed, so no app runs."""
        self._refused = True
        self._cancel_deadline()
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = reason.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, phrase, len(body), body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a parser error of our own making has been answered already
            super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

