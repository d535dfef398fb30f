"""Settings: environment variables, CLI flags, validation messages without secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchserve.__main__ import build_parser, load_settings
from batchserve.batching import BatchProcessingStrategy
from batchserve.config import LogFormat, Settings, unknown_variables

TOKEN = "a-token-of-24-characters"


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BATCHSERVE_") and not name.startswith("BATCHSERVE_TEST_"):
            monkeypatch.delenv(name)


def test_defaults_serve_the_embedded_model_on_port_8000() -> None:
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
    monkeypatch.setenv("BATCHSERVE_ADMIN_TOKEN", TOKEN)
    settings = Settings()
    assert settings.port == 9001
    assert settings.max_batch_size == 16
    assert settings.initial_batch_size == 16  # follows a smaller max
    assert settings.processing_strategy is BatchProcessingStrategy.FIXED
    assert settings.enable_priority_queue is False
    assert settings.log_format is LogFormat.JSON
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == TOKEN
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
    settings = Settings(admin_token=TOKEN)
    public = settings.public_dict()
    assert "admin_token" not in public
    assert public["admin_enabled"] is True
    assert TOKEN not in repr(settings)


def test_serve_help_lists_every_setting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchserve", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    for name in Settings.model_fields:
        flag = "--" + name.replace("_", "-")
        listed = re.search(rf"{flag}(?![\w-])", flat) is not None
        assert listed is (name not in {"admin_token", "instances"}), flag
    assert "(%)" in flat  # the descriptions that once broke argparse


def test_a_misspelled_variable_stops_the_start_naming_the_setting_it_resembles(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATCHSERVE_MAX_BATCHSIZE", "64")
    with pytest.raises(SystemExit) as exit_info:
        load_settings({})
    assert exit_info.value.code == 2
    assert "BATCHSERVE_MAX_BATCHSIZE (did you mean BATCHSERVE_MAX_BATCH_SIZE?)" in (
        capsys.readouterr().err
    )


def test_the_test_suites_own_variables_are_not_settings() -> None:
    assert unknown_variables({"BATCHSERVE_TEST_REQUIRE_TOOLS": "1", "HOME": "/"}) == []


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "REQUEST_TIMEOUT_S", "ADMIN_TOKEN", "MAX_BATCH_MEMORY_MB", "MODEL"):
        monkeypatch.setenv(f"BATCHSERVE_{name}", "")
    settings = Settings()
    assert (settings.port, settings.request_timeout_s, settings.model) == (8000, 30.0, "")
    assert settings.admin_token is None  # an empty token disables admin, as unset does


@pytest.mark.parametrize("word", ["none", "None", "off"])
def test_none_switches_the_default_deadline_off(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("BATCHSERVE_REQUEST_TIMEOUT_S", word)
    assert Settings().request_timeout_s is None


def test_the_admin_token_is_read_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")  # as a mounted Secret often has it
    settings = Settings(admin_token_file=secret)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == TOKEN


@pytest.mark.parametrize("source", ["variable", "file"])
def test_a_short_admin_token_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    source: str,
) -> None:
    if source == "variable":
        monkeypatch.setenv("BATCHSERVE_ADMIN_TOKEN", "x")
    else:
        (tmp_path / "token").write_text("short-secret")
        monkeypatch.setenv("BATCHSERVE_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(SystemExit):
        load_settings({})
    err = capsys.readouterr().err
    assert "at least 16 characters" in err
    assert "short-secret" not in err


def test_the_admin_token_is_never_a_command_line_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = vars(build_parser().parse_args(["serve", "--admin-token", TOKEN]))
    args.pop("command")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "BATCHSERVE_ADMIN_TOKEN_FILE" in err
    assert TOKEN not in err
