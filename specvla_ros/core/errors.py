"""Typed errors. Each message says what was wrong and what to do about it."""


class SpecVLAError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(SpecVLAError, ValueError):
    """A bad observation: image of the wrong shape or dtype, empty instruction, malformed message."""


class ConfigError(SpecVLAError, ValueError):
    """An invalid configuration value (decoder mode, relaxation thresholds, tree sizes, model sizes)."""


class CheckpointError(SpecVLAError):
    """A checkpoint folder that cannot be loaded: missing files, missing or misshapen tensors, pickles."""


class NormStatsError(SpecVLAError):
    """Action statistics that cannot un-normalize actions: unknown unnorm_key, NaN or misshapen values."""
