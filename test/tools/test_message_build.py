"""The no-ROS message build fails loudly on a malformed .msg file."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_malformed_msg_fails_with_clear_message(tmp_path: Path) -> None:
    for name in ("CMakeLists.txt", "package.xml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "msg", tmp_path / "msg")
    (tmp_path / "tools").mkdir()
    shutil.copy(REPO / "tools" / "build_messages.sh", tmp_path / "tools")
    (tmp_path / "msg" / "DecodeStats.msg").write_text("float32 fine\nfloot32[ broken_field\n")

    venv = Path(sys.prefix)
    generated = venv / "lib" / "specvla_ros_messages" / "msg" / "__init__.py"  # this venv's good build
    built_at = generated.stat().st_mtime_ns
    result = subprocess.run(
        [str(tmp_path / "tools" / "build_messages.sh"), str(venv)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "message build failed" in result.stderr
    assert "DecodeStats" in result.stderr and "floot32" in result.stderr
    # Nothing half-built lands in the (temporary) checkout or replaces the venv's message classes.
    assert not (tmp_path / "specvla_ros" / "msg").exists()
    assert generated.stat().st_mtime_ns == built_at
