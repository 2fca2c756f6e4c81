"""Which model pair a command decodes with: the user's `--model`/`--draft`, else the embedded pair.

The embedded pair ships inside the package, in specvla_ros/models/tabletop/ (model card in its
README.md): a tiny VLA trained on the simulation's expert demonstrations and DAgger corrections,
and a draft head trained against it. Every command that runs without `--model` (the demo,
sim-eval, the bag tools, libero-eval, the benchmarks) takes it from `model_pair`, so they agree on
what "the default" is and say so the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from specvla_ros.core.errors import CheckpointError

BUNDLED = Path(__file__).parent / "tabletop"
# Measured closed-loop success of the bundled target (model card); printed by the demo.
BUNDLED_SUCCESS = "56 of 60 evaluation episodes with AR decoding (pick 17/20, push 20/20, place 19/20)"


@dataclass(frozen=True)
class ModelPair:
    """A target checkpoint folder and the draft head trained for it (None: none given)."""

    target_path: Path
    draft_path: Path | None
    description: str
    embedded: bool = False
    caveats: tuple[str, ...] = ()


def embedded_pair() -> ModelPair:
    """The bundled tabletop pair; CheckpointError when the package was installed without its models."""
    if not (BUNDLED / "target" / "config.json").is_file() or not (BUNDLED / "draft" / "config.json").is_file():
        raise CheckpointError(f"the embedded model pair is missing from {BUNDLED}: reinstall specvla_ros with its "
                              "package data (`make setup` or `pip install .`; colcon installs it too), or pass "
                              "--model and --draft")
    return ModelPair(
        BUNDLED / "target", BUNDLED / "draft", f"bundled tabletop pair ({BUNDLED})", embedded=True,
        caveats=(f"the tiny VLA succeeds in {BUNDLED_SUCCESS}, in simulation only "
                 "(model card: specvla_ros/models/tabletop/README.md)",))


def model_pair(model: Path | str | None, draft: Path | str | None = None,
               log: Callable[[str], None] | None = None) -> ModelPair:
    """`--model`/`--draft` as given, else the embedded target with the given draft or the embedded one.

    A draft head belongs to its target, so `--model` without `--draft` gives no draft (the caller
    says whether it needs one). `log` hears "model: ..." when the embedded pair is chosen.
    """
    if model is not None:
        return ModelPair(Path(model), None if draft is None else Path(draft), str(model))
    pair = embedded_pair()
    if draft is not None:
        pair = ModelPair(pair.target_path, Path(draft), f"{pair.description} with the draft head {draft}",
                         embedded=True, caveats=pair.caveats)
    if log is not None:
        log(f"model: {pair.description}")
    return pair
