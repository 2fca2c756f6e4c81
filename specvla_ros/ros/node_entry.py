"""`specvla_node`'s entry point: signal handlers first, then the heavy imports.

Importing torch and rclpy takes seconds. A Ctrl-C in that time would end in a KeyboardInterrupt
traceback, a SIGTERM in a kill by signal. With the handlers of shutdown.py installed before
anything heavy is imported, a signal at any moment of start-up exits with code 0 and no traceback.
"""
from __future__ import annotations

from specvla_ros.ros.shutdown import ShutdownRequested, ShutdownSignals


def main(args: list[str] | None = None) -> int:
    signals = ShutdownSignals()
    signals.install()
    try:
        from specvla_ros.ros.node import main as node_main
    except ShutdownRequested:
        return 0
    return node_main(args, signals=signals)
