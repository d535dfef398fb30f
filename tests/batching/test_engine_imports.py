"""The engine knows nothing of HTTP: no module of app/batching imports a web framework or
client, directly or through the other `app` modules it imports."""

from __future__ import annotations

import ast
from pathlib import Path

import batchserve.batching

FORBIDDEN = {"fastapi", "starlette", "uvicorn", "httpx"}
APP_ROOT = Path(batchserve.batching.__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(APP_ROOT.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_file(name: str) -> Path | None:
    """The source file of an `batchserve.*` module, or None for anything else."""
    if name != "app" and not name.startswith("app."):
        return None
    base = APP_ROOT.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_imports() -> dict[Path, set[str]]:
    """Imports of every engine module and of every `app` module they reach."""
    todo = sorted((APP_ROOT / "batching").glob("*.py"))
    found: dict[Path, set[str]] = {}
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found[path] = imported_modules(path)
        for name in found[path]:
            target = module_file(name)
            if target is not None and target not in found:
                todo.append(target)
    return found


def test_the_engine_imports_no_http_framework_or_client() -> None:
    offenders = {
        f"{path.relative_to(APP_ROOT.parent)} imports {name}"
        for path, names in reachable_imports().items()
        for name in names
        if name.split(".")[0] in FORBIDDEN
    }
    assert offenders == set()


def test_the_import_walk_sees_the_whole_engine() -> None:
    walked = {path.name for path in reachable_imports() if path.parent.name == "batching"}
    assert {"processor.py", "queue.py", "execution.py", "health.py", "sizing.py"} <= walked
    assert APP_ROOT / "errors.py" in reachable_imports()
    assert "numpy" in imported_modules(APP_ROOT / "batching" / "execution.py")
