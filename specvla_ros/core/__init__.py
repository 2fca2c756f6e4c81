"""ROS-free core: tokenizer, backbones, draft head, draft tree, acceptance, decoders.

Nothing in this package imports rclpy.
"""
