# Finds Qpid Proton C++ and the Proton core library for qrt's AMQP and Service Bus providers.
# Used by qrt's own build and shipped with the installed package (qrtConfig.cmake), so both find
# Proton the same way.
#
# Why not pkg-config or Proton's own CMake files: Debian 12's libqpid-proton-cpp.pc requires
# libqpid-proton-core.pc and libqpid-proton-proactor.pc, which Debian does not ship, and Debian
# ships no unversioned libqpid-proton-core.so and no Proton CMake package files. So the headers
# and libraries are found by name.
#
# Defines QrtProton_FOUND and the imported targets Proton::cpp (C++ binding, with the include
# directory) and Proton::core (the protocol engine qrt drives directly). Targets of the same names
# that already exist (for example from Proton's own CMake package) are used as they are.
include(FindPackageHandleStandardArgs)

if(TARGET Proton::cpp AND TARGET Proton::core)
  set(QrtProton_FOUND TRUE)
  return()
endif()

find_path(QRT_PROTON_INCLUDE_DIR proton/container.hpp)
find_library(QRT_PROTON_CPP_LIBRARY qpid-proton-cpp)
find_library(QRT_PROTON_CORE_LIBRARY NAMES qpid-proton-core libqpid-proton-core.so.10)
find_package_handle_standard_args(QrtProton
  REQUIRED_VARS QRT_PROTON_CPP_LIBRARY QRT_PROTON_CORE_LIBRARY QRT_PROTON_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "on Debian: apt-get install libqpid-proton-cpp12-dev libqpid-proton11-dev")

if(QrtProton_FOUND)
  if(NOT TARGET Proton::core)
    add_library(Proton::core UNKNOWN IMPORTED)
    set_target_properties(Proton::core PROPERTIES
      IMPORTED_LOCATION "${QRT_PROTON_CORE_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${QRT_PROTON_INCLUDE_DIR}")
  endif()
  if(NOT TARGET Proton::cpp)
    add_library(Proton::cpp UNKNOWN IMPORTED)
    set_target_properties(Proton::cpp PROPERTIES
      IMPORTED_LOCATION "${QRT_PROTON_CPP_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${QRT_PROTON_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES Proton::core)
  endif()
endif()
mark_as_advanced(QRT_PROTON_INCLUDE_DIR QRT_PROTON_CPP_LIBRARY QRT_PROTON_CORE_LIBRARY)
