"""`batchserve` / `python -m batchserve`: the command line.

`batchserve serve [--host H] [--port P] [--<any-setting> VALUE ...]`: every field of
`batchserve.config.Settings` is a flag (`--max-batch-size 64`), overriding `BATCHSERVE_*` variables.

`batchserve bench [...]`: the load benchmark (`python -m bench.run`); needs a source checkout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .config import HIDDEN_SETTINGS, Settings, unknown_environment

#: Settings that are never flags: a value on the command line is in the process table.
SECRET_SETTINGS = frozenset({"admin_token"})


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser, with one `serve` flag per setting."""
    parser = argparse.ArgumentParser(prog="batchserve", description=__doc__)
    parser.add_argument("--version", action="version", version=f"batchserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP service")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name in HIDDEN_SETTINGS:
            continue
        if name in SECRET_SETTINGS:
            serve.add_argument(flag, dest=name, default=None, help=argparse.SUPPRESS)
            continue
        # argparse formats help with %: a literal one (as in "(%)") must be doubled.
        text = (field.description or "").replace("%", "%%")
        serve.add_argument(flag, dest=name, default=None, metavar="VALUE", help=text)
    # Listed for --help only: main() forwards `bench ...` untouched to the benchmark's parser.
    commands.add_parser("bench", help="run the load benchmark (see `batchserve bench --help`)")
    return parser


def run_bench(argv: list[str]) -> None:
    """Hand over to `bench.run`, which ships with the source tree, not with the package."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "bench" / "run.py").is_file() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        bench = importlib.import_module("bench.run")
    except ImportError as exc:
        sys.stderr.write(
            "batchserve bench: the benchmark is not part of the installed package; run it from "
            f"a source checkout (pip install -e '.[bench]', then `batchserve bench`) ({exc})\n"
        )
        raise SystemExit(2) from None
    bench.main(argv)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment plus CLI overrides; exits with a clear message on error
    (without echoing any input value, so a secret never reaches the terminal or logs)."""
    given_secrets = sorted(k for k in SECRET_SETTINGS if overrides.get(k) is not None)
    problems = [
        f"  --{name.replace('_', '-')}: not accepted on the command line, where every local"
        f" user can read it; set BATCHSERVE_{name.upper()} or BATCHSERVE_{name.upper()}_FILE"
        for name in given_secrets
    ]
    problems += [f"  {name}: no such setting" for name in unknown_environment()]
    if problems:
        sys.stderr.write("batchserve: invalid settings\n" + "\n".join(problems) + "\n")
        raise SystemExit(2)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        sys.stderr.write("batchserve: invalid settings\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `batchserve` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        run_bench(argv[1:])
        return
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    if command == "serve":
        settings = load_settings(args)
        from .server.logs import configure_logging
        from .server.runner import serve

        secrets = [settings.admin_token.get_secret_value()] if settings.admin_token else []
        configure_logging(settings.log_format, settings.log_level, secrets)
        serve(settings)


if __name__ == "__main__":
    main()
