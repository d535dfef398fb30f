"""The image builds with the onnx and sklearn extras, serves the embedded model, drains on
SIGTERM, and serves a real ONNX model, a joblib scikit-learn model and a Python model from a
read-only /models mount with the answers onnxruntime and scikit-learn give on the host:
`scripts/container_test.sh` on a private Docker engine (needs root, dockerd and debootstrap;
see the script's header)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "container_test.sh"


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in ("dockerd", "docker", "debootstrap") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_container_serves_models_from_a_read_only_mount_and_drains_on_sigterm() -> None:
    missing = _missing_prerequisites()
    if missing:
        reason = (
            f"container test needs {', '.join(missing)} (apt-get install docker.io debootstrap)"
        )
        if os.environ.get("BATCHSERVE_TEST_REQUIRE_TOOLS") != "1":
            pytest.skip(reason)
        if "root" in missing:
            pytest.fail(f"{reason}; BATCHSERVE_TEST_REQUIRE_TOOLS=1 requires it")
        # As root the script installs docker.io and debootstrap itself.
    # The models are made, and their answers computed, with this interpreter's onnx,
    # onnxruntime and scikit-learn.
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    assert result.returncode == 0, _report(result.stdout + result.stderr)


def _report(output: str) -> str:
    """The script's own lines (steps, the drain summary, problems) before the container's
    JSON log, which can run to thousands of lines."""
    own = [line for line in output.splitlines() if not line.startswith('{"time"')]
    return "\n".join(own)[-12000:] + "\n--- end of output ---\n" + output[-3000:]
