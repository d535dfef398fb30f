"""Settings: environment variables, CLI flags, validation messages without secrets."""

from __future__ import annotations

import os

import pytest

from batchserve.__main__ import build_parser, load_settings
from batchserve.batching import BatchProcessingStrategy
from batchserve.config import LogFormat, Settings


def test_defaults_serve_the_embedded_model_on_port_8000(monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("BATCHSERVE_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.port == 8000
    assert settings.model == ""
    assert settings.drain_timeout_s == 30.0
    assert settings.admin_token is None


def test_environment_variables_set_every_kind_of_field(monkeypatch) -> None:
    monkeypatch.setenv("BATCHSERVE_PORT", "9001")
    monkeypatch.setenv("BATCHSERVE_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("BATCHSERVE_PROCESSING_STRATEGY", "fixed")
    monkeypatch.setenv("BATCHSERVE_ENABLE_PRIORITY_QUEUE", "false")
    monkeypatch.setenv("BATCHSERVE_LOG_FORMAT", "json")
    monkeypatch.setenv("BATCHSERVE_ADMIN_TOKEN", "tok")
    settings = Settings()
    assert settings.port == 9001
    assert settings.max_batch_size == 16
    assert settings.initial_batch_size == 16  # follows a smaller max
    assert settings.processing_strategy is BatchProcessingStrategy.FIXED
    assert settings.enable_priority_queue is False
    assert settings.log_format is LogFormat.JSON
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "tok"
    engine = settings.engine_config()
    assert engine.max_batch_size == 16
    assert engine.enable_priority_queue is False


def test_cli_flags_override_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BATCHSERVE_PORT", "9001")
    args = vars(build_parser().parse_args(["serve", "--port", "9002", "--max-batch-size", "8"]))
    args.pop("command")
    settings = load_settings(args)
    assert settings.port == 9002
    assert settings.max_batch_size == 8


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BATCHSERVE_PORT": "http"}, "port"),
        ({"BATCHSERVE_MAX_BATCH_SIZE": "0"}, "max_batch_size"),
        ({"BATCHSERVE_MIN_BATCH_SIZE": "64", "BATCHSERVE_MAX_BATCH_SIZE": "8"}, "min_batch_size"),
        ({"BATCHSERVE_MEMORY_WARNING_THRESHOLD": "99"}, "memory_warning_threshold"),
        ({"BATCHSERVE_LOG_LEVEL": "loud"}, "log_level"),
        ({"BATCHSERVE_MODEL_NAME": "bad name/"}, "model_name"),
    ],
)
def test_bad_settings_exit_with_a_message_naming_them(monkeypatch, capsys, env, named) -> None:
    monkeypatch.setenv("BATCHSERVE_ADMIN_TOKEN", "never-print-this-token")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings({})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err
    assert "never-print-this-token" not in err


def test_public_settings_hide_the_admin_token() -> None:
    settings = Settings(admin_token="abc123secret")
    public = settings.public_dict()
    assert "admin_token" not in public
    assert public["admin_enabled"] is True
    assert "abc123secret" not in repr(settings)
