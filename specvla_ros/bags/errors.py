"""The one error the bag tools raise on purpose."""
from specvla_ros.core.errors import SpecVLAError


class BagError(SpecVLAError):
    """A bag that cannot be used: missing, corrupt, lacking a topic, or holding an unsupported type.

    The message names the bag and says what to do (which topics it has, which types work).
    """
