// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"
#include "plugins/image-store/content/content_store.h"
#include "plugins/image-store/registry/client.h"
#include "plugins/image-store/registry/reference.h"

namespace berth::image {

// The image store plugin: pulls (registry client → content store → unpack into snapshots
// of the configured snapshotter), image metadata in the host store, and garbage collection.
//
// Several snapshotters: the default one (the `snapshotter` setting; else the overlay
// snapshotter when it runs, else the first running one) and those the runtime handlers name
// (runtimes: <handler>: snapshotter, by name or plugin id). A pull for a handler unpacks into
// its snapshotter; an image already in the content store is unpacked into another snapshotter
// without the registry ("unpack_only", kinds.h).
class ImageStore {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<ImageStore>* out);
  ~ImageStore();

  const void* GetInterface(std::string_view iface);
  sdk::Readiness Status();
  // status() with the snapshotters (kinds.h): the default's plugin id and each handler's.
  std::string StatusJson();
  sdk::Result<std::string> Pull(std::string_view ref, std::string_view auth_json,
                                std::string_view options_json,
                                const std::function<void(std::string_view)>& progress);
  sdk::Result<std::string> ImageStatus(std::string_view ref);
  sdk::Result<std::string> List(std::string_view filter_ref);
  sdk::Status Remove(std::string_view ref);
  sdk::Result<std::string> FsInfo();

 private:
  explicit ImageStore(sdk::Host host) : host_(host) {}

  using Snapshotter = sdk::Iface<berth_snapshotter_v1>;

  // The snapshotter a pull's options name: "snapshotter" (name or plugin id), else the
  // "runtime_handler"'s, else the default. INVALID_ARGUMENT for an unknown snapshotter.
  absl::StatusOr<Snapshotter> TargetOf(const nlohmann::json& options) const;
  // The running snapshotter whose name() or plugin id is `name`; nullopt when none.
  std::optional<Snapshotter> FindSnapshotter(std::string_view name) const;
  absl::StatusOr<std::string> DoPull(const Reference& ref, const Credentials& creds,
                                     const std::function<void(std::string_view)>& progress,
                                     const Snapshotter& target);
  // Unpacks the layers of image `rec` that `target` lacks, from the content store.
  absl::Status UnpackFromContent(const nlohmann::json& rec, const Snapshotter& target);
  // Downloads one blob into the content store once, however many pulls want it at once.
  absl::Status FetchOnce(const Reference& ref, const Descriptor& desc, const Credentials& creds,
                         const std::function<void(int64_t)>& on_bytes);
  // Unpacks layer `index` of a pull into snapshot chain_id (parent: the previous chain) of
  // `target`.
  absl::Status ApplyLayer(const Snapshotter& target, const Descriptor& layer,
                          const std::string& diff_id, const std::string& chain_id,
                          const std::string& parent);
  // Finds the image a reference, id or id prefix names.
  absl::StatusOr<nlohmann::json> Find(std::string_view ref);
  absl::StatusOr<std::vector<nlohmann::json>> AllImages();
  // Removes blobs and committed snapshots that no image uses. With only_if_idle, does
  // nothing while a pull is running.
  void CollectGarbage(bool only_if_idle = false);

  sdk::Host host_;
  uint64_t stopping_subscription_ = 0;
  std::atomic<bool> stopping_{false};  // berthd is stopping: pulls end with CANCELLED
  std::string hosts_dir_;
  int max_downloads_ = 3;
  std::chrono::seconds progress_timeout_{60};
  std::unique_ptr<ContentStore> content_;
  std::once_flag client_once_;
  std::unique_ptr<RegistryClient> client_;  // made at the first pull
  Snapshotter snapshotter_;                      // the default
  std::vector<Snapshotter> snapshotters_;         // every running one, the default first
  std::map<std::string, Snapshotter> handlers_;  // runtime handler -> its own snapshotter

  // Pulls hold it shared; garbage collection exclusive (it must not remove what an
  // unfinished pull has fetched but not yet recorded).
  std::shared_mutex gc_mu_;
  std::mutex meta_mu_;  // serialises image record updates
  std::mutex inflight_mu_;
  std::map<std::string, std::shared_future<absl::Status>> blobs_inflight_;
  std::map<std::string, std::shared_future<absl::StatusOr<std::string>>> pulls_inflight_;
};

}  // namespace berth::image
