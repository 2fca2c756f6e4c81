"""A synthetic OpenVLA checkpoint (real layout, tiny sizes) written once per session."""
from __future__ import annotations

import pytest

from test.openvla.synthetic import TinySpec, write_openvla_checkpoint


@pytest.fixture(scope="session")
def openvla_checkpoint(tmp_path_factory):
    return write_openvla_checkpoint(tmp_path_factory.mktemp("openvla") / "checkpoint", TinySpec(), seed=0)


@pytest.fixture(scope="session")
def single_backbone_checkpoint(tmp_path_factory):
    return write_openvla_checkpoint(tmp_path_factory.mktemp("openvla_single") / "checkpoint", TinySpec(fused=False),
                                    seed=1)
