# Test registration helpers for kabar's three depths of tests.

# kabar_unit_tests(DIR LIB): each DIR/*_test.c is an executable linked with
# LIB and cmocka, registered as ctest "DIR/<name>". The test runs in the
# build directory with KABAR_SOURCE_DIR set.
function(kabar_unit_tests dir lib)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${dir}/*_test.c)
  foreach(src ${tests})
    get_filename_component(name ${src} NAME_WE)
    set(target ${dir}_${name})
    add_executable(${target} ${src})
    target_link_libraries(${target} PRIVATE ${lib} PkgConfig::CMOCKA)
    add_test(NAME ${dir}/${name} COMMAND ${target})
    set_tests_properties(${dir}/${name} PROPERTIES
      ENVIRONMENT "KABAR_SOURCE_DIR=${CMAKE_SOURCE_DIR};KABAR_BUILD_DIR=${CMAKE_BINARY_DIR}"
      TIMEOUT 300)
  endforeach()
endfunction()

# System tests: tests/test_*.py run with Debian's python3 (which has the
# python3-zmq and python3-msgpack packages the setup script installs) against
# the real kabard and kabar binaries of this build.
function(kabar_system_tests)
  find_program(KABAR_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT KABAR_PYTHON3)
    find_program(KABAR_PYTHON3 python3 REQUIRED)
  endif()
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.py)
  foreach(src ${tests})
    get_filename_component(name ${src} NAME_WE)
    add_test(NAME tests/${name} COMMAND ${KABAR_PYTHON3} -u ${src})
    set_tests_properties(tests/${name} PROPERTIES
      ENVIRONMENT "KABAR_SOURCE_DIR=${CMAKE_SOURCE_DIR};KABAR_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONPATH=${CMAKE_SOURCE_DIR}/tests"
      TIMEOUT 600)
  endforeach()
endfunction()

# Fuzz targets: each DIR/*_fuzz.c defines LLVMFuzzerTestOneInput. It is
# built with this build's compiler and tests/fuzz_main.c, a driver that
# replays the corpus in tests/corpus/<name> (ctest "fuzz/<name>-corpus"), and,
# when clang is installed, scripts/fuzz-run builds it with libFuzzer, ASan
# and UBSan and runs a short bounded session (ctest "fuzz/<name>").
function(kabar_fuzz_targets dir lib)
  file(GLOB targets CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${dir}/*_fuzz.c)
  find_program(KABAR_CLANG clang)
  foreach(src ${targets})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/tests/fuzz_main.c)
    target_link_libraries(${name} PRIVATE ${lib})
    add_test(NAME fuzz/${name}-corpus COMMAND ${name} ${CMAKE_SOURCE_DIR}/tests/corpus/${name})
    if(KABAR_CLANG)
      add_test(NAME fuzz/${name} COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz-run ${src} 30)
      set_tests_properties(fuzz/${name} PROPERTIES TIMEOUT 600
        ENVIRONMENT "KABAR_SOURCE_DIR=${CMAKE_SOURCE_DIR};KABAR_BUILD_DIR=${CMAKE_BINARY_DIR}")
    endif()
  endforeach()
endfunction()

# The code format check: every .c/.h is as clang-format would write it.
function(kabar_format_check)
  find_program(CLANG_FORMAT clang-format)
  if(CLANG_FORMAT)
    add_test(NAME format COMMAND ${CMAKE_SOURCE_DIR}/scripts/format-check)
  endif()
endfunction()
