"""bench/decode_demo.py runs end to end and prints the side-by-side table (no timing asserts)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[2]


def test_decode_demo_prints_all_modes(tmp_path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(REPO / "bench" / "decode_demo.py"), "--repeats", "1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    for label in ("AR greedy", "Spec-VLA r=0", "Spec-VLA r=1", "Spec-VLA r=3"):
        assert label in result.stdout
    assert "r = 0 tokens identical to AR: True" in result.stdout
