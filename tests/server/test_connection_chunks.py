"""How the uvicorn door tells a chunk that can complete at most one request (parsed in one
call) from one that may hold several pipelined requests (parsed request by request)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from batchserve.server.doors.requests import HEAD_END, one_head_end

# Bytes that make head ends and near misses likely.
PIECES = st.sampled_from([b"\r", b"\n", b"\r\n", HEAD_END, b"x", b"POST / HTTP/1.1", b"\r\r"])


@given(st.lists(PIECES, max_size=40).map(b"".join))
@settings(deadline=None)
def test_a_chunk_is_one_request_exactly_when_at_most_one_head_ends_in_it(data: bytes) -> None:
    assert one_head_end(data) == (data.count(HEAD_END) <= 1)


def test_a_body_with_carriage_returns_after_the_head_is_still_one_request() -> None:
    chunk = b"POST /predict HTTP/1.1\r\ncontent-length: 5\r\n\r\n\r\x0d\r\n\r"
    assert one_head_end(chunk)


def test_two_pipelined_heads_are_seen() -> None:
    head = b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    assert not one_head_end(head + head)
