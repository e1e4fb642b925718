# What to build, and the build policy of qrt's own targets (warnings, ccache, sanitizers).
# Directory-scoped: a project that adds qrt with add_subdirectory/FetchContent keeps its own
# settings; qrt's usage requirements (C++20, include directories, dependencies) travel with its
# targets instead (docs/adr/0080-packaging-and-build-options.md).

# Providers and features. A feature that is off is not compiled, not installed and not
# registered by builtin_providers(); its dependencies are not looked for.
option(QRT_WITH_SQS "Build the AWS SQS provider (needs OpenSSL)" ON)
option(QRT_WITH_AMQP "Build the AMQP 1.0 provider (needs Qpid Proton C++ and OpenSSL)" ON)
option(QRT_WITH_SERVICEBUS "Build the Azure Service Bus provider (runs on the AMQP core: needs QRT_WITH_AMQP)" ON)
option(QRT_WITH_PERSISTENCE "Build the embedded provider's persistence log (enable_persistence)" ON)
if(QRT_WITH_SERVICEBUS AND NOT QRT_WITH_AMQP)
  message(FATAL_ERROR "QRT_WITH_SERVICEBUS=ON needs QRT_WITH_AMQP=ON: the Service Bus provider "
                      "runs on the AMQP core. Turn both off, or both on.")
endif()

# Tests, examples and tools are for working on qrt itself: off by default when qrt is a
# subproject.
option(QRT_BUILD_TESTS "Build the test suites" ${PROJECT_IS_TOP_LEVEL})
option(QRT_BUILD_EXAMPLES "Build the examples" ${PROJECT_IS_TOP_LEVEL})
option(QRT_BUILD_TOOLS "Build the benchmark harness and the qrt CLI" ${PROJECT_IS_TOP_LEVEL})
option(QRT_INSTALL "Generate qrt's install rules and package files" ${PROJECT_IS_TOP_LEVEL})

# -Werror is for qrt's own presets and CI (CMakePresets.json turns it on); a consumer's newer
# compiler must not fail their build on a warning qrt has not seen yet.
option(QRT_WARNINGS_AS_ERRORS "Treat compiler warnings in qrt's own targets as errors" OFF)

set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

if(PROJECT_IS_TOP_LEVEL)
  find_program(QRT_CCACHE ccache)
  if(QRT_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER ${QRT_CCACHE})
  endif()
endif()

set(QRT_SANITIZE "" CACHE STRING "Sanitizers to build with: '', 'address,undefined' or 'thread'")

# Compile and link options of every target qrt builds. Libraries link it as
# $<BUILD_INTERFACE:qrt_build_flags>, so it never reaches an installed or exported target.
add_library(qrt_build_flags INTERFACE)
target_compile_options(qrt_build_flags INTERFACE -Wall -Wextra -Wpedantic)
if(QRT_WARNINGS_AS_ERRORS)
  target_compile_options(qrt_build_flags INTERFACE -Werror)
endif()
# Options structs are meant to be filled with designated initializers naming only what differs.
target_compile_options(qrt_build_flags INTERFACE -Wno-missing-field-initializers)
# Asio's awaitable frames trip GCC 12's -Wmaybe-uninitialized false positives under -O2.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(qrt_build_flags INTERFACE -Wno-maybe-uninitialized)
  # ... and -Wmismatched-new-delete false positives: at -O2 GCC 12 inlines Asio's recycling
  # allocator for coroutine frames (operator new paired with its own free) and misreads it.
  target_compile_options(qrt_build_flags INTERFACE -Wno-mismatched-new-delete)
  # ... and, at -O3 only (the release preset), -Wrestrict false positives wherever a string
  # literal is prepended to a std::string ("'" + value): GCC 12 inlines basic_string::insert and
  # misjudges the overlap of its memcpy (GCC bug 105329). Such concatenations are everywhere.
  target_compile_options(qrt_build_flags INTERFACE $<$<CONFIG:Release>:-Wno-restrict>)
endif()
# Unity builds (CMAKE_UNITY_BUILD; docs/adr/0012-unity-builds.md) compile a target's files in
# batches. This keeps qrt's libraries file by file even then, so that every library source is
# shown to compile on its own, as it does in a user's build (the tsan preset turns it on).
option(QRT_LIBRARIES_FILE_BY_FILE "Compile qrt's libraries one file at a time in a unity build" OFF)

# A unity build compiles each .cpp as if it were a header included into one file, which makes
# GCC report every type in an anonymous namespace used by a named class as a header mistake.
# Here it is no mistake.
if(CMAKE_UNITY_BUILD AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(qrt_build_flags INTERFACE -Wno-subobject-linkage)
endif()
target_compile_definitions(qrt_build_flags INTERFACE
  BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_COROUTINE)
if(QRT_SANITIZE)
  target_compile_options(qrt_build_flags INTERFACE -fsanitize=${QRT_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(qrt_build_flags INTERFACE -fsanitize=${QRT_SANITIZE})
  # GCC warns that TSan cannot see std::atomic_thread_fence, which Asio uses internally.
  if(QRT_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(qrt_build_flags INTERFACE -Wno-tsan)
  endif()
endif()

# qrt_library(TARGET EXPORT_NAME): TARGET is one of qrt's installed libraries, qrt::EXPORT_NAME
# for consumers of the installed package. C++20 is its usage requirement (public headers use
# coroutines), not a directory setting, so it reaches every consumer.
set_property(GLOBAL PROPERTY QRT_INSTALLED_LIBRARIES "")
function(qrt_library target export_name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_property(GLOBAL APPEND PROPERTY QRT_INSTALLED_LIBRARIES ${target})
endfunction()

# qrt_benchmark_program(TARGET): a benchmark program (bench/*/run.sh build and run it from the
# release preset). No test runs one, so a sanitizer build leaves it out of its default target;
# the release build, which the test command also compiles, still proves it builds.
function(qrt_benchmark_program target)
  if(QRT_SANITIZE)
    set_target_properties(${target} PROPERTIES EXCLUDE_FROM_ALL ON)
  endif()
endfunction()
