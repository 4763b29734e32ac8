// SPDX-License-Identifier: Apache-2.0
// The overlayfs snapshotter. This version checks that the kernel offers overlayfs.
#include <fstream>
#include <string>

#include "berth/plugin.hpp"
#include "plugins/common/plugin_util.h"

namespace berth::overlay {

bool KernelHasOverlay() {
  std::ifstream f("/proc/filesystems");
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() >= 7 && line.compare(line.size() - 7, 7, "overlay") == 0) return true;
  }
  return false;
}

class OverlayPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<OverlayPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.snapshotter.overlay", {});
    if (!config.ok()) return config.status();
    if (!KernelHasOverlay()) {
      return sdk::NotApplicable(
          "the kernel offers no overlay filesystem (/proc/filesystems; try modprobe overlay)");
    }
    out->reset(new OverlayPlugin(host));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_SNAPSHOTTER_V1) return sdk::SnapshotterTable<OverlayPlugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return sdk::Readiness::Ready(); }
  std::string_view Name() const { return "overlayfs"; }

 private:
  explicit OverlayPlugin(sdk::Host host) : host_(host) {}
  sdk::Host host_;
};

}  // namespace berth::overlay

BERTH_PLUGIN(berth::overlay::OverlayPlugin, "io.berth.snapshotter.overlay",
             BERTH_KIND_SNAPSHOTTER, "0.1.0", "overlayfs snapshots for image layers and containers",
             "{}", BERTH_NO_REQUIRES)
