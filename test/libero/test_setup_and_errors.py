"""Setup helpers, config checks and the error a user without the LIBERO extra gets (default venv)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specvla_ros.cli import build_parser
from specvla_ros.cli import main as cli_main
from specvla_ros.libero import env as libero_env
from specvla_ros.libero.errors import LiberoSetupError, LiberoUsageError
from specvla_ros.libero.install import config_dict, config_yaml, link_assets

REPO = Path(__file__).resolve().parents[2]
without_extra = pytest.mark.skipif(libero_env.is_available(), reason="the LIBERO extra is installed here")


@without_extra
def test_env_without_the_extra_says_to_run_setup_libero() -> None:
    with pytest.raises(LiberoSetupError, match="make setup-libero"):
        libero_env.LiberoEnv()


@without_extra
def test_cli_without_the_extra_exits_with_the_setup_hint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["libero-eval", "--task", "0", "--episodes", "1", "--out", str(tmp_path)])
    assert "make setup-libero" in str(exit_info.value.code)
    assert not (tmp_path / "results.json").exists()


def test_missing_config_is_an_error_not_a_stdin_prompt(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "nowhere"))
    assert libero_env.config_file() == tmp_path / "nowhere" / "config.yaml"
    assert not libero_env.is_available()
    with pytest.raises(LiberoSetupError, match="setup-libero"):
        libero_env.import_libero()


def test_config_validation() -> None:
    with pytest.raises(LiberoUsageError, match="known"):
        libero_env.LiberoConfig(suite="libero_100")
    with pytest.raises(LiberoUsageError):
        libero_env.LiberoConfig(max_steps=0)
    assert libero_env.LiberoConfig(suite="libero_10").step_limit == 520
    assert libero_env.LiberoConfig(max_steps=3).step_limit == 3


def test_cli_has_the_verb_and_its_defaults() -> None:
    args = build_parser().parse_args(["libero-eval", "--out", "x"])
    assert (args.suite, args.task, args.episodes, args.mode, args.center_crop) == (
        "libero_spatial", ["0"], 5, "speculative", "auto")
    args = build_parser().parse_args(["libero-install"])
    assert args.config_dir == Path(sys.prefix) / "libero"  # each venv has its own LIBERO config


def test_install_writes_libero_paths_and_links_assets(tmp_path: Path) -> None:
    package, assets = tmp_path / "site" / "libero" / "libero", tmp_path / "assets"
    package.mkdir(parents=True)
    assets.mkdir()
    link = link_assets(package, assets)
    assert link.is_symlink() and link.resolve() == assets.resolve()
    assert link_assets(package, assets) == link  # idempotent
    config = config_dict(package)
    assert set(config) == {"benchmark_root", "bddl_files", "init_states", "datasets", "assets"}
    assert config["init_states"].endswith("init_files")
    assert yaml.safe_load(config_yaml(config)) == config
    odd = {"assets": "/a path/with: colon/and 'quotes'/#hash"}
    assert yaml.safe_load(config_yaml(odd)) == odd


def test_setup_libero_leaves_the_default_venv_alone(tmp_path: Path) -> None:
    """A dry run of `make setup-libero` writes only into its own venv."""
    venv = tmp_path / "venv-libero"
    env = {**os.environ, "MAKEFLAGS": ""}
    out = subprocess.run(["make", "-n", "setup-libero", f"LIBERO_VENV={venv}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"python3 -m venv {venv}" in out.stdout
    assert f"{venv}/bin/python -m pip install --quiet --no-deps -r requirements-libero.txt" in out.stdout
    assert f"{venv}/bin/specvla libero-install --config-dir {venv}/libero" in out.stdout
    assert ".venv/" not in out.stdout.replace(f"{venv}/", "")
