# SPDX-License-Identifier: Apache-2.0
# berth_add_plugin(<target> SOURCES ... [LIBS ...])
# Builds a plugin MODULE that exports only berth_plugin_entry and has no undefined symbols:
# a plugin reaches berthd only through the host table.
function(berth_add_plugin target)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${target}
    LIBRARY_OUTPUT_DIRECTORY ${BERTH_PLUGIN_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE berth::sdk ${ARG_LIBS})
  target_link_options(${target} PRIVATE
    -Wl,--no-undefined
    -Wl,--version-script=${PROJECT_SOURCE_DIR}/sdk/plugin.map)
  install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/berth/plugins
          COMPONENT ${target})
endfunction()
