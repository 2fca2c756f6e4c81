"""Typed errors for the simulator: raised for caller mistakes, with what to do in the message."""

from specvla_ros.core.errors import SpecVLAError


class SimError(SpecVLAError, ValueError):
    """A simulator call was used wrongly (unknown task, step before reset, wrong action shape)."""
