// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.h"

namespace boost::dll {
class shared_library;
}

namespace berth::core {

enum class PluginState {
  kLoaded,    // descriptor read and accepted; not enabled (yet)
  kRefused,   // the file could not be accepted (reason says why)
  kDisabled,  // accepted but not enabled by the configuration
  kEnabled,   // to be started
  kRunning,   // initialised (and, for services, serving)
  kSkipped,   // init said "not applicable on this host"
  kFailed,    // init failed, or a dependency is missing at start
  kStopped,
};
std::string_view PluginStateName(PluginState state);

struct Plugin {
  std::filesystem::path file;
  // Copied from the plugin with min(struct_size, sizeof) bytes, the rest zero.
  berth_plugin_descriptor desc{};
  std::string id, kind, version, description, default_config_json;
  std::vector<std::string> requires_list;
  uint16_t abi_major = 0, abi_minor = 0;
  PluginState state = PluginState::kLoaded;
  std::string reason;  // refusal, skip or failure reason
  std::shared_ptr<boost::dll::shared_library> lib;
  void* instance = nullptr;
  std::shared_ptr<void> host_context;  // owned host table for this plugin

  const void* Interface(const char* name) const;
};

// Loads plugin files, checks them against the host ABI, orders them by their requirements
// and runs their lifecycle. Plugins are never unloaded once initialised (no dlclose).
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Loads every regular *.so in dirs (not recursive, by file name). A file that cannot be
  // accepted becomes a kRefused record; that is an error only when the configuration
  // enables the plugin. A missing directory is skipped.
  void Discover(const std::vector<std::filesystem::path>& dirs);
  // Loads one file; returns the refusal (also recorded) or OK.
  absl::Status LoadFile(const std::filesystem::path& file);

  const std::vector<std::unique_ptr<Plugin>>& plugins() const { return plugins_; }
  // The accepted plugin with this id, or nullptr.
  Plugin* Find(std::string_view id) const;

  // Marks `enabled` as kEnabled and the other accepted plugins kDisabled, and returns the
  // start order. `where(id)` names the configuration line that enabled a plugin.
  absl::StatusOr<std::vector<Plugin*>> Resolve(
      const std::set<std::string>& enabled,
      const std::function<std::string(std::string_view id)>& where);

  // Initialises `order` front to back with host tables from make_host, then starts every
  // service. On failure returns the plugin's error after stopping what had started.
  using HostFactory = std::function<std::shared_ptr<void>(Plugin*)>;
  using HostTable = std::function<const berth_host*(const std::shared_ptr<void>&)>;
  // With start_services false (berthd --check-config), services are not started.
  absl::Status Start(const std::vector<Plugin*>& order, const HostFactory& make_host,
                     const HostTable& table_of, bool start_services = true);
  // Stops services, then shuts plugins down, in reverse start order. Idempotent.
  void Stop();

  // Plugins that initialised, in start order.
  const std::vector<Plugin*>& started() const { return started_; }

  // JSON array describing every plugin (for list_plugins and berthctl).
  std::string ToJson() const;

 private:
  std::vector<std::unique_ptr<Plugin>> plugins_;
  std::vector<Plugin*> started_;
};

}  // namespace berth::core
