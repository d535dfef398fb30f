"""What a newcomer runs first, run as they run it: `batchserve serve` inside a project that has
its own `app` package, and a model that cannot be loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import free_port, wait_ready

pytestmark = pytest.mark.e2e
BATCHSERVE = Path(sys.executable).with_name("batchserve")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def test_a_project_with_its_own_app_package_serves_its_model(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "model.py").write_text(
        "import numpy as np\n\n\ndef predict(batch):\n    return np.asarray(batch) * 3\n"
    )
    port = free_port()
    env = _env(PYTHONPATH=".", BATCHSERVE_MODEL="app.model:predict")
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BATCHSERVE), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        answer = httpx.post(f"{url}/predict", json={"instances": [[1.0, 2.0]]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [[3.0, 6.0]]}
        assert httpx.get(f"{url}/v2/models/predict").status_code == 200  # the attribute's name
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize(
    ("reference", "says"),
    [("no_such_module:predict", "cannot import module"), ("/nowhere/model.onnx", "not found")],
)
def test_a_model_that_cannot_load_stops_the_start_with_its_message_alone(
    tmp_path: Path, reference: str, says: str
) -> None:
    done = subprocess.run(
        [str(BATCHSERVE), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(BATCHSERVE_MODEL=reference),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
