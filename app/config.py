"""Settings of the service: every engine knob plus the server's own, validated once at start.

Each field reads the environment variable ``BATCHSERVE_<FIELD>`` (e.g. ``BATCHSERVE_PORT``,
``BATCHSERVE_MAX_BATCH_SIZE``); CLI flags override the environment. An empty variable means
the default; ``none`` switches off an optional limit (``BATCHSERVE_REQUEST_TIMEOUT_S=none``).
A ``BATCHSERVE_*`` variable that names no setting is an error (`unknown_variables`), except
``BATCHSERVE_TEST_*``, which belong to the test suite. Nothing else in the project reads
``os.environ``.
"""

from __future__ import annotations

import difflib
import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .batching.config import BatchProcessorConfig


class LogFormat(enum.StrEnum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


ENV_PREFIX: Final = "BATCHSERVE_"
TEST_PREFIX: Final = "BATCHSERVE_TEST_"
MIN_ADMIN_TOKEN_CHARS: Final = 16
#: Engine fields the service names otherwise (``instances`` is ``model_instances``).
HIDDEN_SETTINGS: Final = frozenset({"instances"})
HIDDEN_VARIABLES: Final = frozenset(ENV_PREFIX + name.upper() for name in HIDDEN_SETTINGS)
_NONE_WORDS: Final = frozenset({"none", "null", "off"})


class Settings(BaseSettings, BatchProcessorConfig):
    """The whole configuration: the engine's fields (see `BatchProcessorConfig`) and these."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
        case_sensitive=False,
        env_ignore_empty=True,
    )

    model_instances: int = Field(
        1,
        ge=1,
        le=64,
        description="Model instances: batches run at once, each on its own thread (a factory"
        " model gets its own copy per instance).",
    )
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind (0 = any free port).")
    model: str = Field(
        "",
        description="Model reference: 'pkg.module:attr' or a .onnx/.joblib/.pkl/.pt file;"
        " empty = the embedded digits classifier.",
    )
    model_path: str = Field(
        "",
        description="Directories searched first for a 'module:attr' model, separated by"
        " ':' (then PYTHONPATH, installed packages and the working directory).",
    )
    model_name: str = Field(
        "", pattern=r"^[A-Za-z0-9_.-]*$", description="Served model name (default: derived)."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for /admin routes, at least 16 characters; unset = admin"
        " disabled. From the environment only, never a flag (the process table is public).",
    )
    admin_token_file: Path | None = Field(
        None,
        description="A file holding the admin token (e.g. a mounted Kubernetes Secret), instead"
        " of BATCHSERVE_ADMIN_TOKEN.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest accepted request body (bytes); bodies decoded value by value"
        " (JSON, msgpack lists) may be an eighth of it.",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line plus headers (bytes); 431 and close past it.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send a request's headers (s); 408 past it."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest pause while a request body arrives (s); 408 past it."
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, description="How long an idle keep-alive connection stays open (s)."
    )
    max_connections: int = Field(
        0,
        ge=0,
        description="Open connections at most; idle ones are closed to make room, else new"
        " ones get 503 (0 = derived from the open-file limit).",
    )
    request_timeout_s: float | None = Field(
        30.0, gt=0, description="Default per-request deadline (s); None = none."
    )
    max_request_timeout_s: float = Field(
        300.0, gt=0, description="Largest deadline a client may ask for (s)."
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On shutdown, how long accepted work may still run (s)."
    )
    shutdown_grace_s: float = Field(
        0.0,
        ge=0,
        description="On shutdown, how long to keep serving while readiness reports 503 (s).",
    )
    warmup: bool = Field(True, description="Run one batch through the model before ready.")
    ready_when_paused: bool = Field(
        False,
        description="Keep readiness 200 while /admin/pause holds the queue (default 503, so a"
        " load balancer sends new work to other replicas).",
    )
    fast_path: bool = Field(
        True,
        description="Serve inference requests (/predict, V2 infer) outside the web framework.",
    )
    log_format: LogFormat = Field(LogFormat.TEXT, description="text or json log lines.")
    log_level: str = Field(
        "info", pattern=r"^(?i:critical|error|warning|info|debug)$", description="Log level."
    )
    access_log: bool = Field(True, description="One log line per request.")

    @field_validator(
        "request_timeout_s", "item_timeout", "priority_aging", "max_batch_memory_mb", mode="before"
    )
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        """``none`` (or ``off``, ``null``) switches an optional limit off."""
        if isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
            return None
        return value

    @model_validator(mode="after")
    def _check_server(self) -> Self:
        if (
            self.request_timeout_s is not None
            and self.request_timeout_s > self.max_request_timeout_s
        ):
            raise ValueError("request_timeout_s must not exceed max_request_timeout_s")
        if self.admin_token_file is not None:
            if self.admin_token is not None:
                raise ValueError("set admin_token or admin_token_file, not both")
            # Frozen: the token read from the file takes the place of the variable.
            object.__setattr__(self, "admin_token", _read_token(self.admin_token_file))
        token = self.admin_token
        if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters long"
                " (a short one falls to guessing); generate one with: openssl rand -hex 24"
            )
        return self

    @property
    def model_search_path(self) -> list[str]:
        """`model_path` as a list of directories."""
        return [part for part in self.model_path.split(os.pathsep) if part.strip()]

    def engine_config(self) -> BatchProcessorConfig:
        """The engine's part of the settings (`model_instances` is the engine's `instances`)."""
        values = {name: getattr(self, name) for name in BatchProcessorConfig.model_fields}
        values["instances"] = self.model_instances
        return BatchProcessorConfig(**values)

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show (the admin token is reduced to whether it is set)."""
        data = self.model_dump(mode="json", exclude={"admin_token"})
        data["admin_enabled"] = self.admin_token is not None
        return data


def _read_token(path: Path) -> SecretStr:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cannot read admin_token_file {str(path)!r}: {type(exc).__name__}"
        ) from None
    return SecretStr(text.strip())


def unknown_environment() -> list[str]:
    """`unknown_variables` of this process's environment."""
    return unknown_variables(os.environ)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``BATCHSERVE_*`` variables in `environ` that name no setting, each with the nearest
    setting's variable when there is one (a misspelling would otherwise be ignored)."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} - HIDDEN_VARIABLES
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1)
        problems.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return problems
