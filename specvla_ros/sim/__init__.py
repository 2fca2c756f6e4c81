"""MuJoCo tabletop simulation (no rclpy)."""
