// SPDX-License-Identifier: Apache-2.0
// Pod networks through CNI (SPEC.md section 3): attach, detach, check and garbage-collect
// pod sandboxes on the network that the first configuration file of conf_dir describes, or of
// another configuration directory that the attach request names (a runtime handler's
// cni_conf_dir; one of extra_conf_dirs).
//
// The configuration is read again for every attach and every status, so a configuration
// that appears or changes later is used for new pods; detach, check and GC of an existing
// attachment use the configuration recorded in the attachment cache (cni_cache.h) when it
// was attached, whatever happened to the file since.
//
// Independent of the plugin ABI's host: the plugin (plugin.cc) wraps one instance; tests
// build it over temporary directories and fake plugins.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"
#include "plugins/cni/cni_cache.h"
#include "plugins/cni/cni_config.h"
#include "plugins/cni/cni_exec.h"
#include "plugins/cni/cni_request.h"

namespace berth::cni {

struct NetworkOptions {
  std::string conf_dir = "/etc/cni/net.d";
  // Further configuration directories attach requests may name ("conf_dir"): the runtime
  // handlers' cni_conf_dir. Each is read with the same rules as conf_dir; their readiness is
  // reported (StatusOf) and their 1.1.0 networks get GC like conf_dir's.
  std::vector<std::string> extra_conf_dirs;
  std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  std::string cache_dir;  // required: where attachment records live
  absl::Duration plugin_timeout = absl::Minutes(2);
};

enum class LogLevel { kDebug, kInfo, kWarning, kError };
using LogFn = std::function<void(LogLevel, std::string_view)>;

// The interface name inside the pod's namespace.
inline constexpr char kIfName[] = "eth0";

// Thread-safe: attachments of different sandboxes proceed in parallel, operations on one
// sandbox are serialized, and GC runs alone (SPEC.md "Lifecycle & Ordering").
class Network {
 public:
  // Creates the cache directory. INVALID_ARGUMENT for options that cannot work.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Network>> Create(NetworkOptions options,
                                                                       LogFn log);

  // Ready when the configuration file in use parses, is valid and every binary it names
  // exists, and (1.1.0 lists) every plugin answers STATUS without an error; otherwise
  // NotReady "NetworkPluginNotReady" with a message naming the file and what is wrong.
  sdk::Readiness Status();
  // The same for one configuration directory (conf_dir or one of extra_conf_dirs).
  sdk::Readiness StatusOf(const std::string& conf_dir);
  // conf_dir, then extra_conf_dirs, without repetitions.
  std::vector<std::string> ConfDirs() const;

  // Attaches the sandbox (request JSON of kinds.h) with the configuration of the request's
  // conf_dir (empty: options.conf_dir) and returns the result JSON:
  //   {"ips": [...], "interfaces": [...], "dns": {...}, "network": "<name>",
  //    "config_file": "<the file used>"}
  // INVALID_ARGUMENT for a bad request or a conf_dir that is not one of ConfDirs(),
  // FAILED_PRECONDITION when no usable configuration exists (naming the directory or the
  // file), the failing plugin's error otherwise (cni_exec.h), after every plugin of the list
  // was asked to DEL again.
  [[nodiscard]] absl::StatusOr<std::string> Attach(std::string_view request_json);

  // Detaches the sandbox with what Attach recorded; OK when nothing is recorded. On failure
  // the record stays, so the detach can be retried.
  [[nodiscard]] absl::Status Detach(std::string_view request_json);

  // CNI CHECK of the attachment (cniVersion 0.4.0 and later, unless disableCheck).
  // NOT_FOUND when the sandbox is not attached.
  [[nodiscard]] absl::Status Check(std::string_view request_json);

  // Detaches every recorded sandbox not in `sandbox_ids_json` (a JSON array of strings),
  // then runs GC on the plugins of the current configuration of every directory of
  // ConfDirs() (1.1.0 lists, unless disableGC) with the attachments that remain on that
  // network.
  [[nodiscard]] absl::Status Gc(std::string_view sandbox_ids_json);

  const NetworkOptions& options() const { return options_; }

 private:
  class SandboxLock;
  struct LockEntry {
    std::mutex mu;
    int users = 0;
  };

  Network(NetworkOptions options, LogFn log, AttachmentCache cache);

  void Log(LogLevel level, const std::string& msg) const;

  // Runs plugin `index` of `config` with `request` on stdin (PluginRunner::Run), logging
  // what ran and how long it took at debug level.
  [[nodiscard]] absl::StatusOr<std::string> RunPlugin(const NetworkConfig& config, size_t index,
                                                      const Invocation& inv,
                                                      const nlohmann::json& request);
  // The ADD chain; on failure DELs the whole list in reverse (every plugin, errors logged)
  // and returns the ADD error, with the first DEL error in *undo_error.
  [[nodiscard]] absl::StatusOr<nlohmann::json> AddChain(const NetworkConfig& config,
                                                        const Invocation& inv,
                                                        const nlohmann::json& caps,
                                                        absl::Status* undo_error);
  // The DEL chain in reverse with prev_result; stops at the first error unless best_effort
  // (then every plugin runs and the first error is returned).
  [[nodiscard]] absl::Status DelChain(const NetworkConfig& config, const Invocation& inv,
                                      const nlohmann::json& caps, const nlohmann::json& prev_result,
                                      bool best_effort);
  // Detach of one recorded sandbox; the caller holds its lock. netns: "" or a path.
  [[nodiscard]] absl::Status DetachLocked(const std::string& sandbox_id, const std::string& netns);

  NetworkOptions options_;
  LogFn log_;
  AttachmentCache cache_;
  PluginRunner runner_;

  // Attach, Detach and Check hold it shared; the plugin-GC phase of Gc exclusively.
  std::shared_mutex gc_mu_;
  std::mutex locks_mu_;
  std::map<std::string, std::unique_ptr<LockEntry>> locks_;
};

// The result JSON of Attach from the final CNI result (any version 0.3.0 to 1.1.0).
nlohmann::json AttachResult(const nlohmann::json& cni_result, const std::string& network);

// The readiness of every configuration directory of `network`, as the plugin's status()
// reports it (kinds.h): {"<dir>": {"network_ready": bool, "reason": str, "message": str}}.
nlohmann::json ConfDirStatuses(Network& network);

}  // namespace berth::cni
