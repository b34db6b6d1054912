"""bench/rehedge.py's lean crowd client: it reads answers right, and anything else is a failure."""

from __future__ import annotations

import asyncio

import pytest

from bench.rehedge import REHEDGED, TARGETS, LeanConnection, rehedge_requests


async def _server(answers: list[bytes]) -> tuple[asyncio.base_events.Server, list[bytes]]:
    """A server that answers each request on a connection with the next of ``answers``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while answers:
                seen.append(await reader.readuntil(b"\r\n\r\n"))
                answer = answers.pop(0)
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower() or not answer.endswith(b"}"):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


def _answer(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"))
    return head.encode() + b"\r\n" + body


def test_reads_status_and_body_on_one_kept_alive_connection_and_reconnects_after_close() -> None:
    body = b'{"id":"x","rehedged":true}'

    async def run() -> None:
        answers = [_answer("200 OK", body, "content-type: application/json"),
                   _answer("404 Not Found", b'{"error":{}}'),
                   _answer("200 OK", body, "Connection: close"),
                   _answer("200 OK", body)]
        server, seen = await _server(answers)
        port = server.sockets[0].getsockname()[1]
        conn = LeanConnection("127.0.0.1", port)
        request = rehedge_requests(f"http://127.0.0.1:{port}", "k", ["job"])[0]
        try:
            assert await conn.get(request) == (200, body)
            assert await conn.get(request) == (404, b'{"error":{}}')
            assert await conn.get(request) == (200, body)
            assert conn.writer is None  # the server said close: the next call reconnects
            status, got = await conn.get(request)
            assert status == 200 and REHEDGED in got
        finally:
            await conn.close()
            server.close()
        assert len(seen) == 4 and seen[0].startswith(b"GET /v1/classifications/job?accuracy=0.5 HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer k\r\n" in seen[0]

    asyncio.run(run())


def test_a_cut_answer_raises_and_drops_the_connection() -> None:
    async def run() -> None:
        server, _ = await _server([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"rehedged\":tr"])
        port = server.sockets[0].getsockname()[1]
        conn = LeanConnection("127.0.0.1", port)
        try:
            with pytest.raises(asyncio.IncompleteReadError):
                await conn.get(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.writer is None
        finally:
            server.close()

    asyncio.run(run())


def test_requests_cycle_jobs_and_targets_like_the_httpx_crowd() -> None:
    jobs = [f"j{i}" for i in range(3)]
    requests = rehedge_requests("http://h:1", "k", jobs)
    assert len(requests) == 3 * len(TARGETS)
    for i in (0, 5, 20):
        assert requests[i].startswith(f"GET /v1/classifications/{jobs[i % 3]}?accuracy={TARGETS[i % len(TARGETS)]} ".encode())
        assert b"\r\nHost: h:1\r\n" in requests[i] and requests[i].endswith(b"\r\n\r\n")
