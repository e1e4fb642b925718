# One place for build policy, so every target (library, tests, tools) agrees.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

find_program(QRT_CCACHE ccache)
if(QRT_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${QRT_CCACHE})
endif()

set(QRT_SANITIZE "" CACHE STRING "Sanitizers to build with: '', 'address,undefined' or 'thread'")

add_library(qrt_build_flags INTERFACE)
target_compile_options(qrt_build_flags INTERFACE -Wall -Wextra -Wpedantic -Werror)
# Options structs are meant to be filled with designated initializers naming only what differs.
target_compile_options(qrt_build_flags INTERFACE -Wno-missing-field-initializers)
# Asio's awaitable frames trip GCC 12's -Wmaybe-uninitialized false positives under -O2.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(qrt_build_flags INTERFACE -Wno-maybe-uninitialized)
  # ... and -Wmismatched-new-delete false positives: at -O2 GCC 12 inlines Asio's recycling
  # allocator for coroutine frames (operator new paired with its own free) and misreads it.
  target_compile_options(qrt_build_flags INTERFACE -Wno-mismatched-new-delete)
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
