"""The Fast DDS profile that carries full-size camera frames between processes on one machine.

Fast DDS's default shared-memory segment is 512 kB: a larger frame (640x480 rgb8 is 921 kB) goes
over UDP in 64 kB fragments instead, and with best-effort QoS nearly every frame loses one (1 of
60 arrived at 30 Hz here; bench/image_transport.py). config/fastdds_large_images.xml gives shared
memory a 32 MB segment and keeps UDP on 127.0.0.1. It matters in the process that *writes* the
frames (the camera, bag-replay, the sim bridge), so the rule below is applied by every entry point
of this package, and `specvla dds-profile` prints the lines that set it in any other terminal.

No rclpy here: the variables must be set before the first participant exists, i.e. before
rclpy.init().
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

PROFILE_NAME = "fastdds_large_images.xml"
# Fast DDS 3 (Kilted and later) reads the first; Fast DDS 2 (Humble, and Jazzy: its wheels ship
# libfastrtps 2.14) only the second, which Fast DDS 3's rmw still honours but warns about in every
# process: set only the one the installed distro reads.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FAST_DDS_2_DISTROS = ("humble", "jazzy")


def fast_dds_2(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this ROS install's Fast DDS is version 2: from ROS_DISTRO (a sourced distro sets it), else,
    for the PyPI wheels in this interpreter's prefix (no ROS_DISTRO), from the Fast DDS library they ship."""
    environ = os.environ if environ is None else environ
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return distro in FAST_DDS_2_DISTROS
    library = Path(sys.prefix) / "lib"
    return not any(library.glob("libfastdds.so*")) and any(library.glob("libfastrtps.so.2*"))


def profile_variable(environ: MutableMapping[str, str] | None = None) -> str:
    """The variable this ROS install's Fast DDS reads its XML profile from."""
    return PROFILE_VARIABLES[1] if fast_dds_2(environ) else PROFILE_VARIABLES[0]


def profile_path() -> Path | None:
    """config/fastdds_large_images.xml in the source checkout or an installed share/specvla_ros/config."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / "specvla_ros" / "config" / PROFILE_NAME for prefix in prefixes]
    return next((path for path in candidates if path.is_file()), None)


@dataclass(frozen=True)
class DdsSetup:
    """Which DDS configuration this process runs with, for logs and diagnostics."""

    rmw: str
    profile: Path | None   # the Fast DDS XML profile in effect, if any
    ours: bool              # the profile is config/fastdds_large_images.xml

    def describe(self) -> str:
        if not self.rmw.startswith("rmw_fastrtps"):
            return f"{self.rmw} (its own configuration)"
        if self.profile is None:
            return ("Fast DDS defaults (512 kB shared-memory segment: best-effort frames above ~500 kB are lost; "
                    "see `specvla dds-profile`)")
        if self.ours:
            return f"Fast DDS profile {self.profile} (shared memory 32 MB, UDP on loopback)"
        return f"Fast DDS profile {self.profile} (your own)"


def _only_this_machine(environ: MutableMapping[str, str]) -> bool:
    """Discovery confined to this machine, with no static peers elsewhere: nothing remote is reachable anyway."""
    local = (environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST"
             or environ.get("ROS_LOCALHOST_ONLY", "") == "1")  # Humble's switch
    return local and not environ.get("ROS_STATIC_PEERS", "").strip()


def current_setup(environ: MutableMapping[str, str] | None = None) -> DdsSetup:
    environ = os.environ if environ is None else environ
    rmw = environ.get("RMW_IMPLEMENTATION", "").strip() or "rmw_fastrtps_cpp"
    # Only what this Fast DDS reads: Fast DDS 2 ignores FASTDDS_DEFAULT_PROFILES_FILE.
    read = PROFILE_VARIABLES[1:] if fast_dds_2(environ) else PROFILE_VARIABLES
    value = next((environ[name] for name in read if environ.get(name)), None)
    profile = Path(value) if value else None
    ours = profile is not None and profile.name == PROFILE_NAME
    return DdsSetup(rmw, profile, ours)


def use_large_image_profile(environ: MutableMapping[str, str] | None = None) -> DdsSetup:
    """Point Fast DDS at config/fastdds_large_images.xml when discovery is confined to this machine.

    Applied only when ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (or ROS_LOCALHOST_ONLY=1) and no
    ROS_STATIC_PEERS: then no other computer is reachable, and the profile (loopback UDP + shared
    memory) loses nothing. A profile you set yourself, or another RMW, is left alone. Call before
    rclpy.init(); returns the setup in effect.
    """
    environ = os.environ if environ is None else environ
    setup = current_setup(environ)
    if setup.profile is not None or not setup.rmw.startswith("rmw_fastrtps") or not _only_this_machine(environ):
        return setup
    path = profile_path()
    if path is None:
        return setup
    environ[profile_variable(environ)] = str(path)
    return current_setup(environ)


def export_lines() -> str:
    """Shell lines that give another terminal (a camera driver, `ros2 bag play`) the same profile."""
    path = profile_path()
    if path is None:
        return "# config/fastdds_large_images.xml not found: run from the checkout or source the install"
    other = [name for name in PROFILE_VARIABLES if name != profile_variable()][0]
    return "\n".join([f"export {profile_variable()}={path}", "export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST",
                      f"# on {'Kilted or later' if other == PROFILE_VARIABLES[0] else 'Humble or Jazzy'}: "
                      f"{other}={path}"])
