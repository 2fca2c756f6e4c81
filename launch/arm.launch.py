"""Launch specvla_node for an arm: `ros2 launch specvla_ros arm.launch.py [arg:=value ...]`.

Arguments left empty keep the value from params_file; any other value overrides it.

specvla_node is a managed (lifecycle) node. Here it starts with autostart false, and the launch
system drives it with the standard events: configure at once (the model loads), activate when that
configure has reached 'inactive'. Only that transition activates it: a later deactivate by a
supervisor (`ros2 lifecycle set /specvla_node deactivate`) stays deactivated.
"""
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from specvla_ros.ros.parameters import SPECS_BY_NAME

# launch argument -> (node parameter, help). Read by test/ros/test_launch_files.py without launch.
PARAMETER_OVERRIDES = {
    "model_path": ("model.path", "checkpoint folder of the VLA"),
    "draft_path": ("model.draft_path", "checkpoint folder of the draft head"),
    "device": ("model.device", "cpu | cuda | cuda:N"),
    "dtype": ("model.dtype", "float32 | bfloat16"),
    "mode": ("decoder.mode", "speculative | autoregressive"),
    "dry_run": ("dry_run", "true: publish no commands"),
    "control_rate_hz": ("control_rate_hz", "command rate"),
    "frame_id": ("frame_id", "frame of the deltas"),
    "image_qos": ("topics.image_qos", "sensor_data | reliable (camera subscription QoS)"),
}


def _node(context, *args, **kwargs):
    overrides = {}
    for argument, (parameter, _) in PARAMETER_OVERRIDES.items():
        value = LaunchConfiguration(argument).perform(context)
        if value != "":
            overrides[parameter] = _typed(value, type(SPECS_BY_NAME[parameter].default))
    node = LifecycleNode(
        package="specvla_ros",
        executable="specvla_node",
        name="specvla_node",
        namespace="",  # Humble's LifecycleNode requires it
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides,
                    {"use_sim_time": _typed(LaunchConfiguration("use_sim_time").perform(context), bool),
                     "autostart": False}],  # the events below walk it through configure and activate
    )
    activate_once_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))],
    ))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    return [node, activate_once_configured, configure]


def _typed(text: str, kind: type):
    """Launch arguments are strings; give the node the type its parameter was declared with."""
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got '{text}'")
        return text.lower() == "true"
    return kind(text)


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("specvla_ros"), "config", "arm.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters YAML"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=help_text)
                  for name, (_, help_text) in PARAMETER_OVERRIDES.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])
