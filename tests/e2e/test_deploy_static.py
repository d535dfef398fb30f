"""The container and cluster files are valid and keep the shutdown contract.

`scripts/validate_deploy.sh` runs the real linters (hadolint, Compose v2 `config`,
`kubernetes-validate --strict` on every rendered kustomization); each is one test here,
skipped when its tool is missing unless BATCHSERVE_TEST_REQUIRE_TOOLS=1. The other tests read
the files themselves and need nothing but PyYAML.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate_deploy.sh"
BASE = ROOT / "deploy" / "kubernetes" / "base"
TOOL_MISSING = 127


@pytest.mark.parametrize("check", ["hadolint", "compose", "kubernetes"])
def test_validate_deploy_check_passes(check: str) -> None:
    # The interpreter running the tests is the one with the PyPI-shipped tools.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), check],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode == TOOL_MISSING:
        reason = f"{check}: tool missing\n{output}"
        if os.environ.get("BATCHSERVE_TEST_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{reason}\nBATCHSERVE_TEST_REQUIRE_TOOLS=1 requires it")
        pytest.skip(reason)
    assert result.returncode == 0, output


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _config_env() -> dict[str, str]:
    lines = (BASE / "config.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _load(BASE / "deployment.yaml")["spec"]["template"]["spec"]
    return spec


def test_termination_grace_outlasts_prestop_plus_drain_deadline() -> None:
    pod = _pod_spec()
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    prestop_s = float(command[1])
    settings = _config_env()
    drain_s = float(settings["BATCHSERVE_DRAIN_TIMEOUT_S"])
    grace_s = float(settings.get("BATCHSERVE_SHUTDOWN_GRACE_S", "0"))
    assert pod["terminationGracePeriodSeconds"] > prestop_s + grace_s + drain_s


def test_probes_use_the_health_routes() -> None:
    (container,) = _pod_spec()["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_pod_runs_unprivileged_on_a_read_only_root() -> None:
    pod = _pod_spec()
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    tmp = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert tmp
    assert all("emptyDir" in v for v in pod["volumes"] if v["name"] in tmp)
    token = {e["name"]: e for e in container["env"]}["BATCHSERVE_ADMIN_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["optional"] is True


def test_every_setting_in_the_config_map_is_a_batchserve_variable() -> None:
    assert all(key.startswith("BATCHSERVE_") for key in _config_env())
    # Service links would add BATCHSERVE_PORT=tcp://... for a Service named batchserve.
    assert _pod_spec()["enableServiceLinks"] is False


def test_compose_stop_grace_outlasts_the_drain_deadline() -> None:
    service = _load(ROOT / "docker-compose.yml")["services"]["batchserve"]
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace is not None
    default_drain = re.search(r":-(\d+)", service["environment"]["BATCHSERVE_DRAIN_TIMEOUT_S"])
    assert default_drain is not None
    assert int(grace.group(1)) > int(default_drain.group(1))


def test_image_runs_as_uid_10001_with_exec_form_entrypoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001(:10001)?$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["batchserve"\]$', runtime, re.M)
    assert re.search(r'^CMD \["serve"\]$', runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/live", runtime, re.M)
    assert "BATCHSERVE_HOST=0.0.0.0" in runtime


def test_compose_default_services_are_built_locally_so_offline_use_pulls_nothing() -> None:
    services = _load(ROOT / "docker-compose.yml")["services"]
    default = {name: s for name, s in services.items() if not s.get("profiles")}
    assert set(default) == {"batchserve"}
    assert all("build" in s for s in default.values())
    # The pulled images are opt-in.
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]


def test_compose_mounts_the_model_folder_read_only_and_passes_the_extras() -> None:
    service = _load(ROOT / "docker-compose.yml")["services"]["batchserve"]
    assert any(volume.endswith(":/models:ro") for volume in service["volumes"])
    assert service["build"]["args"]["EXTRAS"] == "${BATCHSERVE_EXTRAS:-}"


def test_image_builds_with_extras_and_searches_the_models_mount() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # A `# syntax=` directive makes BuildKit pull its frontend from a registry.
    assert not re.search(r"^#\s*syntax\s*=", dockerfile, re.M | re.I)
    builder, runtime = dockerfile.rsplit("\nFROM ", 1)
    assert re.search(r'^ARG EXTRAS=""$', builder, re.M)
    assert '"$1${EXTRAS:+[$EXTRAS]}"' in builder
    assert "BATCHSERVE_MODEL_PATH=/models" in runtime
