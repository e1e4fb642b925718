# Install rules and package files (included when QRT_INSTALL is on):
#   cmake --install   headers, static libraries, the qrt CLI, lib/cmake/qrt (qrtConfig.cmake,
#                     qrtConfigVersion.cmake, the exported targets, FindQrtProton.cmake) and
#                     lib/pkgconfig/qrt.pc
#   cpack -G DEB      libqrt-dev (component "dev": all of the above but the CLI) and qrt
#                     (component "cli": the command line)
# How a consumer uses them: README.md ("Using the installed package") and
# docs/adr/0080-packaging-and-build-options.md.
include(CMakePackageConfigHelpers)

get_property(qrt_libraries GLOBAL PROPERTY QRT_INSTALLED_LIBRARIES)
set(qrt_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/qrt)

# Public headers, minus those of providers this build left out (nothing would implement them).
set(header_excludes "")
foreach(provider sqs amqp servicebus)
  string(TOUPPER ${provider} upper)
  if(NOT QRT_WITH_${upper})
    list(APPEND header_excludes PATTERN ${provider}.hpp EXCLUDE)
  endif()
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/qrt DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT dev ${header_excludes})

# Every library, including the internal static ones (qrt::net, qrt::amqp_codec,
# qrt::servicebus_codec) that providers link: a static library's private dependencies are part
# of its consumers' link line.
install(TARGETS ${qrt_libraries} EXPORT qrtTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dev)
install(EXPORT qrtTargets NAMESPACE qrt:: DESTINATION ${qrt_cmake_dir} COMPONENT dev)

configure_package_config_file(cmake/qrtConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/qrtConfig.cmake INSTALL_DESTINATION ${qrt_cmake_dir})
# 0.x: a minor version may break the API, so 0.1 accepts 0.1.y only.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/qrtConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/qrtConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/qrtConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindQrtProton.cmake
        DESTINATION ${qrt_cmake_dir} COMPONENT dev)

# qrt.pc. The libraries are static, so Libs lists them all, dependents before dependencies,
# followed by what they link. Relocatable: paths are relative to the .pc file.
set(qrt_link_order qrt_all qrt_servicebus qrt_servicebus_codec qrt_amqp qrt_amqp_core
    qrt_amqp_codec qrt_sqs qrt_net qrt_memory qrt_processing qrt_resilience qrt_observability qrt_core)
set(QRT_PC_LIBS "")
foreach(lib ${qrt_link_order})
  if(TARGET ${lib})
    string(APPEND QRT_PC_LIBS " -l${lib}")
  endif()
endforeach()
set(QRT_PC_REQUIRES "yaml-cpp")
if(QRT_WITH_SQS OR QRT_WITH_AMQP)
  string(APPEND QRT_PC_REQUIRES ", openssl")
endif()
string(APPEND QRT_PC_LIBS " -lboost_json")
if(QRT_WITH_AMQP)
  # Debian's Proton .pc files are unusable (cmake/FindQrtProton.cmake): name the libraries found.
  foreach(proton_lib ${QRT_PROTON_CPP_LIBRARY} ${QRT_PROTON_CORE_LIBRARY})
    get_filename_component(proton_name ${proton_lib} NAME)
    if(proton_name MATCHES "^lib(.+)\\.so$")
      string(APPEND QRT_PC_LIBS " -l${CMAKE_MATCH_1}")
    else()
      string(APPEND QRT_PC_LIBS " ${proton_lib}")
    endif()
  endforeach()
endif()
string(APPEND QRT_PC_LIBS " -pthread")
file(RELATIVE_PATH QRT_PC_PREFIX_FROM_PCDIR /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(cmake/qrt.pc.in ${CMAKE_CURRENT_BINARY_DIR}/qrt.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/qrt.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)

set(qrt_components dev)
if(TARGET qrt)
  install(TARGETS qrt RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
  list(APPEND qrt_components cli)
endif()

# Debian packages. The dependencies name Debian 12's packages: the libraries are static, so the
# -dev package needs the -dev packages of everything they link; the CLI's come from
# dpkg-shlibdeps.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME qrt)
set(CPACK_PACKAGE_VENDOR qrt)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ${qrt_components})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "qrt maintainers <qrt@localhost>")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libqrt-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "qrt C++ library: headers, static libraries, CMake package and pkg-config files")
set(dev_depends "libboost1.81-dev | libboost-dev (>= 1.81)"
                "libboost-json1.81-dev | libboost-json-dev (>= 1.81)" "libyaml-cpp-dev")
if(QRT_WITH_SQS OR QRT_WITH_AMQP)
  list(APPEND dev_depends libssl-dev)
endif()
if(QRT_WITH_AMQP)
  list(APPEND dev_depends libqpid-proton-cpp12-dev libqpid-proton11-dev)
endif()
list(JOIN dev_depends ", " CPACK_DEBIAN_DEV_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_CLI_PACKAGE_NAME qrt)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION net)
set(CPACK_DEBIAN_CLI_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_CLI_DESCRIPTION
  "qrt command line: send, receive, peek, dead-letter queues, stats and benchmarks")
include(CPack)
