# Only for building against ROS 2 from the PyPI `ros-*` wheels (scripts/setup.sh passes this file
# with -DCMAKE_PROJECT_INCLUDE); a robot's colcon build does not use it.
#
# The wheels export <pkg>::<pkg>__rosidl_generator_py targets whose include directories point at
# the wheel build host (/opt/python/...), so CMake stops with "Imported target ... includes
# non-existent path". At the end of configure, point those targets at this interpreter's Python
# and NumPy headers instead.
function(hand_cpm_fix_wheel_python_includes)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  get_property(imported_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS imported_targets)
    get_target_property(include_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(include_dirs AND "${include_dirs}" MATCHES "/opt/python/")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
        "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL hand_cpm_fix_wheel_python_includes)
