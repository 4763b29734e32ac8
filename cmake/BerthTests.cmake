# SPDX-License-Identifier: Apache-2.0
# berth_discover_tests(<target> LABELS <label>... [FILTER <gtest filter>] [TIMEOUT <s>])
#
# gtest_discover_tests with labels that survive: CMake 3.25 flattens its PROPERTIES list, so
# `PROPERTIES LABELS "integration;root"` labels the tests "integration" only (and sets a
# stray property "root"). Here the discovered tests are collected in a TEST_LIST and a CTest
# include file, run after gtest's own, sets every label on them.
include(GoogleTest)
function(berth_discover_tests target)
  cmake_parse_arguments(ARG "" "FILTER;TIMEOUT" "LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    message(FATAL_ERROR "berth_discover_tests(${target}): LABELS missing")
  endif()
  string(MAKE_C_IDENTIFIER "${target}_${ARG_FILTER}" list_var)
  set(filter)
  if(ARG_FILTER)
    set(filter TEST_FILTER "${ARG_FILTER}")
  endif()
  gtest_discover_tests(${target} ${filter} TEST_LIST ${list_var} DISCOVERY_TIMEOUT 60)
  set(timeout)
  if(ARG_TIMEOUT)
    set(timeout " TIMEOUT ${ARG_TIMEOUT}")
  endif()
  set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${list_var}_labels.cmake)
  file(WRITE ${labels_file}
       "foreach(t IN LISTS ${list_var})\n"
       "  set_tests_properties(\"\${t}\" PROPERTIES LABELS \"${ARG_LABELS}\"${timeout})\n"
       "endforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
endfunction()
