"""The package's import rules (shared/DESIGN.md), checked on the source so a new import cannot drift in.

- core/ is the algorithm and its backbones: it imports no other folder of the package, and no rclpy.
- training/, sim/, bags/ and libero/ run without ROS: no rclpy, nothing from ros/.
- cli/ is the top: no other folder imports it (it imports them).
- The package root holds folders only (and __init__.py): each concept has a room.

Every import counts, also one inside a function: a lazy import still ties the folders together.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "specvla_ros"
CLI = "specvla_ros.cli"
NO_ROS = ("rclpy", "specvla_ros.ros", CLI)

# folder -> module prefixes its files must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": NO_ROS,
    "training": NO_ROS,
    "sim": NO_ROS,
    "bags": NO_ROS,
    "libero": NO_ROS,
    "images": NO_ROS,
    "ros": (CLI,),
    "models": (CLI,),
}
# folder -> the only package modules it may import (besides the standard library and third parties)
CONFINED_TO: dict[str, str] = {"core": "specvla_ros.core"}


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module `source` imports; `module` is its dotted name (for relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(source: str, module: str, folder: str) -> list[str]:
    """The imports of `module` (in `folder`) that break the rules above."""
    found = []
    for name in sorted(imported_modules(source, module)):
        if any(_within(name, banned) for banned in FORBIDDEN.get(folder, ())):
            found.append(name)
        allowed = CONFINED_TO.get(folder)
        if allowed and _within(name, "specvla_ros") and not _within(name, allowed):
            found.append(name)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_keeps_its_import_rules(folder: str) -> None:
    modules = _modules(folder)
    assert modules, f"specvla_ros/{folder}/ has no modules: update FORBIDDEN"
    broken = {}
    for path in modules:
        found = violations(path.read_text(), _dotted(path), folder)
        if found:
            broken[str(path.relative_to(PACKAGE.parent))] = found
    assert not broken, f"forbidden imports (see shared/DESIGN.md, module boundaries): {broken}"


@pytest.mark.parametrize(("folder", "source"), [
    ("core", "import rclpy"),
    ("core", "def load():\n    from specvla_ros.sim.env import TabletopEnv\n"),  # lazy imports count
    ("core", "from ..training import datasets"),                                 # relative ones too
    ("sim", "from specvla_ros.ros.node import SpecVLANode"),
    ("bags", "from rclpy.serialization import serialize_message"),
    ("training", "from specvla_ros import ros"),
    ("ros", "from specvla_ros.cli.arguments import lazy_run"),
])
def test_a_forbidden_import_is_caught(folder: str, source: str) -> None:
    """The check itself: a synthetic module with one forbidden import fails it."""
    assert violations(source, f"specvla_ros.{folder}.synthetic", folder)


def test_allowed_imports_pass() -> None:
    source = "import torch\nfrom specvla_ros.core.decoder import SpeculativeDecoder\nfrom . import acceptance\n"
    assert violations(source, "specvla_ros.core.synthetic", "core") == []
    assert violations("from specvla_ros.core.decoder import SpeculativeDecoder", "specvla_ros.sim.x", "sim") == []


def test_the_package_root_holds_folders_only() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"loose top-level modules {loose}: each belongs in the folder of its concept"
