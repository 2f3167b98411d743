"""The container image and both compose deployments, built and run with podman.

deploy/check-image does the work (installing podman and making the base images where they
are missing); this runs it as CI does and fails with its whole output when any step fails.
It takes about 15 s once the base images exist, a few minutes on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[1] / "deploy" / "check-image"


@pytest.mark.timeout(900)
def test_the_image_builds_serves_chat_and_drains_alone_and_in_both_compose_files() -> None:
    done = subprocess.run(
        [str(CHECK)],
        env=os.environ | {"PYTHON": sys.executable},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, f"deploy/check-image failed:\n{done.stdout}"
    assert "check-image: all checks passed" in done.stdout, done.stdout
