// SPDX-License-Identifier: Apache-2.0
// Runtime handlers whose shim v2 binary is the whole runtime: Kata Containers
// (containerd-shim-kata-v2, the default), gVisor (containerd-shim-runsc-v1), runwasi shims or
// any third party's (docs/runtime-classes.md). The machinery — starting a shim per pod with
// the shim v2 `start` protocol, recording and following tasks, live restore, cleaning up
// after a dead shim — is the runc plugin's (plugins/runtime-runc/runc_runtime.h) in its shim
// v2 kind: no OCI runtime binary, no runc options; `config_path` goes to the shim as
// KATA_CONF_FILE and as runtimeoptions.v1.Options.
#include <memory>

#include "berth/plugin.hpp"
#include "plugins/runtime-runc/runc_runtime.h"

namespace berth::kata {

class ShimV2Plugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<ShimV2Plugin>* out) {
    std::unique_ptr<runc::RuncRuntime> runtime;
    sdk::Status s = runc::RuncRuntime::Create(host, runc::HandlerKind::kShimV2, &runtime);
    if (!s.ok()) return s;
    out->reset(new ShimV2Plugin(std::move(runtime)));
    return sdk::Status::Ok();
  }
  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_RUNTIME_V1) return sdk::RuntimeTable<ShimV2Plugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return runtime_->Status(); }
  sdk::Status AddHandler(std::string_view name, std::string_view options) {
    return runtime_->AddHandler(name, options);
  }
  sdk::Readiness HandlerStatus(std::string_view name) { return runtime_->HandlerStatus(name); }
  sdk::Status ShimCall(std::string_view handler, std::string_view sandbox_id,
                       std::string_view service, std::string_view method, std::string_view request,
                       uint64_t timeout_ms, std::string* response) {
    return runtime_->ShimCall(handler, sandbox_id, service, method, request, timeout_ms,
                              response);
  }
  sdk::Status Control(std::string_view op, std::string_view request, std::string* out) {
    return runtime_->Control(op, request, out);
  }

 private:
  explicit ShimV2Plugin(std::unique_ptr<runc::RuncRuntime> runtime)
      : runtime_(std::move(runtime)) {}
  std::unique_ptr<runc::RuncRuntime> runtime_;
};

}  // namespace berth::kata

BERTH_PLUGIN(berth::kata::ShimV2Plugin, "io.berth.runtime.kata", BERTH_KIND_RUNTIME, "0.2.0",
             "shim v2 runtime handlers (Kata Containers, gVisor, any containerd-shim-*-v2)", "{}",
             BERTH_NO_REQUIRES)
