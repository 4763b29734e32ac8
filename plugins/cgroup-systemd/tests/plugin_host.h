// SPDX-License-Identifier: Apache-2.0
// The built plugin (.so), loaded through its C entry point with a minimal host table that
// serves the configuration and collects the log, and its berth_cgroup_driver_v1 table.
#pragma once

#include <dlfcn.h>

#include <string>

#include "berth/plugin.hpp"
#include "tests/support/plugin_loader.h"

namespace berth::cgroup_systemd::testing {

struct CallResult {
  int32_t code = BERTH_OK;
  std::string out;
  std::string err;
};

// The built plugin through its C table (tests/support/plugin_loader.h), with calls that
// return code, output and message together.
class LoadedPlugin {
 public:
  // Loads the plugin and initialises it with `config_json`; the init code and message.
  CallResult Init(const std::string& config_json) {
    plugin_.Load(BERTH_CGROUP_SYSTEMD_PLUGIN, "io.berth.cgroup.systemd", BERTH_KIND_CGROUP_DRIVER);
    if (plugin_.desc() == nullptr) return {BERTH_INTERNAL, "", "the plugin did not load"};
    CallResult res;
    res.code = plugin_.Init(config_json, BERTH_IFACE_CGROUP_DRIVER_V1, &res.err);
    return res;
  }

  const berth_plugin_descriptor* descriptor() const { return plugin_.desc(); }
  const berth_cgroup_driver_v1* table() const { return plugin_.table(); }
  const std::string& log() const { return plugin_.ctx.log; }

  std::string DriverName() const {
    return std::string(sdk::View(table()->driver_name(plugin_.instance())));
  }
  CallResult Status() const {
    sdk::StringSink out, err;
    int32_t code = table()->status(plugin_.instance(), out.get(), err.get());
    return {code, out.take(), err.take()};
  }
  CallResult CgroupPath(const std::string& parent, const std::string& id) const {
    sdk::StringSink out, err;
    int32_t code = table()->cgroup_path(plugin_.instance(), sdk::Str(parent), sdk::Str(id),
                                        out.get(), err.get());
    return {code, out.take(), err.take()};
  }
  CallResult Stats(const std::string& path) const {
    sdk::StringSink out, err;
    int32_t code = table()->stats(plugin_.instance(), sdk::Str(path), out.get(), err.get());
    return {code, out.take(), err.take()};
  }
  CallResult Remove(const std::string& path) const {
    sdk::StringSink err;
    int32_t code = table()->remove(plugin_.instance(), sdk::Str(path), err.get());
    return {code, "", err.take()};
  }

 private:
  ::berth::testing::LoadedPlugin<berth_cgroup_driver_v1> plugin_;
};

}  // namespace berth::cgroup_systemd::testing
