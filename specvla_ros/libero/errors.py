"""Typed errors of the LIBERO backend; each message says what to do."""
from specvla_ros.core.errors import SpecVLAError


class LiberoSetupError(SpecVLAError, RuntimeError):
    """LIBERO is missing or incompletely installed (no package, no assets, no config, wrong mujoco)."""


class LiberoUsageError(SpecVLAError, ValueError):
    """A wrong call: unknown suite or task, episode past the suite's initial states, step before reset,
    an action of the wrong shape."""
