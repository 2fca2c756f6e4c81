"""Why a replay's frames went unanswered, in a sentence that says what to do.

`bag-replay --lockstep` used to wait 30 s per frame and exit 3 with no hint when 640x480 frames
never crossed Fast DDS (best effort beyond the 512 kB shared-memory segment; bench/image_transport.py).
"""
from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy

from specvla_ros.ros.dds_profile import DdsSetup, profile_variable

# Fast DDS's default shared-memory segment is 512 KiB; a frame this large or larger goes over UDP fragments.
DEFAULT_SEGMENT_BYTES = 512 * 1024


def qos_reliability(profile: QoSProfile) -> str:
    return "reliable" if profile.reliability == ReliabilityPolicy.RELIABLE else "best effort"


def delivery_hint(largest_frame_bytes: int, image_qos: str, node_camera_qos: str | None, setup: DdsSetup,
                  compressed: bool) -> str:
    """The likeliest reason the node answered no frame (or not all), from what the player knows."""
    best_effort = image_qos != "reliable" or node_camera_qos == "best effort"
    if (best_effort and largest_frame_bytes >= DEFAULT_SEGMENT_BYTES - 4096 and not setup.ours
            and setup.rmw.startswith("rmw_fastrtps")):
        ours = "config/fastdds_large_images.xml"
        profile = (f"run with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, so specvla uses {ours}" if setup.profile is None
                   else f"point {profile_variable()} at {ours}")
        return (f"frames of up to {largest_frame_bytes / 1000:.0f} kB went unanswered over best effort with "
                f"{setup.describe()}. Fast DDS loses nearly every such frame (1 of 60 at 640x480 rgb8 here). Either "
                f"{profile} (shared memory; `specvla dds-profile`), or pass --image-qos reliable and start the node "
                "with -p topics.image_qos:=reliable")
    kind = "compressed " if compressed else ""
    return (f"the node answered no {kind}frame, or not all, though they reached it as far as this player can tell "
            f"({image_qos} publisher, node subscription {node_camera_qos or 'unseen'}): read its /diagnostics (a "
            "refused image or a model error is reported there); with --wait-for command the node also needs "
            "dry_run false and enabled")
