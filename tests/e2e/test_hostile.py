"""The hostile corpus against the real processes: every kind gets its documented status, none a
5xx, and the workers live on. Photo kinds come from tests/hostile.py; the kinds hostile as HTTP
(a chunked body over the limit, a slow upload, forged keys, malformed forms) are built here."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import MAX_PHOTO_BYTES, OPERATOR_KEY
from tests.factories import jpeg_bytes
from tests.hostile import hostile_photos

pytestmark = pytest.mark.integration
PHOTOS = hostile_photos(MAX_PHOTO_BYTES)


def test_the_corpus_has_at_least_thirty_kinds():
    assert len({p.kind for p in PHOTOS}) + len(HTTP_KINDS) >= 30


@pytest.mark.parametrize("photo", PHOTOS, ids=[p.kind for p in PHOTOS])
def test_each_photo_kind_gets_its_documented_answer(system, photo):
    r = system.http.post("/v1/classifications", params={"wait": 30},
                         files={"photo": (photo.filename, photo.data, "application/octet-stream")})
    assert r.status_code == photo.status, f"{photo.kind}: {r.status_code} {r.text[:300]}"
    body = r.json()
    if photo.status == 200:
        assert body["status"] == "done", f"{photo.kind}: {body}"
    else:
        assert body["error"]["code"] == photo.code and body["error"]["message"]
    assert system.alive("inference") and system.alive("hedger") and system.alive("gateway")


# --- hostile as HTTP -------------------------------------------------------------------------
def _address(system) -> tuple[str, int]:
    url = urlsplit(system.url)
    return url.hostname, url.port


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def _multipart(data: bytes, boundary: str = "hostile") -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}".encode()


def test_chunked_body_over_the_limit_is_cut_while_it_streams(system):
    """No Content-Length: the gateway counts and answers 413 once the limit is passed, without
    waiting for (or spooling) the rest. We offer 200 × the limit (60 MB: more than any socket buffer
    holds) and stop when the answer comes."""
    host, port = _address(system)
    offered, sent = 200 * MAX_PHOTO_BYTES, 0
    chunk = b"\xff" * 16384
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /v1/classifications HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Authorization: Bearer " + OPERATOR_KEY.encode() + b"\r\n"
                     b"Content-Type: multipart/form-data; boundary=hostile\r\n\r\n")
        head = _multipart(b"")[0].split(b"\r\n--hostile--")[0]  # the part's headers; its data follows
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        try:
            while sent < offered:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                sock.settimeout(0.0)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break  # the answer is there
                except BlockingIOError:
                    pass
                finally:
                    sock.settimeout(30)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway closed the connection after answering
        status = _read_status(sock)
    print(f"chunked over-limit body: answered {status} after {sent} of {offered} bytes offered")
    assert status == 413
    assert sent < offered, "the gateway read the whole over-limit body before answering"


def test_a_slow_upload_is_accepted_and_does_not_hold_up_others(system):
    """The photo arrives in 40 pieces, and its second half only once a normal request sent
    meanwhile has been answered: that answer comes while the slow upload is still incomplete
    (whatever the machine's speed), and the slow one is then accepted (202)."""
    host, port = _address(system)
    body, content_type = _multipart(jpeg_bytes((320, 240), seed=7))
    result: dict[str, object] = {}
    half_sent, answered = threading.Event(), threading.Event()

    def slow() -> None:
        with socket.create_connection((host, port), timeout=60) as sock:
            sock.sendall(b"POST /v1/classifications HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + OPERATOR_KEY.encode() + b"\r\n"
                         b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n")
            step = len(body) // 40 + 1
            for n, i in enumerate(range(0, len(body), step)):
                if n == 20:
                    half_sent.set()
                    result["answered_meanwhile"] = answered.wait(60)
                sock.sendall(body[i:i + step])
                time.sleep(0.05)
            result["status"] = _read_status(sock)

    thread = threading.Thread(target=slow)
    thread.start()
    assert half_sent.wait(60)
    r = system.http.post("/v1/classifications", params={"wait": 20},
                         files={"photo": ("p.jpg", jpeg_bytes(seed=8), "image/jpeg")})
    answered.set()
    thread.join(120)
    assert r.status_code == 200 and r.json()["status"] == "done"
    assert result["answered_meanwhile"], "the normal request waited for the slow upload"
    assert result["status"] == 202


def _post(system, **kw):  # noqa: ANN001, ANN003
    return system.http.post("/v1/classifications", **kw)


GOOD = jpeg_bytes(seed=3)
HTTP_KINDS = {
    "no_key": (lambda s: _post(s, files={"photo": ("p.jpg", GOOD)}, headers={"Authorization": ""}),
               401, "unauthenticated"),
    "forged_key": (lambda s: _post(s, files={"photo": ("p.jpg", GOOD)},
                                   headers={"Authorization": "Bearer wdr_0000_forged"}), 401, "unauthenticated"),
    "basic_auth": (lambda s: _post(s, files={"photo": ("p.jpg", GOOD)},
                                   headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), 401, "unauthenticated"),
    "json_instead_of_form": (lambda s: _post(s, json={"photo": "aGVsbG8="}), 422, "invalid_request"),
    "multipart_without_boundary": (lambda s: _post(s, content=b"--x\r\n\r\n",
                                                   headers={"Content-Type": "multipart/form-data"}), 400, None),
    "two_thousand_form_fields": (lambda s: _post(s, data={f"f{i}": "x" for i in range(2000)},
                                                 files={"photo": ("p.jpg", GOOD)}), 400, None),
    "accuracy_out_of_range": (lambda s: _post(s, files={"photo": ("p.jpg", GOOD)}, params={"accuracy": 7}),
                              422, "invalid_request"),
    "wait_out_of_range": (lambda s: _post(s, files={"photo": ("p.jpg", GOOD)}, params={"wait": 1e9}),
                          422, "invalid_request"),
    "job_id_10k_long": (lambda s: s.http.get("/v1/classifications/" + "a" * 10_000), 422, "invalid_request"),
    "job_id_not_a_uuid": (lambda s: s.http.get("/v1/classifications/../../etc/passwd"), 404, None),
    "nul_in_query": (lambda s: s.http.get("/v1/classifications/x", params={"accuracy": "0.9\x00"}), 422,
                     "invalid_request"),
}


@pytest.mark.parametrize("kind", list(HTTP_KINDS))
def test_each_http_kind_gets_its_documented_answer(system, kind):
    send, status, code = HTTP_KINDS[kind]
    r = send(system)
    assert r.status_code == status, f"{kind}: {r.status_code} {r.text[:300]}"
    if code:
        assert r.json()["error"]["code"] == code
    assert system.alive("gateway")
