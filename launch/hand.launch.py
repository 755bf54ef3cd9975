"""Launch hand_cpm_node with its parameter file, and optionally RViz showing the debug heatmap
image and the hand markers.

    ros2 launch hand_cpm_ros hand.launch.py image:=/camera/color/image_raw use_rviz:=true
    ros2 launch hand_cpm_ros hand.launch.py use_depth:=true \
        depth:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info
    ros2 launch hand_cpm_ros hand.launch.py use_sim_time:=true use_rviz:=true   # beside ros2 bag play --clock

backend, model and engine override the same parameters of params_file.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory('hand_cpm_ros'))
    arguments = [
        DeclareLaunchArgument('image', default_value='/camera/color/image_raw',
                              description='Colour image topic (sensor_msgs/Image); with '
                                          'compressed_input the node reads <image>/compressed'),
        DeclareLaunchArgument('compressed_input', default_value='false',
                              description='Read <image>/compressed (sensor_msgs/CompressedImage)'),
        DeclareLaunchArgument('camera_info', default_value='/camera/color/camera_info',
                              description='CameraInfo of the colour camera (used with use_depth)'),
        DeclareLaunchArgument('depth', default_value='/camera/aligned_depth_to_color/image_raw',
                              description='Depth image registered to the colour image, 16UC1 mm '
                                          'or 32FC1 m (used with use_depth)'),
        DeclareLaunchArgument('use_depth', default_value='false',
                              description='Fill 3D keypoints and 3D markers from depth + camera_info'),
        DeclareLaunchArgument('hand_regions', default_value='hand_regions',
                              description='Topic of hand boxes from another detector '
                                          '(hand_cpm_ros/HandRegions, stamped like their image)'),
        DeclareLaunchArgument('backend', default_value='auto',
                              choices=['auto', 'onnxruntime', 'tensorrt', 'torch'],
                              description='Inference backend'),
        DeclareLaunchArgument('model', default_value='',
                              description='ONNX model or .pt checkpoint; empty = the shipped model '
                                          'share/hand_cpm_ros/models/hand_cpm.onnx'),
        DeclareLaunchArgument('engine', default_value='',
                              description='TensorRT engine file (backend tensorrt or auto)'),
        DeclareLaunchArgument('params_file', default_value=str(share / 'config' / 'hand.yaml'),
                              description='Parameter file of hand_cpm_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its output topics'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='Start RViz with config/hand.rviz (heatmap image, markers)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Node and RViz follow /clock, e.g. of ros2 bag play --clock'),
    ]
    sim_time = {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool)}
    image = LaunchConfiguration('image')
    hand_node = Node(
        package='hand_cpm_ros', executable='hand_cpm_node', name='hand_cpm_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), {
            'backend': LaunchConfiguration('backend'),
            'model_path': LaunchConfiguration('model'),
            'engine_path': LaunchConfiguration('engine'),
            'use_depth': ParameterValue(LaunchConfiguration('use_depth'), value_type=bool),
            'compressed_input': ParameterValue(LaunchConfiguration('compressed_input'),
                                               value_type=bool),
        }, sim_time],
        remappings=[('image', image), ('image/compressed', [image, '/compressed']),
                    ('camera_info', LaunchConfiguration('camera_info')),
                    ('depth', LaunchConfiguration('depth')),
                    ('hand_regions', LaunchConfiguration('hand_regions'))])
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                arguments=['-d', str(share / 'config' / 'hand.rviz')], parameters=[sim_time],
                condition=IfCondition(LaunchConfiguration('use_rviz')))
    return LaunchDescription(arguments + [hand_node, rviz])
