"""The requests waiting in line on a connection (`batchserve.server.doors.connection`), and
how a received chunk is told to hold at most one request's head."""

from __future__ import annotations

from typing import Final, Protocol

from ..inference.exchange import Exchange

HEAD_END: Final = b"\r\n\r\n"


def one_head_end(data: bytes) -> bool:
    """At most one request head ends in `data`. A second needs a CR after the first; bodies
    (JSON above all) rarely hold one, and looking for one byte is the cheapest scan."""
    first = data.find(HEAD_END)
    if first < 0:
        return True
    rest = first + len(HEAD_END)
    return data.find(b"\r", rest) < 0 or data.find(HEAD_END, rest) < 0


class Request(Protocol):
    """A request on a connection, in its place in line."""

    complete: bool  # its whole body is in
    started: bool

    @property
    def starts_early(self) -> bool:
        """Starts before its body is in (it reads the body itself)."""
        ...

    @property
    def closes(self) -> bool:
        """Its answer closes the connection by itself."""
        ...

    def start(self) -> None: ...

    def lost(self) -> None: ...


class Exchanged:
    """A request served by an `Exchange`; it starts once its body is in and it is first."""

    __slots__ = ("body", "complete", "exchange", "keep_alive", "refusal", "started")

    exchange: Exchange  # set right after construction
    starts_early = False
    closes = False  # its answer is written by `Connection.answer`, which closes if need be

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.complete = False
        self.started = False
        self.refusal: BaseException | None = None

    def start(self) -> None:
        self.started = True
        if self.refusal is not None:
            self.exchange.refuse(self.refusal)
        else:
            body, self.body = self.body, bytearray()  # handed over whole, not copied
            self.exchange.start(body)

    def lost(self) -> None:
        self.exchange.client_gone()
