#!/usr/bin/env bash
# Build specvla_ros's messages (msg/*.msg) with CMake + rosidl against the ROS 2 PyPI wheels in a
# virtual environment, for machines with no ROS install. colcon users never run this: their
# `colcon build` runs the same CMakeLists.txt.
#
# The generated C libraries go to $VENV/lib (the ROS wheels put that folder on the loader path);
# the generated Python classes and their type-support modules to $VENV/lib/specvla_ros_messages,
# which specvla_ros/__init__.py adds to the package's search path. They are built against one
# distro's wheels, so each venv holds its own (.venv: Kilted, .venv-jazzy: Jazzy) and the checkout
# none: venvs of two distros share one checkout, and the hand-written sources stay editable.
#
# Usage: tools/build_messages.sh [VENV]      (default: .venv)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$repo/.venv}" && pwd)
python="$venv/bin/python"
work="$repo/build/messages/$(basename "$venv")"  # one build tree per venv (distro)
src="$work/src"        # CMake refuses exported include paths inside its source tree, and the
                       # venv lives inside the checkout: configure from a copy instead.
bld="$work/build"
stage="$work/install"

fail() { echo "build_messages: $*" >&2; exit 1; }

[ -x "$python" ] || fail "no Python in $venv; run 'make setup' first"
command -v cmake >/dev/null || fail "cmake not found; install it (apt-get install cmake)"

# The message wheels' exported CMake targets name the wheel build machine's Python and numpy
# include folders. Point them at this interpreter's, or CMake's generate step fails.
py_inc=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_inc=$("$python" -c "import numpy; print(numpy.get_include())")
for f in $(grep -l '/opt/python/cp311-cp311' "$venv"/share/*/cmake/*.cmake || true); do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
done

rm -rf "$src" && mkdir -p "$src" "$bld"
cp -r "$repo/CMakeLists.txt" "$repo/package.xml" "$repo/msg" "$src/"

export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
log="$work/build.log"
if ! { cmake -S "$src" -B "$bld" \
          -DCMAKE_INSTALL_PREFIX="$stage" \
          -DPython3_EXECUTABLE="$python" \
          -DSPECVLA_INSTALL_PYTHON_PACKAGE=OFF \
          -DBUILD_TESTING=OFF \
       && cmake --build "$bld" -j"$(nproc)" \
       && cmake --install "$bld"; } >"$log" 2>&1; then
  echo "build_messages: the message build failed. The first errors:" >&2
  grep -iE -m 20 -A 4 'error' "$log" >&2 || tail -n 40 "$log" >&2
  fail "fix the .msg file or the environment named above (full log: $log)"
fi

# Put the generated pieces where Python and the loader find them.
site="$stage/lib/python3.11/site-packages/specvla_ros"
[ -d "$site/msg" ] || fail "rosidl produced no Python package at $site (full log: $log)"
generated="$venv/lib/specvla_ros_messages"   # the name specvla_ros/__init__.py looks for
cp -a "$stage"/lib/lib*.so "$venv/lib/"
rm -rf "$generated" && mkdir -p "$generated"
cp -a "$site/msg" "$site"/*.so "$generated/"
# Earlier builds put them into the checkout, where they would shadow this venv's.
rm -rf "$repo/specvla_ros/msg" "$repo"/specvla_ros/*specvla_ros_s__*.so
echo "build_messages: built $(ls "$repo"/msg/*.msg | wc -l) message types into $generated"
