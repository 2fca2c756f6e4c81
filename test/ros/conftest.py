"""Fixtures for tests that use real rclpy (Fast DDS on loopback, see test/conftest.py)."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import Executor


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """A private, initialised rclpy context, shut down after the test."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def spin_until(executor: Executor, done: Callable[[], bool], timeout_s: float) -> bool:
    """Spin `executor` until `done()` is true or `timeout_s` passes; return done()."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    return done()


@pytest.fixture
def make_rig(ros_context):
    """make_rig(decoder, **parameters): a node under test and a tester (test_node.Rig), closed after."""
    from test.ros.test_node import Rig

    rigs: list[Rig] = []

    def make(decoder, **parameters) -> Rig:
        rigs.append(Rig(ros_context, decoder, **parameters))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture(scope="session")
def spec_decoder():
    """Spec-VLA decoder (r = 0) over a real tiny VLA and a draft head trained against it."""
    from specvla_ros.core.config import DecoderConfig
    from specvla_ros.core.decoder import build_decoder
    from test.models import make_pair

    target, head = make_pair(0, train_steps=60)
    return build_decoder(target, head, DecoderConfig(relax_bins=0))
