"""When the large-image Fast DDS profile is applied, and what the node reports about its camera transport."""
from __future__ import annotations

from pathlib import Path

from specvla_ros.ros.dds_profile import PROFILE_VARIABLES, export_lines, profile_path, use_large_image_profile
from specvla_ros.ros.image_qos import describe_image_qos

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_images.xml"


def test_applied_only_when_nothing_can_leave_this_machine() -> None:
    local = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    setup = use_large_image_profile(local)
    assert local[PROFILE_VARIABLES[0]] == str(PROFILE) and PROFILE_VARIABLES[1] not in local
    assert setup.ours and "shared memory 32 MB, UDP on loopback" in setup.describe()
    for environ in ({}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
                    {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": "192.168.1.7"},
                    {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}):
        before = dict(environ)
        setup = use_large_image_profile(environ)
        assert environ == before and not setup.ours
    assert "512 kB shared-memory segment" in use_large_image_profile({}).describe()
    assert "rmw_cyclonedds_cpp (its own configuration)" == use_large_image_profile(
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}).describe()


def test_a_users_own_profile_wins_and_humble_gets_its_variable() -> None:
    own = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}
    setup = use_large_image_profile(own)
    assert own["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml" and "(your own)" in setup.describe()
    humble = {"ROS_LOCALHOST_ONLY": "1", "ROS_DISTRO": "humble"}
    use_large_image_profile(humble)
    assert humble == {"ROS_LOCALHOST_ONLY": "1", "ROS_DISTRO": "humble", PROFILE_VARIABLES[1]: str(PROFILE)}


def test_profile_keeps_udp_on_loopback_and_is_printed_for_other_terminals() -> None:
    assert profile_path() == PROFILE
    text = PROFILE.read_text()
    assert "<address>127.0.0.1</address>" in text and "<useBuiltinTransports>false</useBuiltinTransports>" in text
    assert "<segment_size>33554432</segment_size>" in text
    assert f"export FASTDDS_DEFAULT_PROFILES_FILE={PROFILE}" in export_lines()
    assert describe_image_qos("reliable") == "reliable (reliable, keep last 5)"
    assert describe_image_qos("sensor_data") == "sensor_data (best effort, keep last 5)"


def test_cli_image_qos_choices_match_the_node() -> None:
    from specvla_ros.bag_arguments import IMAGE_QOS_CHOICES as CLI_CHOICES
    from specvla_ros.ros.image_qos import IMAGE_QOS_CHOICES

    assert CLI_CHOICES == IMAGE_QOS_CHOICES
