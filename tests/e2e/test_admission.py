"""Work before authentication, against the real gateway process (issue [G2]): a large body
without a key, oversized headers, a body shorter than its Content-Length and headers sent a byte
at a time are each refused or closed, and the gateway's memory does not follow what was offered."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import psutil
import pytest

from tests.e2e.conftest import OPERATOR_KEY, SLOW_TIMEOUT_S

pytestmark = pytest.mark.integration
MB = 1024 * 1024
WAIT_S = SLOW_TIMEOUT_S + 10  # a socket read that waits longer than this means the gateway held on


def _address(system) -> tuple[str, int]:  # noqa: ANN001
    url = urlsplit(system.url)
    return url.hostname, url.port


def _rss(system) -> int:  # noqa: ANN001
    return psutil.Process(system.group.get("gateway").popen.pid).memory_info().rss


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the answer and everything until the gateway closed the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def _offer(sock: socket.socket, chunk: bytes, total: int) -> int:
    """Send up to ``total`` bytes in ``chunk``s until the gateway stops taking them; bytes sent."""
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def _big_body_without_a_key(system, results: list) -> None:  # noqa: ANN001
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(f"POST /v1/classifications/{uuid.uuid4()}/feedback HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {15 * MB}\r\n\r\n".encode())
        sent = _offer(sock, b" " * 65536, 15 * MB)
        results.append((_answer(sock)[0], sent))


def test_a_15_mb_body_without_a_key_is_refused_and_the_gateway_barely_grows(system):
    """Four clients at once, each offering 15 MB of JSON to the feedback route with no key."""
    before = _rss(system)
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=_big_body_without_a_key, args=(system, results)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    grew = _rss(system) - before
    print(f"4 x 15 MB without a key: answers {results}; gateway RSS +{grew / MB:.1f} MB")
    assert [status for status, _ in results] == [401] * 4
    assert all(sent < 15 * MB for _, sent in results), "the gateway read a whole body it had refused"
    assert grew <= 20 * MB
    assert system.http.get("/healthz").status_code == 200


def test_a_json_body_over_its_limit_is_refused_from_its_length(system):
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(f"POST /v1/classifications/{uuid.uuid4()}/feedback HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {OPERATOR_KEY}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {15 * MB}\r\n\r\n".encode())
        status, data = _answer(sock)
    assert status == 413 and b"body_too_large" in data


def test_20_mb_of_headers_are_refused_and_the_gateway_barely_grows(system):
    before = _rss(system)
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(b"GET /v1/taxonomy HTTP/1.1\r\nHost: x\r\n")
        sent = _offer(sock, b"".join(b"X-H%05d: v\r\n" % i for i in range(5000)), 20 * MB)
        status, _ = _answer(sock)
    grew = _rss(system) - before
    print(f"20 MB of headers: {status} after {sent} bytes sent; gateway RSS +{grew / MB:.1f} MB")
    assert status == 431 and sent < 20 * MB and grew <= 20 * MB


def test_one_64_mb_header_is_refused_while_health_answers(system):
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = _offer(sock, b"a" * MB, 64 * MB)
        status, _ = _answer(sock)
    assert status == 431 and sent < 64 * MB
    assert system.http.get("/healthz").status_code == 200


def test_too_many_headers_are_refused(system):
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500))
                     + b"\r\n")
        assert _answer(sock)[0] == 431


def test_a_body_shorter_than_its_length_is_closed_within_the_timeout(system):
    with socket.create_connection(_address(system), timeout=WAIT_S) as sock:
        sock.sendall(f"POST /v1/classifications/{uuid.uuid4()}/feedback HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {OPERATOR_KEY}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 100\r\n\r\n{{\"correct\": ".encode())
        t0 = time.monotonic()
        status, data = _answer(sock)  # raises TimeoutError if the gateway holds on past WAIT_S
        held = time.monotonic() - t0
    print(f"short body: {status} after {held:.1f} s (BODY_TIMEOUT_S={SLOW_TIMEOUT_S})")
    assert status == 408 and b"body_timeout" in data


def test_headers_sent_a_byte_a_second_are_closed_within_the_timeout(system):
    """The slowloris client: 20 of them, each dripping its request line one byte a second."""
    socks = [socket.create_connection(_address(system), timeout=WAIT_S) for _ in range(20)]
    try:
        line = b"GET /v1/taxonomy HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        closed: set[int] = set()
        for byte in line:
            for i, sock in enumerate(socks):
                if i in closed:
                    continue
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed.add(i)
            if len(closed) == len(socks):
                break
            time.sleep(1)
        statuses = []
        for sock in socks:
            try:
                statuses.append(_answer(sock)[0])
            except (ConnectionResetError, IndexError, ValueError):
                statuses.append(0)  # closed before the 408 could be read
    finally:
        for sock in socks:
            sock.close()
    assert set(statuses) <= {408, 0} and statuses.count(408) >= 1, statuses
