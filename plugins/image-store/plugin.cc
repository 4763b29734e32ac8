// SPDX-License-Identifier: Apache-2.0
// The image store: registry client, content store and unpacking. This version validates
// its configuration and reports whether its content directory is usable.
#include <unistd.h>

#include "berth/plugin.hpp"
#include "plugins/common/plugin_util.h"

namespace berth::image_store {

class ImageStorePlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<ImageStorePlugin>* out) {
    auto config = plugins::LoadConfig(
        host, "io.berth.image-store",
        {"registry_config_path", "max_concurrent_downloads", "pull_progress_timeout"});
    if (!config.ok()) return config.status();
    auto hosts_dir = plugins::StringOption(host, *config, "registry_config_path",
                                           "/etc/berth/certs.d");
    if (!hosts_dir.ok()) return hosts_dir.status();
    int downloads = 3;
    if (config->contains("max_concurrent_downloads")) {
      const auto& v = (*config)["max_concurrent_downloads"];
      if (!v.is_number_integer() || v.get<int>() < 1 || v.get<int>() > 64) {
        return sdk::InvalidArgument(host.ConfigWhere("max_concurrent_downloads") +
                                    ": key \"max_concurrent_downloads\": expected an integer "
                                    "from 1 to 64, got " + v.dump());
      }
      downloads = v.get<int>();
    }
    out->reset(new ImageStorePlugin(host, *hosts_dir, downloads));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_IMAGE_STORE_V1) return sdk::ImageStoreTable<ImageStorePlugin>();
    return nullptr;
  }

  sdk::Result<std::string> Pull(std::string_view, std::string_view, std::string_view,
                                const std::function<void(std::string_view)>&) {
    return sdk::Unimplemented("PullImage is not implemented yet");
  }
  sdk::Result<std::string> ImageStatus(std::string_view ref) {
    return sdk::NotFound("no image " + std::string(ref));
  }
  sdk::Result<std::string> List(std::string_view) { return std::string("[]"); }
  sdk::Status Remove(std::string_view ref) { return sdk::NotFound("no image " + std::string(ref)); }
  sdk::Result<std::string> FsInfo() { return sdk::Unimplemented("ImageFsInfo is not implemented yet"); }

  sdk::Readiness Status() {
    std::string root = host_.RootDir();
    if (::access(root.c_str(), W_OK) != 0) {
      return sdk::Readiness::NotReady("ImageStoreNotWritable",
                                      "image store directory " + root + " is not writable");
    }
    return sdk::Readiness::Ready();
  }

 private:
  ImageStorePlugin(sdk::Host host, std::string hosts_dir, int downloads)
      : host_(host), hosts_dir_(std::move(hosts_dir)), max_downloads_(downloads) {}

  sdk::Host host_;
  std::string hosts_dir_;
  int max_downloads_;
};

}  // namespace berth::image_store

BERTH_PLUGIN(berth::image_store::ImageStorePlugin, "io.berth.image-store",
             BERTH_KIND_IMAGE_STORE, "0.1.0",
             "OCI registry client, content store and layer unpacking",
             R"({"registry_config_path":"/etc/berth/certs.d","max_concurrent_downloads":3,)"
             R"("pull_progress_timeout":"1m"})",
             BERTH_REQUIRES(BERTH_KIND_SNAPSHOTTER))
