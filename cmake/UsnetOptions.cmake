# Compiler flags shared by every usnet target, carried by an interface target
# so that third-party code (GoogleTest, Benchmark) is not held to our warnings.
add_library(usnet_build_flags INTERFACE)

target_compile_options(usnet_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Woverloaded-virtual -Wimplicit-fallthrough -Wformat=2 -Wundef)
if(USNET_WERROR)
  target_compile_options(usnet_build_flags INTERFACE -Werror)
endif()

if(USNET_SANITIZE OR USNET_FUZZ)
  set(_san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_compile_options(usnet_build_flags INTERFACE ${_san})
  target_link_options(usnet_build_flags INTERFACE ${_san})
endif()

if(USNET_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "USNET_FUZZ needs clang (libFuzzer); use the 'fuzz' preset")
  endif()
  # Instrument the library for coverage; the fuzzer main is linked per target.
  target_compile_options(usnet_build_flags INTERFACE -fsanitize=fuzzer-no-link)
endif()
