# One-command setup, tests and demo for machines with no ROS install.
# Every target is idempotent: a second `make setup` with nothing changed takes seconds.

VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(PY) -m pip
# DDS discovery stays on this machine: Fast DDS would otherwise multicast to 239.255.0.1.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export PYTHONDONTWRITEBYTECODE := 1

MSG_FILES := $(wildcard msg/*.msg)
PYTEST_ARGS ?=

.PHONY: setup system-deps test demo clean help

help:
	@echo "make setup   create $(VENV), install pinned dependencies, build the messages"
	@echo "make test    setup, then run the test suite (pytest)"
	@echo "make demo    setup, then run the main job on the embedded default"
	@echo "make clean   remove build outputs (keeps $(VENV))"

setup: system-deps $(VENV)/.deps-installed specvla_ros/msg/__init__.py $(VENV)/.package-installed

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

$(VENV)/.deps-installed: requirements.txt $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	@touch $@

specvla_ros/msg/__init__.py: $(MSG_FILES) CMakeLists.txt package.xml tools/build_messages.sh $(VENV)/.deps-installed
	tools/build_messages.sh $(VENV)
	@touch $@

$(VENV)/.package-installed: setup.py $(VENV)/.deps-installed
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest test $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/specvla demo

clean:
	rm -rf build specvla_ros/msg specvla_ros/*specvla_ros_s__*.so *.egg-info
