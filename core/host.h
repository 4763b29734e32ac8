// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "berth/host.h"
#include "core/config.h"
#include "core/events.h"
#include "core/registry.h"
#include "core/store.h"

namespace berth::core {

// What the host tables give plugins access to; owned by the daemon.
struct HostServices {
  mutable std::mutex config_mu;  // guards config (replaced on SIGHUP)
  Config config;
  Store* store = nullptr;
  EventBus* events = nullptr;
  Registry* registry = nullptr;
  std::string version;  // berthd's version

  Config CurrentConfig() const {
    std::lock_guard<std::mutex> lock(config_mu);
    return config;
  }
};

// Builds the host table for one plugin: its directories (<root>/<id>, <state>/<id>, made
// 0700 at first use), logger, configuration and store buckets "<id>/<bucket>".
std::shared_ptr<void> MakeHostContext(Plugin* plugin, HostServices* services);
const berth_host* HostTableOf(const std::shared_ptr<void>& context);

}  // namespace berth::core
