"""Camera images <-> RGB arrays without ROS: shared by the live node (specvla_ros.ros) and the bag
tools (specvla_ros.bags), so a frame is read by the same rules wherever it comes from."""
