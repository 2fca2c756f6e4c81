"""When the large-image Fast DDS profile is applied, and what the node reports about its camera transport."""
from __future__ import annotations

from pathlib import Path

from specvla_ros.ros.dds_profile import (
    PROFILE_VARIABLES,
    export_lines,
    fast_dds_2,
    profile_path,
    profile_variable,
    use_large_image_profile,
)
from specvla_ros.ros.qos import describe_image_qos

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_images.xml"


def test_applied_only_when_nothing_can_leave_this_machine() -> None:
    local = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    setup = use_large_image_profile(local)
    this, other = (PROFILE_VARIABLES[1], PROFILE_VARIABLES[0]) if fast_dds_2() else PROFILE_VARIABLES
    assert local[this] == str(PROFILE) and other not in local  # the one this venv's Fast DDS reads
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


def test_a_users_own_profile_wins_and_humble_and_jazzy_get_their_variable() -> None:
    own = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", profile_variable(): "/etc/mine.xml"}
    setup = use_large_image_profile(own)
    assert own[profile_variable()] == "/etc/mine.xml" and "(your own)" in setup.describe()
    for distro in ("humble", "jazzy"):  # Fast DDS 2 (Jazzy's wheels ship libfastrtps 2.14)
        environ = {"ROS_LOCALHOST_ONLY": "1", "ROS_DISTRO": distro}
        use_large_image_profile(environ)
        assert environ == {"ROS_LOCALHOST_ONLY": "1", "ROS_DISTRO": distro, PROFILE_VARIABLES[1]: str(PROFILE)}
    # Fast DDS 2 never reads FASTDDS_DEFAULT_PROFILES_FILE: set there, it is not a profile in effect.
    ignored = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DISTRO": "jazzy", PROFILE_VARIABLES[0]: "/etc/x.xml"}
    assert use_large_image_profile(ignored).ours and ignored[PROFILE_VARIABLES[1]] == str(PROFILE)
    kilted = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DISTRO": "kilted"}
    use_large_image_profile(kilted)
    assert kilted[PROFILE_VARIABLES[0]] == str(PROFILE) and PROFILE_VARIABLES[1] not in kilted


def test_the_venvs_fast_dds_is_recognised_from_its_library() -> None:
    """No ROS_DISTRO with the PyPI wheels: the Fast DDS they ship decides (.venv Kilted: 3, .venv-jazzy: 2)."""
    import sys

    library = Path(sys.prefix) / "lib"
    assert fast_dds_2({}) == bool(list(library.glob("libfastrtps.so.2*")))
    assert fast_dds_2({}) != bool(list(library.glob("libfastdds.so.3*")))


def test_profile_keeps_udp_on_loopback_and_is_printed_for_other_terminals() -> None:
    assert profile_path() == PROFILE
    text = PROFILE.read_text()
    assert "<address>127.0.0.1</address>" in text and "<useBuiltinTransports>false</useBuiltinTransports>" in text
    assert "<segment_size>33554432</segment_size>" in text
    assert f"export {profile_variable()}={PROFILE}" in export_lines()
    assert describe_image_qos("reliable") == "reliable (reliable, keep last 5)"
    assert describe_image_qos("sensor_data") == "sensor_data (best effort, keep last 5)"


def test_cli_image_qos_choices_match_the_node() -> None:
    from specvla_ros.cli.bags import IMAGE_QOS_CHOICES as CLI_CHOICES
    from specvla_ros.ros.qos import IMAGE_QOS_CHOICES

    assert CLI_CHOICES == IMAGE_QOS_CHOICES
