"""package.xml, CMakeLists.txt and setup.py agree with what the code imports and installs.

Works without ROS installed: it reads the files, it does not build them.
"""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Python import name -> rosdep key, for the non-ROS Python modules the package imports.
PYTHON_ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml"}
# ROS packages whose Python modules may appear in imports.
ROS_PYTHON_PACKAGES = {
    "rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "std_srvs",
    "builtin_interfaces", "launch", "launch_ros", "cv_bridge", "rcl_interfaces", "lifecycle_msgs",
}
# Imported only when present, by design (see README): not a hard dependency.
OPTIONAL_IMPORTS = {"cv_bridge"}
# Dependencies that are never imported by name but are needed all the same.
NOT_IMPORTED = {"rosidl_default_runtime"}


def _package_xml_depends() -> dict[str, set[str]]:
    root = ET.parse(REPO / "package.xml").getroot()
    kinds: dict[str, set[str]] = {}
    for element in root:
        if element.tag.endswith("depend"):
            kinds.setdefault(element.tag, set()).add(element.text.strip())
    return kinds


def _imported_top_level_modules(paths: list[Path]) -> set[str]:
    modules: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def _runtime_sources() -> list[Path]:
    sources = [p for p in (REPO / "specvla_ros").rglob("*.py") if "msg" not in p.relative_to(REPO).parts]
    return sources + sorted((REPO / "launch").glob("*.py"))


def test_package_xml_is_format_3_with_valid_maintainer() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "specvla_ros"
    email = root.find("maintainer").get("email")
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", email), email
    assert root.find("export/build_type").text == "ament_cmake"


def test_every_imported_ros_package_is_declared() -> None:
    depends = _package_xml_depends()
    runtime = depends.get("depend", set()) | depends.get("exec_depend", set())
    imported = _imported_top_level_modules(_runtime_sources())
    missing = {m for m in imported & ROS_PYTHON_PACKAGES if m not in runtime} - OPTIONAL_IMPORTS
    missing |= {PYTHON_ROSDEP_KEYS[m] for m in imported & set(PYTHON_ROSDEP_KEYS)} - runtime
    assert not missing, f"imported but not in package.xml: {sorted(missing)}"


def test_every_declared_runtime_dependency_is_used() -> None:
    depends = _package_xml_depends()
    runtime = depends.get("depend", set()) | depends.get("exec_depend", set())
    imported = _imported_top_level_modules(_runtime_sources())
    interface_deps = set(re.findall(r"DEPENDENCIES ([\w ]+)\n", (REPO / "CMakeLists.txt").read_text())[0].split())
    used = (imported & ROS_PYTHON_PACKAGES) | {PYTHON_ROSDEP_KEYS[m] for m in imported & set(PYTHON_ROSDEP_KEYS)}
    unused = runtime - used - interface_deps - NOT_IMPORTED
    assert not unused, f"declared in package.xml but never imported: {sorted(unused)}"


def test_interface_dependencies_match_cmake() -> None:
    depends = _package_xml_depends()
    cmake = (REPO / "CMakeLists.txt").read_text()
    interface_deps = set(re.findall(r"DEPENDENCIES ([\w ]+)\n", cmake)[0].split())
    assert interface_deps <= depends.get("depend", set())
    for dep in interface_deps:
        assert f"find_package({dep} REQUIRED)" in cmake
    for msg in sorted((REPO / "msg").glob("*.msg")):
        assert f'"msg/{msg.name}"' in cmake, f"{msg.name} is not in rosidl_generate_interfaces"


def test_installed_files_exist() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    programs = re.search(r"install\(PROGRAMS ([^\n]+)", cmake).group(1).split()
    for program in programs:
        if program.startswith("DESTINATION"):
            break
        assert (REPO / program).is_file(), f"CMakeLists.txt installs missing {program}"
    for folder in ("launch", "config"):
        assert any((REPO / folder).iterdir()), f"{folder}/ is installed but empty"


def test_every_console_script_names_a_function_that_exists() -> None:
    """setup.py's entry points import: a moved module would otherwise break only the installed commands."""
    import importlib

    scripts = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', (REPO / "setup.py").read_text())
    assert {name for name, _, _ in scripts} == {"specvla", "specvla_node", "specvla_sim_bridge"}
    for name, module, function in scripts:
        assert callable(getattr(importlib.import_module(module), function)), name
