"""shared.logs: the JSON line's fields, the context it reads, and what a request id may be."""

from __future__ import annotations

import json
import logging

from shared.logs import JOB_ID, REQUEST_ID, ContextFilter, JsonFormatter, clean_request_id


def record(message: str = "hello %s", args=("world",), **extra) -> logging.LogRecord:  # noqa: ANN001
    rec = logging.LogRecord("wardrobe.test", logging.WARNING, __file__, 1, message, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    ContextFilter().filter(rec)
    return rec


def test_a_line_is_one_json_object_with_the_context():
    token_r, token_j = REQUEST_ID.set("req-1"), JOB_ID.set("job-1")
    try:
        line = JsonFormatter(service="hedger").format(record())
    finally:
        REQUEST_ID.reset(token_r)
        JOB_ID.reset(token_j)
    out = json.loads(line)
    assert "\n" not in line
    assert out["message"] == "hello world" and out["level"] == "WARNING" and out["logger"] == "wardrobe.test"
    assert (out["service"], out["request_id"], out["job_id"]) == ("hedger", "req-1", "job-1")
    assert out["ts"].endswith("+00:00")


def test_outside_a_request_the_ids_are_left_out_and_a_lines_own_job_id_wins():
    out = json.loads(JsonFormatter().format(record(job_id="own")))
    assert out["job_id"] == "own" and "request_id" not in out and "service" not in out


def test_an_exception_is_kept_in_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record()
        rec.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in out["exc"]


def test_only_short_tokens_are_taken_as_request_ids():
    assert clean_request_id("abc-DEF_1.2") == "abc-DEF_1.2"
    for bad in (None, "", "a b", "x\ny", "é", "a" * 65, '{"forged": 1}'):
        assert clean_request_id(bad) is None, bad
