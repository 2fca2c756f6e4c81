"""`specvla demo` (the README's main job) runs end to end and writes its summary."""
from __future__ import annotations

import json

import pytest

from specvla_ros.cli import main as cli_main


@pytest.mark.slow
def test_demo_runs_the_closed_loop(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["demo", "--seconds", "120", "--max-steps", "2", "--relax-bins", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "demo" / "summary.json").read_text())
    assert summary["episodes"] == 3 and summary["inferences"] >= 6
    assert summary["mode"] == "speculative" and summary["relax_bins"] == 1
    assert [e["steps"] for e in summary["per_episode"]] == [2, 2, 2]
    assert (tmp_path / "out" / "demo" / "demo.png").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "bundled tabletop pair" in printed and "note: " in printed and "summary" in printed
    assert printed.count("  episode ") == 3 and "episode 3/3 " in printed and "acceptance length" in printed
