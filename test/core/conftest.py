"""Fixtures for the core tests (helpers live in test/models.py)."""
from __future__ import annotations

import pytest
import torch

from test.models import make_pair


@pytest.fixture(scope="session")
def trained_pair():
    """A random target and a draft head trained on its own greedy outputs."""
    torch.manual_seed(0)
    return make_pair(0, train_steps=120)
