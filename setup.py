"""pip / editable install of the Python package for the no-ROS path (make setup).

colcon builds this repository as an ament_cmake package (package.xml, CMakeLists.txt) and
ignores this file; see README, "colcon workspace".
"""
from setuptools import find_packages, setup

setup(
    name="specvla_ros",
    version="0.1.0",
    description="Spec-VLA speculative decoding for Vision-Language-Action policies, with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["specvla_ros", "specvla_ros.*"]),
    # The embedded model pair ships inside the package (safetensors + JSON, and its model card).
    package_data={"specvla_ros.models": ["*/*/*.json", "*/*/*.safetensors", "*/*.md"]},
    entry_points={
        "console_scripts": [
            "specvla = specvla_ros.cli:main",
            "specvla_node = specvla_ros.ros.node_entry:main",
            "specvla_sim_bridge = specvla_ros.ros.sim_bridge:main",
        ],
    },
)
