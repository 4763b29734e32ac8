# SPDX-License-Identifier: Apache-2.0
# berth_sdk_add_plugin(<target> <sources>...): a berth plugin module built out of tree.
# Exports only berth_plugin_entry and refuses undefined symbols, as berth's own plugins.
function(berth_sdk_add_plugin target)
  add_library(${target} MODULE ${ARGN})
  set_target_properties(${target} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE berth::sdk)
  target_link_options(${target} PRIVATE -Wl,--no-undefined
    -Wl,--version-script=${BERTH_SDK_PLUGIN_MAP})
endfunction()
