# SPDX-License-Identifier: Apache-2.0
# The SDK example built out of tree against the installed SDK and run in berthd (needs root;
# exits 77, reported as skipped, otherwise).
add_test(NAME sdk_example_out_of_tree
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sdk_example_test.sh ${PROJECT_SOURCE_DIR}
                 ${PROJECT_BINARY_DIR})
set_tests_properties(sdk_example_out_of_tree PROPERTIES
  TIMEOUT 300 LABELS integration SKIP_RETURN_CODE 77)
