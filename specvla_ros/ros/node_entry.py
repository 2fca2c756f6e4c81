"""`specvla_node`'s process: signal handlers first, then the heavy imports, then init / spin / shut down.

Importing torch and rclpy takes seconds. A Ctrl-C in that time would end in a KeyboardInterrupt
traceback, a SIGTERM in a kill by signal; with the handlers of shutdown.py installed before
anything heavy is imported, a signal at any moment exits with code 0 and no traceback. A refused
configuration or model exits with 1 and one line on stderr.
"""
from __future__ import annotations

import sys
import traceback

from specvla_ros.ros.shutdown import ShutdownRequested, ShutdownSignals, exit_now

# The inference thread runs Python-heavy decoding and holds the GIL for most of each 5 ms default
# switch interval; the control timer waits for it. A 0.5 ms interval keeps ticks on time. (With
# inference.isolation "process" the thread only waits on a pipe; the interval costs nothing.)
CONTROL_SWITCH_INTERVAL_S = 0.0005


def main(args: list[str] | None = None) -> int:
    """Entry point of `specvla_node` / `ros2 run specvla_ros specvla_node` / `specvla node`."""
    signals = ShutdownSignals()
    signals.install()
    try:
        return run(args, signals)
    except ShutdownRequested:  # during the imports
        return 0


def run(args: list[str] | None, signals: ShutdownSignals) -> int:
    """Run the node until SIGINT/SIGTERM (then 0); 1 with one line on stderr when refused."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from specvla_ros.core.errors import SpecVLAError
    from specvla_ros.ros.dds_profile import use_large_image_profile
    from specvla_ros.ros.incidents import printable
    from specvla_ros.ros.node import SpecVLANode

    node: SpecVLANode | None = None
    executor: MultiThreadedExecutor | None = None
    code = 0
    try:
        use_large_image_profile()  # before the DDS participant exists (dds_profile.py says when it applies)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # our handlers, not rclpy's
        node = SpecVLANode()
        sys.setswitchinterval(CONTROL_SWITCH_INTERVAL_S)
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        signals.spin(executor, node.context)
        if signals.requested:
            node.get_logger().info(f"{signals.requested}: stopping")
    except (ShutdownRequested, KeyboardInterrupt, ExternalShutdownException):
        pass
    except SpecVLAError as error:
        print(f"specvla_node: {printable(error, 2000)}", file=sys.stderr)
        code = 1
    except Exception as error:  # noqa: BLE001 - a bug: one line, the traceback at debug level
        rclpy.logging.get_logger("specvla_node").debug(traceback.format_exc())
        print(f"specvla_node: unexpected {type(error).__name__}: {printable(error, 2000)} (please report it; "
              "--ros-args --log-level debug shows the traceback)", file=sys.stderr)
        code = 1
    finally:
        signals.raise_on_signal = False  # a second Ctrl-C must not interrupt the clean-up
        clean = True
        if node is not None:
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)  # callbacks in flight finish first
            clean = node.shutdown()  # zero commands, then the worker within its bound
            node.destroy_node()
        rclpy.try_shutdown()
    if not clean:
        exit_now(code)  # the decoder thread is still inside torch: skip interpreter finalisation
    return code


if __name__ == "__main__":
    sys.exit(main())
