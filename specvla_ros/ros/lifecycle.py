"""The lifecycle glue rclpy leaves to each managed node.

rclpy's LifecycleNode (Humble and later) serves the standard services (`~/change_state`,
`~/get_state`, `~/get_available_transitions`, ...) and calls the node's on_configure / on_activate /
on_deactivate / on_cleanup / on_shutdown / on_error. Three things it does not give a node:
- the current state's name: it lives in `_state_machine.current_state` (Humble to Kilted alike),
  with no public accessor;
- one way to learn that a transition did not happen: a transition the current state does not allow
  returns ERROR from Jazzy on but raises in Humble, and an exception inside a callback becomes ERROR
  with the reason dropped (the node keeps its own reason, see SpecVLANode);
- a shutdown from wherever the node is: `trigger_shutdown` refuses the transition states.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = "unconfigured", "inactive", "active", "finalized"
TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


def state_of(node: LifecycleNode) -> str:
    """The label of the node's current state: unconfigured, inactive, active, finalized, or a
    transition state (configuring, activating, ...) while a transition runs."""
    return node._state_machine.current_state[1]


def trigger(node: LifecycleNode, transition: str) -> bool:
    """Run one transition (one of TRANSITIONS) in this thread; True when it succeeded."""
    if transition not in TRANSITIONS:
        raise ValueError(f"unknown lifecycle transition '{transition}'; one of {', '.join(TRANSITIONS)}")
    try:
        return getattr(node, f"trigger_{transition}")() == TransitionCallbackReturn.SUCCESS
    except Exception:  # noqa: BLE001 - Humble raises (RCLError) for a transition the state does not allow
        return False
