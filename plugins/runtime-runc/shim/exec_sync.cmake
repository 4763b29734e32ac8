# SPDX-License-Identifier: Apache-2.0
# berth_exec_sync: the CRI ExecSync runner of berth-shim (run to completion, captured output,
# hard deadline). Included from plugins/runtime-runc/CMakeLists.txt, so paths are relative to
# this file.
add_library(berth_exec_sync STATIC
  ${CMAKE_CURRENT_LIST_DIR}/exec_sync.cc
  ${PROJECT_SOURCE_DIR}/core/status_macros.cc)
target_include_directories(berth_exec_sync PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(berth_exec_sync PUBLIC absl::status absl::statusor absl::strings
  berth::sdk Threads::Threads)

if(BERTH_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
  add_executable(berth_exec_sync_tests ${CMAKE_CURRENT_LIST_DIR}/tests/exec_sync_test.cc)
  target_link_libraries(berth_exec_sync_tests PRIVATE berth_exec_sync GTest::gtest
    GTest::gtest_main)
  gtest_discover_tests(berth_exec_sync_tests PROPERTIES LABELS unit)
endif()
