"""The source tree in app/ installs as the import package `batchserve`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import batchserve

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_for_installation() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = ROOT / config["package-dir"]["batchserve"]
    on_disk = {
        ".".join(("batchserve", *init.parent.relative_to(source).parts))
        for init in source.rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk


def test_the_package_exports_the_engine_and_the_client() -> None:
    from batchserve import BatchPriority, BatchProcessor, Client

    assert BatchProcessor.__module__ == "batchserve.batching.processor"
    assert Client.__module__ == "batchserve.client"
    assert BatchPriority.HIGH < BatchPriority.LOW
    assert set(batchserve.__all__) >= {"BatchProcessor", "Client", "__version__"}
