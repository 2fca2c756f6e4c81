"""Test-wide environment: DDS stays on loopback, and each run gets its own DDS domain.

Set before anything imports rclpy. Fast DDS would otherwise multicast discovery to
239.255.0.1 on the machine's network interface, which these machines do not allow. Full-size
camera frames get the shared-memory profile, by the same rule as every entry point of the package
(specvla_ros/ros/dds_profile.py); child processes the tests start inherit it.
"""
import os

from specvla_ros.ros.dds_profile import use_large_image_profile

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
use_large_image_profile()
# A domain per test process keeps concurrent runs (CI beside a developer's run) apart.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("MUJOCO_GL", "osmesa")

import pytest  # noqa: E402  (after the environment above, before anything imports rclpy)


# A synthetic OpenVLA checkpoint (real layout, tiny sizes), written once per session; test/core,
# test/core/openvla and test/training decode it.
@pytest.fixture(scope="session")
def openvla_checkpoint(tmp_path_factory):
    from test.core.openvla.synthetic import TinySpec, write_openvla_checkpoint

    return write_openvla_checkpoint(tmp_path_factory.mktemp("openvla") / "checkpoint", TinySpec(), seed=0)


@pytest.fixture(scope="session")
def single_backbone_checkpoint(tmp_path_factory):
    from test.core.openvla.synthetic import TinySpec, write_openvla_checkpoint

    return write_openvla_checkpoint(tmp_path_factory.mktemp("openvla_single") / "checkpoint", TinySpec(fused=False),
                                    seed=1)
