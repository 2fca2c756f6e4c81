"""Typed errors for the simulator: raised for caller mistakes, with what to do in the message."""


class SimError(ValueError):
    """A simulator call was used wrongly (unknown task, step before reset, wrong action shape)."""
