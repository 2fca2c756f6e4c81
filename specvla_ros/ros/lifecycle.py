"""The lifecycle glue rclpy leaves to each managed node.

rclpy's LifecycleNode (Humble and later) serves the standard services (`~/change_state`,
`~/get_state`, `~/get_available_transitions`, ...) and calls the node's on_configure / on_activate /
on_deactivate / on_cleanup / on_shutdown / on_error. Three things it does not give a node:
- the current state's name: it lives in `_state_machine.current_state` (Humble to Kilted alike),
  with no public accessor;
- one way to learn that a transition did not happen: a transition the current state does not allow
  returns ERROR in Kilted but raises RCLError in Humble and Jazzy (checked on Jazzy 7.1.6), from
  `trigger_*` and from the `~/change_state` service alike. Raised from the service callback, it ends
  the executor's spin: one wrong `ros2 lifecycle set` would stop the node. `answer_refused_transitions`
  makes the service answer `success: false` instead, as Kilted does. An exception inside a callback
  becomes ERROR with the reason dropped (the node keeps its own reason, see SpecVLANode);
- a shutdown from wherever the node is: `trigger_shutdown` refuses the transition states.
"""
from __future__ import annotations

from typing import Any

from lifecycle_msgs.srv import ChangeState
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription

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


def allowed_transitions(node: LifecycleNode) -> list[str]:
    """Labels of the transitions the current state allows (what `~/get_available_transitions` lists)."""
    return [description[1] for description in node._state_machine.available_transitions]


def answer_refused_transitions(node: LifecycleNode) -> None:
    """Make `~/change_state` answer `success: false` for a transition the current state does not allow,
    in every distro (Humble and Jazzy raise it out of the service callback; Kilted answers false).
    The state is unchanged in that case: rcl refuses the transition before any callback runs."""
    service = getattr(node, "_service_change_state", None)  # absent without the communication interface
    if service is None:
        return
    change_state = service.callback

    def answered(request: ChangeState.Request, response: ChangeState.Response) -> Any:
        try:
            return change_state(request, response)
        except _rclpy.RCLError:
            asked = request.transition.label or f"id {request.transition.id}"
            node.get_logger().error(f"lifecycle transition {asked} refused: not allowed in state {state_of(node)} "
                                    f"(allowed: {', '.join(allowed_transitions(node)) or 'none'})")
            response.success = False
            return response

    service.callback = answered


def destroy_entity(node: LifecycleNode, entity: Any) -> None:
    """Remove a publisher (made with create_lifecycle_publisher), subscription, service or timer."""
    if isinstance(entity, Publisher):
        node.destroy_lifecycle_publisher(entity)
    elif isinstance(entity, Subscription):
        node.destroy_subscription(entity)
    elif isinstance(entity, Service):
        node.destroy_service(entity)
    else:
        node.destroy_timer(entity)
