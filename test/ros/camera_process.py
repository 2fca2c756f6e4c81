"""A camera in a process of its own, as a real driver is: `python -m test.ros.camera_process --width 640 ...`.

Publishes --frames rgb8 frames of --width x --height at --hz on /camera/image_raw with --qos
(sensor_data or reliable), each stamped with the wall clock and frame_id "camera_<W>x<H>", once
a subscriber is seen; then prints {"published": N, "stamps": [...]} as one JSON line. Its Fast
DDS setup is whatever the environment it is started with says.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from sensor_msgs.msg import Image

from specvla_ros.ros.qos import IMAGE_QOS_CHOICES, image_qos


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--qos", choices=IMAGE_QOS_CHOICES, default="sensor_data")
    parser.add_argument("--topic", default="/camera/image_raw")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("camera_process")
    publisher = node.create_publisher(Image, args.topic, image_qos(args.qos))
    deadline = time.monotonic() + 20.0
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.3)  # the subscriber's side of the match settles
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8).tobytes() for _ in range(4)]
    stamps = []
    next_due = time.monotonic()
    for index in range(args.frames):
        msg = Image(height=args.height, width=args.width, encoding="rgb8", step=3 * args.width,
                    data=frames[index % len(frames)])
        msg.header.frame_id = f"camera_{args.width}x{args.height}"
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        publisher.publish(msg)
        stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        next_due += 1.0 / args.hz
        time.sleep(max(0.0, next_due - time.monotonic()))
    time.sleep(0.5)  # reliable retransmissions finish before the participant goes
    print(json.dumps({"published": len(stamps), "stamps": stamps}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
