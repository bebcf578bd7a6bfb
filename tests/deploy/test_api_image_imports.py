"""The API image has no torch: its CLI and app must start with the GPU stack missing."""

from __future__ import annotations

import subprocess
import sys

from deployfiles import GPU_STACK, ROOT

# Runs in a fresh interpreter with the GPU stack made unimportable, as in docker/api.Dockerfile,
# then does what the image's build step does: `augsearch --help`.
_PROBE = f"""
import importlib.abc, sys

class GpuStackAbsent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(GPU_STACK)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent from the API image)")
        return None

sys.meta_path.insert(0, GpuStackAbsent())
import service.app
import service.cli
sys.argv = ["augsearch", "--help"]
service.cli.app()
"""


def test_blocker_hides_torch_from_the_probe() -> None:
    probe = "import sys\n" + _PROBE.split("import service.app")[0] + "import torch\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0 and "absent from the API image" in result.stderr


def test_cli_and_app_start_without_the_gpu_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, (
        "the API image cannot start: importing service.app / service.cli needs the GPU stack\n"
        + result.stderr[-3000:]
    )
    assert "serve" in result.stdout and "worker" in result.stdout
