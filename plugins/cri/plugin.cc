// SPDX-License-Identifier: Apache-2.0
#include "berth/plugin.hpp"
#include "plugins/cri/cri_service.h"

BERTH_PLUGIN(berth::cri::CriPlugin, "io.berth.cri", BERTH_KIND_SERVICE, "0.1.0",
             "CRI v1 RuntimeService and ImageService on the berthd socket",
             R"({"cgroup_driver":"cgroupfs","stream_address":"127.0.0.1","stream_port":0})",
             BERTH_REQUIRES(BERTH_KIND_IMAGE_STORE, BERTH_KIND_NETWORK,
                            BERTH_KIND_CGROUP_DRIVER, BERTH_KIND_RUNTIME))
