#!/usr/bin/env bash
# Replaces the mediasoup worker's download-only meson subprojects with shims over Debian's own
# libraries (bookworm: openssl 3, libuv 1.44, libsrtp2 2.5, usrsctp, abseil 20220623,
# nlohmann-json 3.11), so the worker builds with no internet. Usage: shims.sh <extracted package dir>
set -eu
W="$1/worker"; S="$W/subprojects"
# bookworm ships meson 1.0.1; the worker's build file asks for 1.1 but needs nothing newer than 1.0.
sed -i "s/meson_version: '>= 1.1.0'/meson_version: '>= 1.0.0'/" "$W/meson.build"
# A .wrap file wins over a directory of the same name, so the wraps must go.
rm "$S"/*.wrap
mkdir -p "$S"/{openssl,nlohmann_json,libuv,libsrtp2,usrsctp,abseil-cpp,catch2}
# The *_lib variables only feed link_whole of libmediasoup-worker (not built by default), but meson
# type-checks them: each shim returns an empty static library.
P="static_library('placeholder', configure_file(output: 'placeholder.c', configuration: configuration_data()))"
cat > "$S/openssl/meson.build" <<EOF
project('openssl', 'c')
openssl_dep = dependency('openssl', version: '>= 3.0')
libcrypto_lib = $P
libssl_lib = libcrypto_lib
EOF
cat > "$S/nlohmann_json/meson.build" <<EOF
project('nlohmann_json', 'cpp')
nlohmann_json_dep = dependency('nlohmann_json', version: '>= 3.10')
EOF
cat > "$S/libuv/meson.build" <<EOF
project('libuv', 'c')
libuv_dep = dependency('libuv', version: '>= 1.44')
libuv = $P
EOF
cat > "$S/libsrtp2/meson.build" <<EOF
project('libsrtp2', 'c')
srtp = dependency('libsrtp2', version: '>= 2.4')
# Debian installs srtp.h under <includedir>/srtp2 while the worker includes <srtp.h>.
libsrtp2_dep = declare_dependency(dependencies: srtp,
  compile_args: '-I' + srtp.get_variable(pkgconfig: 'includedir') / 'srtp2')
libsrtp2 = $P
EOF
cat > "$S/usrsctp/meson.build" <<EOF
project('usrsctp', 'c')
usrsctp_dep = dependency('usrsctp')
usrsctp = $P
EOF
cat > "$S/abseil-cpp/meson.build" <<EOF
project('abseil-cpp', ['c', 'cpp'])
absl_container_dep = declare_dependency(dependencies: [dependency('absl_flat_hash_map'),
  dependency('absl_flat_hash_set'), dependency('absl_btree'), dependency('absl_inlined_vector'),
  dependency('absl_memory')])
absl_strings_dep = dependency('absl_strings')
absl_types_dep = dependency('absl_optional')
absl_container_lib = $P
EOF
cat > "$S/catch2/meson.build" <<EOF
project('catch2', 'cpp')
catch2_dep = dependency('catch2', required: false, allow_fallback: false)
EOF
# The worker passes these options to its subprojects; they must exist (their values are ignored).
printf "option('build_tests', type: 'boolean', value: false)\noption('build_benchmarks', type: 'boolean', value: false)\n" > "$S/libuv/meson_options.txt"
printf "option('crypto-library', type: 'string', value: 'openssl')\noption('crypto-library-kdf', type: 'feature', value: 'disabled')\noption('tests', type: 'feature', value: 'disabled')\n" > "$S/libsrtp2/meson_options.txt"
printf "option('sctp_build_programs', type: 'boolean', value: false)\n" > "$S/usrsctp/meson_options.txt"
