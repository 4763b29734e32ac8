// SPDX-License-Identifier: Apache-2.0
// Registration of the native snapshotter: the overlay snapshotter's implementation
// (plugins/snapshotter-overlay/snapshotter.h) in its native layout. Each snapshot is a
// directory holding the whole tree: prepare and view copy the parent's tree, mounts are one
// bind mount, nothing needs overlayfs (docs/snapshotter.md). For runtimes that cannot use
// overlay layers, and as the second snapshotter of a node.
#include "berth/plugin.hpp"

#include <memory>
#include <string>
#include <string_view>

#include "plugins/snapshotter-overlay/snapshotter.h"

namespace berth::native {

using overlay::Snapshotter;

// The plugin type: every call goes to a Snapshotter made with Layout::kNative.
class NativeSnapshotter {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<NativeSnapshotter>* out) {
    std::unique_ptr<Snapshotter> s;
    sdk::Status status =
        Snapshotter::Create(host, Snapshotter::Layout::kNative, overlay::kNativePluginId, &s);
    if (!status.ok()) return status;
    out->reset(new NativeSnapshotter(std::move(s)));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_SNAPSHOTTER_V1) return sdk::SnapshotterTable<NativeSnapshotter>();
    return nullptr;
  }

  sdk::Readiness Status() { return s_->Status(); }
  std::string_view Name() const { return s_->Name(); }
  sdk::Result<std::string> Prepare(std::string_view key, std::string_view parent,
                                   std::string_view labels_json) {
    return s_->Prepare(key, parent, labels_json);
  }
  sdk::Result<std::string> View(std::string_view key, std::string_view parent,
                                std::string_view labels_json) {
    return s_->View(key, parent, labels_json);
  }
  sdk::Result<std::string> Mounts(std::string_view key) { return s_->Mounts(key); }
  sdk::Status Commit(std::string_view name, std::string_view key, std::string_view labels_json) {
    return s_->Commit(name, key, labels_json);
  }
  sdk::Status Remove(std::string_view key) { return s_->Remove(key); }
  sdk::Result<std::string> Stat(std::string_view key) { return s_->Stat(key); }
  sdk::Result<std::string> Usage(std::string_view key) { return s_->Usage(key); }
  sdk::Result<std::string> Walk() { return s_->Walk(); }
  sdk::Result<std::string> FsUsage() { return s_->FsUsage(); }

 private:
  explicit NativeSnapshotter(std::unique_ptr<Snapshotter> s) : s_(std::move(s)) {}
  std::unique_ptr<Snapshotter> s_;
};

}  // namespace berth::native

BERTH_PLUGIN(berth::native::NativeSnapshotter, berth::overlay::kNativePluginId,
             BERTH_KIND_SNAPSHOTTER, "0.1.0",
             "native snapshots: full copies, bind-mounted (no overlayfs)", "{}", BERTH_NO_REQUIRES)
