"""The limits of a server that faces the network, from the settings (nginx and gunicorn have
the same ones: header size, header and body timeouts, keep-alive, open connections)."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

from ..config import Settings

_FD_RESERVE: Final = 64  # descriptors kept for everything else: logs, the model's files...
_MAX_DERIVED: Final = 4096


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; times in seconds."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The settings' limits, `max_connections` 0 resolved from the open-file limit."""
        return cls(
            settings.max_header_bytes,
            settings.header_timeout_s,
            settings.body_timeout_s,
            settings.keep_alive_timeout_s,
            settings.max_connections or derived_max_connections(),
        )

    @property
    def tick_s(self) -> float:
        """How often a connection checks its deadline: timeouts fire at most this late."""
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.keep_alive_timeout_s)
        return max(0.01, min(1.0, shortest / 4))


def derived_max_connections() -> int:
    """Open connections the process can hold: its soft open-file limit less a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_DERIVED
    return max(1, min(_MAX_DERIVED, soft - _FD_RESERVE))
