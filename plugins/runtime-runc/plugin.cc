// SPDX-License-Identifier: Apache-2.0
// OCI runtime handlers for runc-compatible binaries (runc, crun) through berth-shim.
#include "berth/plugin.hpp"
#include "plugins/common/runtime_handlers.h"

namespace berth::runc {

class RuncPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<RuncPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.runtime.runc", {});
    if (!config.ok()) return config.status();
    out->reset(new RuncPlugin(host));
    return sdk::Status::Ok();
  }
  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_RUNTIME_V1) return sdk::RuntimeTable<RuncPlugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return sdk::Readiness::Ready(); }
  sdk::Status AddHandler(std::string_view name, std::string_view options) {
    return handlers_.Add(name, options, "binary", "runc", {"root", "systemd_cgroup"});
  }
  sdk::Readiness HandlerStatus(std::string_view name) { return handlers_.Status(name); }
  sdk::Status ShimCall(std::string_view, std::string_view, std::string_view, std::string_view,
                       std::string_view, uint64_t, std::string*) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "not yet");
  }
  sdk::Status Control(std::string_view, std::string_view, std::string*) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "not yet");
  }

 private:
  explicit RuncPlugin(sdk::Host host) : host_(host) {}
  sdk::Host host_;
  plugins::HandlerTable handlers_;
};

}  // namespace berth::runc

BERTH_PLUGIN(berth::runc::RuncPlugin, "io.berth.runtime.runc", BERTH_KIND_RUNTIME, "0.1.0",
             "runc/crun runtime handlers over berth-shim (shim v2)", "{}", BERTH_NO_REQUIRES)
