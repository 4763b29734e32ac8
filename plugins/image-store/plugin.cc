// SPDX-License-Identifier: Apache-2.0
#include "berth/plugin.hpp"
#include "plugins/image-store/image_store.h"

BERTH_PLUGIN(berth::image::ImageStore, "io.berth.image-store", BERTH_KIND_IMAGE_STORE, "0.1.0",
             "OCI registry client, content store and layer unpacking",
             R"({"registry_config_path":"/etc/berth/certs.d","max_concurrent_downloads":3,)"
             R"("pull_progress_timeout":"1m"})",
             BERTH_REQUIRES(BERTH_KIND_SNAPSHOTTER))
