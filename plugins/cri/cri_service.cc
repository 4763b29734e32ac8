// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/cri_service.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <set>

#include "cri/v1/api.grpc.pb.h"
#include "plugins/cri/berth_service.h"
#include "plugins/cri/image_service.h"
#include "plugins/cri/runtime_service.h"

namespace berth::cri {
namespace {

constexpr char kDefaultSandboxImage[] = "registry.k8s.io/pause:3.10";

const std::set<std::string>& KnownKeys() {
  static const std::set<std::string> keys = {"cgroup_driver",       "sandbox_image",
                                             "stream_address",      "stream_port",
                                             "stream_tls_cert_file", "stream_tls_key_file",
                                             "cdi_spec_dirs",       "shim_cgroup"};
  return keys;
}

}  // namespace

CriPlugin::CriPlugin(sdk::Host host) : host_(host) {}

CriPlugin::~CriPlugin() { Stop(); }

sdk::Status CriPlugin::Create(sdk::Host host, std::unique_ptr<CriPlugin>* out) {
  std::unique_ptr<CriPlugin> p(new CriPlugin(host));
  auto config_text = host.Config();
  if (!config_text.ok()) return config_text.status();
  p->config_ = nlohmann::json::parse(*config_text, nullptr, false);
  if (!p->config_.is_object()) return sdk::Internal("configuration is not a JSON object");
  for (auto& [key, value] : p->config_.items()) {
    if (KnownKeys().count(key) == 0) {
      return sdk::InvalidArgument(host.ConfigWhere(key.c_str()) + ": unknown key \"" + key +
                                  "\" for plugin io.berth.cri (known keys: cdi_spec_dirs, "
                                  "cgroup_driver, sandbox_image, shim_cgroup, stream_address, "
                                  "stream_port, stream_tls_cert_file, stream_tls_key_file)");
    }
  }
  // Without a choice in the configuration: systemd when its driver runs and reaches systemd
  // (systemd is PID 1 here), else cgroupfs. The kubelet (1.28+) follows through RuntimeConfig.
  p->cgroup_driver_ = "cgroupfs";
  std::string why_driver = "the default: no reachable systemd";
  for (const auto& drv : host.All<berth_cgroup_driver_v1>(BERTH_IFACE_CGROUP_DRIVER_V1)) {
    if (sdk::View(drv.table->driver_name(drv.instance)) == "systemd" &&
        sdk::QueryStatus(drv).ready) {
      p->cgroup_driver_ = "systemd";
      why_driver = "the default: systemd is the init system and reachable";
    }
  }
  if (p->config_.contains("cgroup_driver")) {
    why_driver = "configured";
    const auto& v = p->config_["cgroup_driver"];
    if (!v.is_string() || (v != "cgroupfs" && v != "systemd")) {
      return sdk::InvalidArgument(host.ConfigWhere("cgroup_driver") +
                                  ": key \"cgroup_driver\": expected cgroupfs or systemd, got " +
                                  v.dump());
    }
    p->cgroup_driver_ = v.get<std::string>();
  }
  // The cgroup driver the kubelet must align with: a running plugin of that name.
  bool found = false;
  sdk::Iface<berth_cgroup_driver_v1> cgroups;
  for (const auto& drv : host.All<berth_cgroup_driver_v1>(BERTH_IFACE_CGROUP_DRIVER_V1)) {
    if (sdk::View(drv.table->driver_name(drv.instance)) == p->cgroup_driver_) {
      found = true;
      cgroups = drv;
    }
  }
  if (!found) {
    std::string why;
    auto plugins = nlohmann::json::parse(host.ListPlugins(), nullptr, false);
    if (plugins.is_array()) {
      for (const auto& pl : plugins) {
        if (pl.value("kind", "") == BERTH_KIND_CGROUP_DRIVER && pl.value("state", "") != "running") {
          why += "; " + pl.value("id", "") + " is " + pl.value("state", "") +
                 (pl.value("reason", "").empty() ? "" : ": " + pl.value("reason", ""));
        }
      }
    }
    return sdk::FailedPrecondition(host.ConfigWhere("cgroup_driver") + ": cgroup driver \"" +
                                   p->cgroup_driver_ + "\" is not available" + why);
  }

  host.Info("cgroup driver: " + p->cgroup_driver_ + " (" + why_driver + ")");

  auto daemon = nlohmann::json::parse(host.Section("daemon").value(), nullptr, false);
  p->socket_ = daemon.value("socket", "");
  if (p->socket_.empty()) return sdk::Internal("the daemon section names no socket");

  // Runtime handlers: each declared to its runtime plugin, which validates its options.
  auto runtimes = host.Section("runtimes");
  if (!runtimes.ok()) return runtimes.status();
  auto rj = nlohmann::json::parse(*runtimes, nullptr, false);
  p->default_runtime_ = rj.value("default_runtime", "");
  for (auto& [name, entry] : rj["handlers"].items()) {
    std::string plugin_id = entry.value("plugin", "");
    auto rt = host.Lookup<berth_runtime_v1>(BERTH_IFACE_RUNTIME_V1, plugin_id.c_str());
    if (!rt.ok()) {
      return sdk::FailedPrecondition(host.ConfigWhere(("/runtimes." + name).c_str()) +
                                     ": runtime handler \"" + name + "\": " +
                                     rt.status().message());
    }
    // One cgroup manager for the node: a runc handler's systemd_cgroup follows the driver.
    nlohmann::json opts = entry.contains("options") ? entry["options"] : nlohmann::json::object();
    if (plugin_id == "io.berth.runtime.runc" && opts.is_object()) {
      const bool systemd = p->cgroup_driver_ == "systemd";
      if (!opts.contains("systemd_cgroup")) {
        opts["systemd_cgroup"] = systemd;
      } else if (opts["systemd_cgroup"].is_boolean() && opts["systemd_cgroup"] != systemd) {
        return sdk::FailedPrecondition(
            host.ConfigWhere(("/runtimes." + name + ".options.systemd_cgroup").c_str()) +
            ": runtime handler \"" + name + "\" sets systemd_cgroup: " +
            opts["systemd_cgroup"].dump() + " but berth's cgroup driver is " +
            p->cgroup_driver_ + ": two cgroup managers would fight over the same cgroups. "
            "Remove the option (it follows the driver) or change cgroup_driver of io.berth.cri");
      }
    }
    sdk::StringSink err;
    std::string options = opts.dump();
    int32_t code = rt->table->add_handler(rt->instance, sdk::Str(name), sdk::Str(options),
                                          err.get());
    if (code != BERTH_OK) {
      return sdk::Status(code, host.ConfigWhere(("/runtimes." + name + ".options").c_str()) +
                                   ": runtime handler \"" + name + "\": " + err.str());
    }
    p->handlers_.push_back(
        Handler{name, *rt, entry.value("cni_conf_dir", ""), entry.value("snapshotter", "")});
  }
  auto images = host.Lookup<berth_image_store_v1>(BERTH_IFACE_IMAGE_STORE_V1);
  if (!images.ok()) return images.status();
  // The snapshotters: the image store's default, and the runtime handlers' own, as the image
  // store resolved them (its status(), kinds.h), so that pods and images agree.
  sdk::StringSink images_status, images_err;
  images->table->status(images->instance, images_status.get(), images_err.get());
  const nlohmann::json is = nlohmann::json::parse(images_status.str(), nullptr, false);
  const std::string default_snapshotter =
      is.is_object() ? is.value("snapshotter", "") : std::string();
  auto snapshotter =
      host.Lookup<berth_snapshotter_v1>(BERTH_IFACE_SNAPSHOTTER_V1,
                                        default_snapshotter.empty() ? nullptr
                                                                    : default_snapshotter.c_str());
  if (!snapshotter.ok()) return snapshotter.status();
  std::map<std::string, std::string> handler_snapshotters;
  for (auto& [name, entry] : rj["handlers"].items()) {
    if (!entry.is_object() || !entry.contains("snapshotter")) continue;
    const nlohmann::json hs = is.is_object() && is.contains("handler_snapshotters")
                                  ? is["handler_snapshotters"]
                                  : nlohmann::json::object();
    if (!hs.is_object() || !hs.contains(name) || !hs[name].is_string()) {
      return sdk::FailedPrecondition(
          host.ConfigWhere(("/runtimes." + name + ".snapshotter").c_str()) +
          ": runtime handler \"" + name + "\" names snapshotter " +
          entry["snapshotter"].dump() + ", but image store " + images->plugin_id +
          " does not unpack per handler (its status names no \"handler_snapshotters\")");
    }
    handler_snapshotters[name] = hs[name].get<std::string>();
  }
  if (!BERTH_HAS_MEMBER(cgroups.table, berth_cgroup_driver_v1, remove)) {
    return sdk::FailedPrecondition("cgroup driver plugin " + cgroups.plugin_id +
                                   " predates ABI 1.1 (no cgroup paths or stats)");
  }

  RuntimeServiceOptions opts;
  opts.daemon_version = daemon.value("version", "0.0.0");
  opts.sandbox_image = kDefaultSandboxImage;
  if (p->config_.contains("sandbox_image")) {
    const auto& v = p->config_["sandbox_image"];
    if (!v.is_string() || v.get<std::string>().empty()) {
      return sdk::InvalidArgument(host.ConfigWhere("sandbox_image") +
                                  ": key \"sandbox_image\": expected an image reference, got " +
                                  v.dump());
    }
    opts.sandbox_image = v.get<std::string>();
  }
  // The streaming server (exec, attach and port-forward URLs; docs/streaming.md).
  if (p->config_.contains("stream_address")) {
    const auto& v = p->config_["stream_address"];
    in6_addr any;
    if (!v.is_string() || (::inet_pton(AF_INET, v.get<std::string>().c_str(), &any) != 1 &&
                           ::inet_pton(AF_INET6, v.get<std::string>().c_str(), &any) != 1)) {
      return sdk::InvalidArgument(host.ConfigWhere("stream_address") +
                                  ": key \"stream_address\": expected an IP address to bind the "
                                  "streaming server to (e.g. 127.0.0.1), got " + v.dump());
    }
    opts.stream_address = v.get<std::string>();
  }
  if (p->config_.contains("stream_port")) {
    const auto& v = p->config_["stream_port"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 65535) {
      return sdk::InvalidArgument(host.ConfigWhere("stream_port") +
                                  ": key \"stream_port\": expected a port number 0-65535 "
                                  "(0: any free port), got " + v.dump());
    }
    opts.stream_port = v.get<int>();
  }
  // TLS for the streaming server: both files or neither (absolute PEM paths).
  for (const char* key : {"stream_tls_cert_file", "stream_tls_key_file"}) {
    if (!p->config_.contains(key)) continue;
    const auto& v = p->config_[key];
    if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>()[0] != '/') {
      return sdk::InvalidArgument(host.ConfigWhere(key) + ": key \"" + key +
                                  "\": expected the absolute path of a PEM file, got " + v.dump());
    }
    (std::string(key) == "stream_tls_cert_file" ? opts.stream_tls_cert_file
                                                : opts.stream_tls_key_file) = v.get<std::string>();
  }
  if (opts.stream_tls_cert_file.empty() != opts.stream_tls_key_file.empty()) {
    const char* missing =
        opts.stream_tls_cert_file.empty() ? "stream_tls_cert_file" : "stream_tls_key_file";
    return sdk::InvalidArgument(std::string("io.berth.cri: TLS for the streaming server needs "
                                            "both stream_tls_cert_file and stream_tls_key_file; ") +
                                missing + " is missing");
  }
  // CDI spec directories (docs/security.md): absolute paths, later ones win.
  if (p->config_.contains("cdi_spec_dirs")) {
    const auto& v = p->config_["cdi_spec_dirs"];
    bool ok = v.is_array() && !v.empty();
    for (const auto& d : ok ? v : nlohmann::json::array()) {
      ok = ok && d.is_string() && !d.get<std::string>().empty() && d.get<std::string>()[0] == '/';
    }
    if (!ok) {
      return sdk::InvalidArgument(host.ConfigWhere("cdi_spec_dirs") +
                                  ": key \"cdi_spec_dirs\": expected a list of absolute "
                                  "directories (e.g. [/etc/cdi, /var/run/cdi]), got " + v.dump());
    }
    for (const auto& d : v) opts.cdi_spec_dirs.push_back(d.get<std::string>());
  }
  // Where each pod's shim runs (docs/cgroup-drivers.md): "pod" (default) a cgroup of its own
  // in the pod's cgroup_parent, "none" berthd's cgroup.
  if (p->config_.contains("shim_cgroup")) {
    const auto& v = p->config_["shim_cgroup"];
    if (!v.is_string() || (v != "pod" && v != "none")) {
      return sdk::InvalidArgument(host.ConfigWhere("shim_cgroup") +
                                  ": key \"shim_cgroup\": expected pod (each pod's shim in a "
                                  "cgroup of its own under the pod's cgroup_parent) or none "
                                  "(shims stay in berthd's cgroup), got " + v.dump());
    }
    opts.shim_in_pod_cgroup = v == "pod";
  }
  if (opts.shim_in_pod_cgroup && !BERTH_HAS_MEMBER(cgroups.table, berth_cgroup_driver_v1, enter)) {
    host.Warn("cgroup driver plugin " + cgroups.plugin_id +
              " predates ABI 1.2 (no enter): pod shims stay in berthd's cgroup");
  }
  opts.state_dir = host.StateDir();
  opts.default_handler = p->default_runtime_;
  for (const Handler& h : p->handlers_) {
    if (!BERTH_HAS_MEMBER(h.runtime.table, berth_runtime_v1, control)) {
      return sdk::FailedPrecondition("runtime plugin " + h.runtime.plugin_id + " of handler " +
                                     h.name + " predates ABI 1.1 (no tasks)");
    }
    opts.handlers[h.name] = h.runtime;
  }
  opts.cgroups = cgroups;
  if (auto net = host.Lookup<berth_network_v1>(BERTH_IFACE_NETWORK_V1); net.ok()) {
    opts.network = *net;
    if (!BERTH_HAS_MEMBER(net->table, berth_network_v1, gc)) {
      host.Warn("network plugin " + net->plugin_id +
                " cannot attach pods (ABI before 1.1): pods get loopback only");
    }
  }
  // Handlers with a CNI configuration directory of their own need a network plugin that
  // attaches with it: one whose status() lists the directory under "conf_dirs" (kinds.h).
  nlohmann::json network_status;
  for (const Handler& h : p->handlers_) {
    if (h.cni_conf_dir.empty()) continue;
    const std::string where =
        host.ConfigWhere(("/runtimes." + h.name + ".cni_conf_dir").c_str()) +
        ": runtime handler \"" + h.name + "\" sets cni_conf_dir " + h.cni_conf_dir;
    if (opts.network.table == nullptr ||
        !BERTH_HAS_MEMBER(opts.network.table, berth_network_v1, gc)) {
      return sdk::FailedPrecondition(where +
                                     ", but no network plugin that attaches pods is running");
    }
    if (network_status.is_null()) network_status = p->NetworkStatus();
    if (!network_status.contains("conf_dirs") ||
        !network_status["conf_dirs"].contains(h.cni_conf_dir)) {
      return sdk::FailedPrecondition(
          where + ", but network plugin " + opts.network.plugin_id +
          " does not attach with per-handler configuration directories (its status names no "
          "\"conf_dirs\" with it; io.berth.cni does)");
    }
    opts.handler_cni_conf_dirs[h.name] = h.cni_conf_dir;
    host.Info("runtime handler " + h.name + ": pod network from " + h.cni_conf_dir);
  }
  opts.snapshotter = *snapshotter;
  opts.snapshotters = host.All<berth_snapshotter_v1>(BERTH_IFACE_SNAPSHOTTER_V1);
  for (const auto& [name, id] : handler_snapshotters) {
    if (id != snapshotter->plugin_id) host.Info("runtime handler " + name + ": snapshotter " + id);
  }
  opts.handler_snapshotters = std::move(handler_snapshotters);
  opts.images = *images;
  p->sandbox_image_ = opts.sandbox_image;
  p->runtime_service_ = std::make_unique<RuntimeServiceImpl>(p.get(), host, std::move(opts));
  p->image_service_ = std::make_unique<ImageServiceImpl>(*images);
  p->image_service_->set_sandbox_image(p->sandbox_image_);
  p->berth_service_ = std::make_unique<BerthServiceImpl>(*images);
  *out = std::move(p);
  return sdk::Status::Ok();
}

const void* CriPlugin::GetInterface(std::string_view iface) {
  if (iface == BERTH_IFACE_SERVICE_V1) return sdk::ServiceTable<CriPlugin>();
  return nullptr;
}

sdk::Readiness CriPlugin::Status() {
  if (!server_) return sdk::Readiness::NotReady("NotServing", "the CRI server is not started");
  return sdk::Readiness::Ready();
}

sdk::Status CriPlugin::Start() {
  // Records first: the kubelet must never see a half-repaired node.
  absl::Status repaired = runtime_service_->Start();
  if (!repaired.ok()) {
    return sdk::Status(static_cast<int32_t>(repaired.code()),
                       "restoring pods and containers: " + std::string(repaired.message()));
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
  builder.RegisterService(runtime_service_.get());
  builder.RegisterService(image_service_.get());
  builder.RegisterService(berth_service_.get());
  // The kubelet sends large requests (ListContainers filters, image auth) and receives
  // large responses with many pods; match its 16 MiB limit.
  builder.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  builder.SetMaxSendMessageSize(16 * 1024 * 1024);
  // The socket is root-only: create it under a restrictive umask, then make sure.
  mode_t old = ::umask(0077);
  server_ = builder.BuildAndStart();
  ::umask(old);
  if (!server_) {
    return sdk::Status(BERTH_UNAVAILABLE, "cannot serve CRI on unix://" + socket_ +
                                              " (see the gRPC error above)");
  }
  if (::chmod(socket_.c_str(), 0600) != 0) {
    Stop();
    return sdk::Internal("cannot restrict permissions of " + socket_);
  }
  host_.Info("serving CRI v1 on unix://" + socket_);
  return sdk::Status::Ok();
}

void CriPlugin::Stop() {
  if (runtime_service_) runtime_service_->Stop();
  if (!server_) return;
  // Calls in flight are cancelled at once (their handlers still run to the end: a removal
  // or a pull is not cut in the middle); waiting longer would only wait for idle client
  // connections, which the kubelet keeps open.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

sdk::Readiness CriPlugin::RuntimeReadiness() {
  const Handler* def = nullptr;
  for (const Handler& h : handlers_) {
    if (h.name == default_runtime_) def = &h;
  }
  if (def == nullptr) {
    return sdk::Readiness::NotReady("NoDefaultRuntime",
                                    "no runtime handler is configured as default_runtime");
  }
  sdk::StringSink out, err;
  int32_t code = def->runtime.table->handler_status(def->runtime.instance, sdk::Str(def->name),
                                                    out.get(), err.get());
  if (code != BERTH_OK) {
    return sdk::Readiness::NotReady("RuntimeHandlerError",
                                    "runtime handler " + def->name + ": " + err.str());
  }
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  if (!j.value("ready", false)) {
    return sdk::Readiness::NotReady(j.value("reason", "RuntimeHandlerNotReady"),
                                    "runtime handler " + def->name + ": " + j.value("message", ""));
  }
  for (const auto& s : host_.All<berth_image_store_v1>(BERTH_IFACE_IMAGE_STORE_V1)) {
    if (auto r = sdk::QueryStatus(s); !r.ready) return r;
  }
  for (const auto& s : host_.All<berth_snapshotter_v1>(BERTH_IFACE_SNAPSHOTTER_V1)) {
    if (auto r = sdk::QueryStatus(s); !r.ready) return r;
  }
  for (const auto& s : host_.All<berth_cgroup_driver_v1>(BERTH_IFACE_CGROUP_DRIVER_V1)) {
    if (sdk::View(s.table->driver_name(s.instance)) != cgroup_driver_) continue;
    if (auto r = sdk::QueryStatus(s); !r.ready) return r;
  }
  return sdk::Readiness::Ready();
}

nlohmann::json CriPlugin::NetworkStatus() {
  auto nets = host_.All<berth_network_v1>(BERTH_IFACE_NETWORK_V1);
  if (nets.empty()) {
    return {{"ready", false},
            {"reason", "NetworkPluginNotReady"},
            {"message", "no network plugin is running"}};
  }
  sdk::StringSink out, err;
  int32_t code = nets.front().table->status(nets.front().instance, out.get(), err.get());
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  if (code != BERTH_OK || !j.is_object()) {
    return {{"ready", false},
            {"reason", "StatusFailed"},
            {"message", nets.front().plugin_id + ": " +
                            (code != BERTH_OK ? err.str() : "status() wrote no JSON object")}};
  }
  return j;
}

CriPlugin::NetworkConditions CriPlugin::NetworkReadiness() {
  const nlohmann::json st = NetworkStatus();
  auto readiness = [](const nlohmann::json& j, const char* ready_key) {
    if (j.is_object() && j.value(ready_key, false)) return sdk::Readiness::Ready();
    return sdk::Readiness::NotReady(j.is_object() ? j.value("reason", "NetworkPluginNotReady")
                                                  : "NetworkPluginNotReady",
                                    j.is_object() ? j.value("message", "") : "");
  };
  // The network of a directory; the plugin's own when `dir` is empty.
  auto of = [&](const std::string& dir) {
    if (dir.empty()) return readiness(st, "ready");
    const nlohmann::json dirs = st.value("conf_dirs", nlohmann::json::object());
    if (!dirs.is_object() || !dirs.contains(dir)) {
      return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                      "the network plugin does not report " + dir);
    }
    return readiness(dirs[dir], "network_ready");
  };
  NetworkConditions out;
  std::string default_dir;
  for (const Handler& h : handlers_) {
    if (h.name == default_runtime_) default_dir = h.cni_conf_dir;
  }
  out.network = of(default_dir);
  if (!default_dir.empty() && !out.network.ready) {
    out.network.message = "runtime handler " + default_runtime_ + " (the default): " +
                          out.network.message;
  }
  // The handlers whose pods use another directory than the default handler's.
  std::string problems;
  bool any = false;
  for (const Handler& h : handlers_) {
    if (h.cni_conf_dir == default_dir) continue;
    any = true;
    sdk::Readiness r = of(h.cni_conf_dir);
    if (r.ready) continue;
    problems += (problems.empty() ? "" : "; ") + ("runtime handler " + h.name + ": " + r.message);
  }
  if (any) {
    out.handler_networks = problems.empty()
                               ? sdk::Readiness::Ready()
                               : sdk::Readiness::NotReady("NetworkPluginNotReady", problems);
  }
  return out;
}

nlohmann::json CriPlugin::Info() {
  nlohmann::json handlers = nlohmann::json::array();
  for (const Handler& h : handlers_) {
    sdk::StringSink out, err;
    h.runtime.table->handler_status(h.runtime.instance, sdk::Str(h.name), out.get(), err.get());
    nlohmann::json st = nlohmann::json::parse(out.str(), nullptr, false);
    handlers.push_back({{"name", h.name},
                        {"plugin", h.runtime.plugin_id},
                        {"status", st.is_discarded() ? nlohmann::json(err.str()) : st}});
    if (!h.cni_conf_dir.empty()) handlers.back()["cni_conf_dir"] = h.cni_conf_dir;
    if (!h.snapshotter.empty()) handlers.back()["snapshotter"] = h.snapshotter;
  }
  nlohmann::json daemon = nlohmann::json::parse(host_.Section("daemon").value(), nullptr, false);
  return {{"plugins", nlohmann::json::parse(host_.ListPlugins(), nullptr, false)},
          {"config",
           {{"daemon", daemon},
            {"cgroup_driver", cgroup_driver_},
            {"default_runtime", default_runtime_},
            {"sandbox_image", sandbox_image_},
            {"runtime_handlers", handlers}}}};
}

}  // namespace berth::cri
