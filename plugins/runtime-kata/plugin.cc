// SPDX-License-Identifier: Apache-2.0
// Runtime handlers for VM-isolated pods (Kata) or any shim v2 binary.
#include "berth/plugin.hpp"
#include "plugins/common/runtime_handlers.h"

namespace berth::kata {

class KataPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<KataPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.runtime.kata", {});
    if (!config.ok()) return config.status();
    out->reset(new KataPlugin(host));
    return sdk::Status::Ok();
  }
  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_RUNTIME_V1) return sdk::RuntimeTable<KataPlugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return sdk::Readiness::Ready(); }
  sdk::Status AddHandler(std::string_view name, std::string_view options) {
    return handlers_.Add(name, options, "shim", "containerd-shim-kata-v2", {"config_path"});
  }
  sdk::Readiness HandlerStatus(std::string_view name) { return handlers_.Status(name); }
  // Tasks over the Kata shim come with the Kata issue; until then they are refused.
  sdk::Status ShimCall(std::string_view, std::string_view, std::string_view, std::string_view,
                       std::string_view, uint64_t, std::string*) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "the Kata runtime handler cannot run tasks yet");
  }
  sdk::Status Control(std::string_view op, std::string_view, std::string*) {
    return sdk::Status(BERTH_UNIMPLEMENTED,
                       "the Kata runtime handler has no operation \"" + std::string(op) + "\" yet");
  }

 private:
  explicit KataPlugin(sdk::Host host) : host_(host) {}
  sdk::Host host_;
  plugins::HandlerTable handlers_;
};

}  // namespace berth::kata

BERTH_PLUGIN(berth::kata::KataPlugin, "io.berth.runtime.kata", BERTH_KIND_RUNTIME, "0.1.0",
             "shim v2 runtime handlers (Kata Containers, any containerd-shim-*-v2)", "{}",
             BERTH_NO_REQUIRES)
