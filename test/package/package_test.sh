#!/usr/bin/env bash
# qrt as an installed package, one step per ctest test (test/package/CMakeLists.txt):
#   package_test.sh STEP BUILD_DIR WORK_DIR
#   install           cmake --install BUILD_DIR into WORK_DIR/prefix (the other steps use it)
#   find_package      a CMake project: find_package(qrt 0.1 CONFIG REQUIRED) + qrt::qrt, and a
#                     program linking one component (qrt::memory) alone
#   pkg_config        the same program built with g++ and pkg-config --cflags --libs qrt
#   cli               the installed qrt --help
#   deb               cpack -G DEB: contents and dependencies of both packages, and the
#                     find_package consumer built against the unpacked libqrt-dev
#   add_subdirectory  a project adding qrt's source tree, every QRT_WITH_* off
# Every consumer program is the README's quick start, cut from README.md.
set -euo pipefail
step="$1"
build="$(cd "$2" && pwd)"
mkdir -p "$3"
work="$(cd "$3" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
source_dir="$(cd "$here/../.." && pwd)"
prefix="$work/prefix"

fail() { echo "FAIL: $*" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

# The README's quick-start snippet, as examples/CMakeLists.txt cuts it.
quickstart() {
  local out="$1/quickstart.cpp"
  awk '/<!-- quickstart:begin -->/{on=1; next} /<!-- quickstart:end -->/{on=0}
       on && /^```cpp/{code=1; next} on && /^```/{code=0} code' \
    "$source_dir/README.md" >"$out"
  grep -q 'int main' "$out" || fail "README.md lost its quick-start snippet"
  echo "$out"
}

# run_quickstart BINARY: the quick start prints the message it sent and received.
run_quickstart() {
  local out
  out="$("$1")" || fail "$1 exited $?"
  grep -q '{"order": 42} (delivery 1)' <<<"$out" || fail "$1 printed: $out"
}

# consume_with_cmake PREFIX DIR: configure, build and run the find_package consumer.
consume_with_cmake() {
  local dir="$2"
  rm -rf "$dir" && mkdir -p "$dir"
  local src; src="$(quickstart "$dir")"
  cmake -S "$here/find_package" -B "$dir/build" -G Ninja "${launcher[@]}" \
    -DCMAKE_PREFIX_PATH="$1" -DQRT_QUICKSTART_SOURCE="$src" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; fail "find_package consumer did not configure against $1"; }
  cmake --build "$dir/build" || fail "find_package consumer did not build against $1"
  run_quickstart "$dir/build/quickstart"
  "$dir/build/one_component" || fail "the one-component consumer (qrt::memory alone) failed"
}

case "$step" in
  install)
    rm -rf "$prefix"
    cmake --install "$build" --prefix "$prefix"
    for f in include/qrt/qrt.hpp lib/libqrt_core.a lib/libqrt_all.a bin/qrt \
             lib/cmake/qrt/qrtConfig.cmake lib/cmake/qrt/qrtConfigVersion.cmake \
             lib/cmake/qrt/qrtTargets.cmake lib/cmake/qrt/FindQrtProton.cmake lib/pkgconfig/qrt.pc; do
      [[ -f "$prefix/$f" ]] || fail "cmake --install did not install $f"
    done
    # The installed package stands alone: nothing in it points back at the source or build tree.
    if grep -rlF -e "$source_dir" -e "$build" "$prefix/lib/cmake" "$prefix/lib/pkgconfig"; then
      fail "installed CMake/pkg-config files name the source or build tree"
    fi
    ;;
  find_package)
    consume_with_cmake "$prefix" "$work/find_package"
    ;;
  pkg_config)
    dir="$work/pkg_config"
    rm -rf "$dir" && mkdir -p "$dir"
    src="$(quickstart "$dir")"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    [[ "$(pkg-config --modversion qrt)" == "0.1.0" ]] || fail "pkg-config --modversion qrt"
    # shellcheck disable=SC2046  # pkg-config's output is a list of flags
    g++ -std=c++20 "$src" $(pkg-config --cflags --libs qrt) -o "$dir/quickstart" ||
      fail "the quick start did not build with pkg-config's flags"
    run_quickstart "$dir/quickstart"
    ;;
  cli)
    out="$("$prefix/bin/qrt" --help)" || fail "installed qrt --help exited $?"
    for command in send receive peek stats dlq bench; do
      grep -qw "$command" <<<"$out" || fail "qrt --help does not list '$command': $out"
    done
    ;;
  deb)
    dir="$work/deb"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$build" && cpack -G DEB -B "$dir" >"$dir/cpack.log" 2>&1) ||
      { cat "$dir/cpack.log"; fail "cpack -G DEB failed"; }
    dev=("$dir"/libqrt-dev_0.1.0_*.deb)
    cli=("$dir"/qrt_0.1.0_*.deb)
    [[ -f "${dev[0]}" && -f "${cli[0]}" ]] || fail "cpack made: $(ls "$dir")"
    dpkg-deb -c "${dev[0]}" >"$dir/dev.contents"
    for f in ./usr/include/qrt/qrt.hpp ./usr/include/qrt/sqs.hpp ./usr/lib/libqrt_core.a \
             ./usr/lib/libqrt_servicebus.a ./usr/lib/cmake/qrt/qrtConfig.cmake \
             ./usr/lib/cmake/qrt/qrtConfigVersion.cmake ./usr/lib/cmake/qrt/FindQrtProton.cmake \
             ./usr/lib/pkgconfig/qrt.pc; do
      grep -q " $f\$" "$dir/dev.contents" || fail "libqrt-dev lacks $f"
    done
    ! grep -q ' ./usr/bin/' "$dir/dev.contents" || fail "libqrt-dev ships a program"
    dpkg-deb -c "${cli[0]}" >"$dir/cli.contents"
    grep -q ' ./usr/bin/qrt$' "$dir/cli.contents" || fail "the qrt package lacks /usr/bin/qrt"
    ! grep -q ' ./usr/include/' "$dir/cli.contents" || fail "the qrt package ships headers"
    dpkg-deb -I "${dev[0]}" >"$dir/dev.info"
    dev_depends="$(dpkg-deb -f "${dev[0]}" Depends)"
    for p in libboost1.81-dev libboost-json1.81-dev libyaml-cpp-dev libssl-dev \
             libqpid-proton-cpp12-dev libqpid-proton11-dev; do
      grep -qw -- "$p" <<<"$dev_depends" || fail "libqrt-dev does not depend on $p: $dev_depends"
    done
    cli_depends="$(dpkg-deb -f "${cli[0]}" Depends)"
    for p in libqpid-proton-cpp12 libssl3 libyaml-cpp0.7 libboost-json1.81.0 libstdc++6; do
      grep -qw -- "$p" <<<"$cli_depends" || fail "qrt does not depend on $p: $cli_depends"
    done
    # The unpacked -dev package is a working prefix on its own.
    dpkg-deb -x "${dev[0]}" "$dir/root"
    consume_with_cmake "$dir/root/usr" "$dir/find_package"
    ;;
  add_subdirectory)
    dir="$work/add_subdirectory"
    rm -rf "$dir" && mkdir -p "$dir"
    src="$(quickstart "$dir")"
    cmake -S "$here/subdirectory" -B "$dir/build" -G Ninja "${launcher[@]}" \
      -DQRT_SOURCE_DIR="$source_dir" -DQRT_QUICKSTART_SOURCE="$src" >"$dir/configure.log" 2>&1 ||
      { cat "$dir/configure.log"; fail "add_subdirectory consumer did not configure"; }
    # Proton and OpenSSL were not even looked for.
    if grep -E '^(QRT_PROTON|OPENSSL)_[A-Z_]*:' "$dir/build/CMakeCache.txt"; then
      fail "a build without SQS, AMQP and Service Bus looked for Proton or OpenSSL"
    fi
    cmake --build "$dir/build" || fail "add_subdirectory consumer did not build"
    run_quickstart "$dir/build/quickstart"
    "$dir/build/memory_only_check" || fail "memory-only build check"
    ;;
  *)
    fail "unknown step '$step'"
    ;;
esac
echo "package $step: ok"
