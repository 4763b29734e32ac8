// SPDX-License-Identifier: Apache-2.0
//
// The overlayfs snapshotter: containerd's snapshot model (committed, active and view
// snapshots) over overlayfs, with metadata in the host's store. The on-disk layout and the
// crash-safety design are described in docs/snapshotter.md.
//
// The same code in its native layout is the native snapshotter (plugins/snapshotter-native):
// each snapshot is a directory holding the whole tree (prepare and view copy the parent's),
// mounted with a bind mount; no overlayfs needed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"

namespace berth::overlay {

inline constexpr const char* kPluginId = "io.berth.snapshotter.overlay";
inline constexpr const char* kNativePluginId = "io.berth.snapshotter.native";

// Does /proc/filesystems list overlay?
bool KernelHasOverlay();

class Snapshotter {
 public:
  // Keys and names: 1..kMaxKeyBytes bytes of UTF-8 without NUL.
  static constexpr size_t kMaxKeyBytes = 256;
  // A label's key and value together.
  static constexpr size_t kMaxLabelBytes = 4096;
  // Above this many bytes of absolute-path mount options, the mounts use paths relative
  // to the snapshots directory with "chdir" (mount(2) takes at most one page of options).
  static constexpr size_t kMaxAbsoluteOptionBytes = 3500;

  enum class Layout {
    kOverlay,  // layers stacked by overlayfs ("overlayfs")
    kNative,   // full copies, bind-mounted ("native")
  };

  // The overlay layout: NOT_APPLICABLE when the kernel has no overlayfs. Removes the
  // leftovers of a crash.
  static sdk::Status Create(sdk::Host host, std::unique_ptr<Snapshotter>* out);
  // Either layout; `plugin_id` names the plugin's configuration in messages.
  static sdk::Status Create(sdk::Host host, Layout layout, const char* plugin_id,
                            std::unique_ptr<Snapshotter>* out);
  ~Snapshotter();
  Snapshotter(const Snapshotter&) = delete;
  Snapshotter& operator=(const Snapshotter&) = delete;

  const void* GetInterface(std::string_view iface);

  // berth.snapshotter.v1 (see sdk::SnapshotterTable).
  sdk::Readiness Status();
  std::string_view Name() const { return layout_ == Layout::kNative ? "native" : "overlayfs"; }
  sdk::Result<std::string> Prepare(std::string_view key, std::string_view parent,
                                   std::string_view labels_json);
  sdk::Result<std::string> View(std::string_view key, std::string_view parent,
                                std::string_view labels_json);
  sdk::Result<std::string> Mounts(std::string_view key);
  sdk::Status Commit(std::string_view name, std::string_view key, std::string_view labels_json);
  sdk::Status Remove(std::string_view key);
  sdk::Result<std::string> Stat(std::string_view key);
  sdk::Result<std::string> Usage(std::string_view key);
  sdk::Result<std::string> Walk();
  sdk::Result<std::string> FsUsage();

 private:
  enum class Kind { kCommitted, kActive, kView };
  // One snapshot as stored in the "snapshots" bucket (JSON).
  struct Record {
    uint64_t id = 0;
    Kind kind = Kind::kActive;
    std::string parent;
    nlohmann::json labels = nlohmann::json::object();
    std::string created;  // RFC 3339
    // The layer's usage, measured at commit (committed snapshots only).
    int64_t size = -1, inodes = -1;
  };

  Snapshotter(sdk::Host host, Layout layout, std::string root);

  // Native layout: copies the tree of committed snapshot `parent` into `fs` (an empty
  // directory) before the snapshot is recorded. Nothing when the parent is not (yet) a
  // committed snapshot: recording it then fails with the precise error.
  sdk::Status CopyParent(std::string_view parent, const std::string& fs, uint64_t* parent_id);

  // Removes tmp-* directories and snapshot directories the store does not know.
  sdk::Status Recover();
  // Mounts a tiny overlay to learn whether this filesystem can hold overlay layers.
  void Probe();

  sdk::Result<std::string> CreateSnapshot(Kind kind, std::string_view key, std::string_view parent,
                                          std::string_view labels_json);
  // The mounts of `r`, given the ids of its parent chain (nearest first).
  std::string MountsJson(const Record& r, const std::vector<uint64_t>& chain) const;
  // The ids of the committed snapshots below `parent` (itself first), read in `txn`.
  sdk::Result<std::vector<uint64_t>> Chain(sdk::Txn& txn, const std::string& parent) const;
  std::string Dir(uint64_t id) const;  // <root>/snapshots/<id>
  std::string Fs(uint64_t id) const;   // <root>/snapshots/<id>/fs
  std::string TmpName();               // a unique "tmp-..." name

  static std::string Encode(const Record& r);
  static sdk::Result<Record> Decode(std::string_view key, std::string_view value);
  static std::string Info(std::string_view name, const Record& r);
  static sdk::Result<Record> Get(sdk::Txn& txn, std::string_view key);

  sdk::Host host_;
  Layout layout_ = Layout::kOverlay;
  std::string root_;         // the plugin's root directory
  std::string snapshots_;    // <root>/snapshots
  std::string probe_error_;  // why overlay cannot be mounted here; empty when it can
  bool index_off_ = false;   // the overlay module has an "index" parameter: pass index=off
  std::atomic<uint64_t> tmp_counter_{0};
  uint64_t tmp_seed_ = 0;
};

}  // namespace berth::overlay
