"""Training: draft heads (Spec-VLA / EAGLE objective) and, later, the tiny VLA. No rclpy."""
