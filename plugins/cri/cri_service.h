// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"

namespace grpc {
class Server;
}

namespace berth::cri {

class RuntimeServiceImpl;
class ImageServiceImpl;
class BerthServiceImpl;

// The CRI v1 service plugin: serves RuntimeService and ImageService on the daemon socket.
class CriPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<CriPlugin>* out);
  ~CriPlugin();

  const void* GetInterface(std::string_view iface);
  sdk::Readiness Status();
  sdk::Status Start();
  void Stop();

  // Used by the gRPC services.
  sdk::Host& host() { return host_; }
  const std::string& cgroup_driver() const { return cgroup_driver_; }
  const std::string& default_runtime() const { return default_runtime_; }
  struct Handler {
    std::string name;
    sdk::Iface<berth_runtime_v1> runtime;
    std::string cni_conf_dir = {};  // runtimes: <name>: cni_conf_dir; "": the plugin's own
    std::string snapshotter = {};   // runtimes: <name>: snapshotter, as written; "": default
  };
  const std::vector<Handler>& handlers() const { return handlers_; }
  // RuntimeReady: the default runtime handler and the image/snapshot/cgroup plugins.
  sdk::Readiness RuntimeReadiness();
  struct NetworkConditions {
    // NetworkReady: the network of the default runtime handler (its cni_conf_dir, else the
    // network plugin's conf_dir), which pods without a RuntimeClass get.
    sdk::Readiness network;
    // RuntimeHandlerNetworksReady, only when some handler's network is another directory:
    // ready when every such directory is; otherwise names each handler and its problem.
    std::optional<sdk::Readiness> handler_networks;
  };
  NetworkConditions NetworkReadiness();
  // What `crictl info` shows: plugins and effective configuration, as JSON.
  nlohmann::json Info();

 private:
  explicit CriPlugin(sdk::Host host);
  // The network plugin's status() as JSON (kinds.h: with "conf_dirs" when it supports
  // per-handler configuration directories); a not-ready object when there is none.
  nlohmann::json NetworkStatus();

  sdk::Host host_;
  std::string socket_;
  std::string cgroup_driver_;
  std::string default_runtime_;
  std::string sandbox_image_;
  nlohmann::json config_;
  std::vector<Handler> handlers_;
  std::unique_ptr<RuntimeServiceImpl> runtime_service_;
  std::unique_ptr<ImageServiceImpl> image_service_;
  std::unique_ptr<BerthServiceImpl> berth_service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace berth::cri
