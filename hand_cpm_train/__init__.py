"""hand_cpm_train: Convolutional Pose Machine models, synthetic hand data, training, evaluation
and export for hand_cpm_ros. Needs torch; never imports rclpy."""
