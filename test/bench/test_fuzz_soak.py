"""bench/fuzz_soak.py runs end to end on a short setting and writes well-formed output (no timing asserts)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[2]


def test_fuzz_soak_writes_results_and_finds_no_violation(tmp_path) -> None:
    out = tmp_path / "soak"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz_soak.py"), "--warmup", "3",
                             "--seconds", "4", "--camera", "raw", "--compile", "off",
                             "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert report["violations"] == [] and report["exit_code"] == 0
    assert report["total_inputs"] > 50 and report["rss"]["warm_mb"] > 0
    assert "RSS growth after warm-up" in (out / "results.md").read_text()
    assert (out / "rss.png").stat().st_size > 0
