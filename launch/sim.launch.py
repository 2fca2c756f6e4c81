"""Closed loop in simulation: `ros2 launch specvla_ros sim.launch.py model_path:=... draft_path:=...`.

The MuJoCo tabletop bridge publishes camera and task, specvla_node answers with commands, the
bridge steps the scene and reports each episode on /sim_bridge/episode_result.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params_file = PathJoinSubstitution([FindPackageShare("specvla_ros"), "config", "sim.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=params_file, description="parameters of both nodes"),
        DeclareLaunchArgument("model_path", description="checkpoint folder of the VLA"),
        DeclareLaunchArgument("draft_path", default_value="", description="checkpoint folder of the draft head"),
        Node(package="specvla_ros", executable="specvla_sim_bridge", name="sim_bridge", output="screen",
             parameters=[LaunchConfiguration("params_file")]),
        Node(package="specvla_ros", executable="specvla_node", name="specvla_node", output="screen",
             parameters=[LaunchConfiguration("params_file"),
                         {"model.path": LaunchConfiguration("model_path"),
                          "model.draft_path": LaunchConfiguration("draft_path")}]),
    ])
