// SPDX-License-Identifier: Apache-2.0
// Registration of the overlayfs snapshotter (the implementation is in snapshotter.h/.cc).
#include "berth/plugin.hpp"

#include "plugins/snapshotter-overlay/snapshotter.h"

BERTH_PLUGIN(berth::overlay::Snapshotter, berth::overlay::kPluginId, BERTH_KIND_SNAPSHOTTER,
             "0.1.0", "overlayfs snapshots for image layers and containers", "{}",
             BERTH_NO_REQUIRES)
