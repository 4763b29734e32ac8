// SPDX-License-Identifier: Apache-2.0
// berthctl: the operator's client for berthd, over the same CRI socket the kubelet uses.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cri/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace berth::ctl {
namespace {

constexpr char kUsage[] = R"(usage: berthctl [--socket PATH] [-o text|json] [--timeout SECONDS] COMMAND

commands:
  version   the runtime's name and versions (CRI Version)
  info      runtime and network readiness, handlers, cgroup driver (CRI Status, RuntimeConfig)
  plugins   the plugins of the running berthd and their state

options:
  --socket PATH   berthd's socket (default /run/berth/berth.sock, or $BERTH_SOCKET)
  -o FORMAT       text (default) or json, for scripts
  --timeout S     give up after S seconds (default 10)
)";

struct Options {
  std::string socket = "/run/berth/berth.sock";
  bool json = false;
  int timeout_s = 10;
  std::string command;
};

int Usage(const std::string& error) {
  std::fprintf(stderr, "berthctl: %s\n\n%s", error.c_str(), kUsage);
  return 2;
}

// The CRI messages are compiled for the lite runtime (no reflection): JSON by hand, with
// the proto field names.
nlohmann::json ToJson(const runtime::v1::VersionResponse& v) {
  return {{"version", v.version()},
          {"runtime_name", v.runtime_name()},
          {"runtime_version", v.runtime_version()},
          {"runtime_api_version", v.runtime_api_version()}};
}

nlohmann::json ToJson(const runtime::v1::StatusResponse& s) {
  nlohmann::json conditions = nlohmann::json::array();
  for (const auto& c : s.status().conditions()) {
    conditions.push_back({{"type", c.type()},
                          {"status", c.status()},
                          {"reason", c.reason()},
                          {"message", c.message()}});
  }
  nlohmann::json handlers = nlohmann::json::array();
  for (const auto& h : s.runtime_handlers()) {
    handlers.push_back({{"name", h.name()},
                        {"features",
                         {{"recursive_read_only_mounts", h.features().recursive_read_only_mounts()},
                          {"user_namespaces", h.features().user_namespaces()}}}});
  }
  nlohmann::json info = nlohmann::json::object();
  for (const auto& [k, v] : s.info()) {
    // The info map holds JSON documents as strings: show them as JSON.
    auto parsed = nlohmann::json::parse(v, nullptr, false);
    info[k] = parsed.is_discarded() ? nlohmann::json(v) : parsed;
  }
  return {{"status", {{"conditions", conditions}}},
          {"runtime_handlers", handlers},
          {"features",
           {{"supplemental_groups_policy", s.features().supplemental_groups_policy()},
            {"user_namespaces_host_network", s.features().user_namespaces_host_network()}}},
          {"info", info}};
}

class Client {
 public:
  explicit Client(const Options& opts) : opts_(opts) {
    channel_ = grpc::CreateChannel("unix://" + opts.socket, grpc::InsecureChannelCredentials());
    runtime_ = runtime::v1::RuntimeService::NewStub(channel_);
  }

  // Returns false (after printing why) when the call failed.
  template <typename Req, typename Resp, typename Fn>
  bool Call(const char* what, Fn fn, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(opts_.timeout_s));
    grpc::Status s = (runtime_.get()->*fn)(&ctx, req, resp);
    if (s.ok()) return true;
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      std::fprintf(stderr, "berthctl: cannot reach berthd at unix://%s: %s (is berthd running? "
                   "see --socket)\n", opts_.socket.c_str(), s.error_message().c_str());
    } else {
      std::fprintf(stderr, "berthctl: %s failed: %s (code %d)\n", what,
                   s.error_message().c_str(), static_cast<int>(s.error_code()));
    }
    return false;
  }

  int Version() {
    runtime::v1::VersionResponse resp;
    if (!Call("Version", &runtime::v1::RuntimeService::Stub::Version,
              runtime::v1::VersionRequest(), &resp)) {
      return 1;
    }
    if (opts_.json) {
      std::printf("%s\n", ToJson(resp).dump(2).c_str());
    } else {
      std::printf("Version:            %s\nRuntimeName:        %s\nRuntimeVersion:     %s\n"
                  "RuntimeApiVersion:  %s\n",
                  resp.version().c_str(), resp.runtime_name().c_str(),
                  resp.runtime_version().c_str(), resp.runtime_api_version().c_str());
    }
    return 0;
  }

  int Info() {
    runtime::v1::StatusRequest req;
    req.set_verbose(true);
    runtime::v1::StatusResponse status;
    if (!Call("Status", &runtime::v1::RuntimeService::Stub::Status, req, &status)) return 1;
    runtime::v1::RuntimeConfigResponse config;
    if (!Call("RuntimeConfig", &runtime::v1::RuntimeService::Stub::RuntimeConfig,
              runtime::v1::RuntimeConfigRequest(), &config)) {
      return 1;
    }
    std::string driver = config.linux().cgroup_driver() == runtime::v1::CgroupDriver::SYSTEMD
                             ? "systemd"
                             : "cgroupfs";
    if (opts_.json) {
      nlohmann::json j = ToJson(status);
      j["cgroup_driver"] = driver;
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    for (const auto& c : status.status().conditions()) {
      std::printf("%-14s %-5s %s%s%s\n", c.type().c_str(), c.status() ? "true" : "false",
                  c.reason().c_str(), c.message().empty() ? "" : ": ", c.message().c_str());
    }
    std::printf("cgroup driver: %s\n", driver.c_str());
    std::string handlers;
    for (const auto& h : status.runtime_handlers()) {
      handlers += (handlers.empty() ? "" : ", ") + h.name();
    }
    std::printf("runtime handlers: %s\n", handlers.empty() ? "none" : handlers.c_str());
    auto it = status.info().find("config");
    if (it != status.info().end()) {
      auto cfg = nlohmann::json::parse(it->second, nullptr, false);
      if (cfg.is_object()) {
        std::printf("default runtime: %s\n", cfg.value("default_runtime", "").c_str());
        if (cfg.contains("daemon")) {
          const auto& d = cfg["daemon"];
          std::printf("root: %s\nstate: %s\nconfig: %s\nversion: %s\n",
                      d.value("root", "").c_str(), d.value("state", "").c_str(),
                      d.value("config_file", "").c_str(), d.value("version", "").c_str());
        }
      }
    }
    return 0;
  }

  int Plugins() {
    runtime::v1::StatusRequest req;
    req.set_verbose(true);
    runtime::v1::StatusResponse status;
    if (!Call("Status", &runtime::v1::RuntimeService::Stub::Status, req, &status)) return 1;
    auto it = status.info().find("plugins");
    if (it == status.info().end()) {
      std::fprintf(stderr, "berthctl: berthd did not report its plugins\n");
      return 1;
    }
    auto plugins = nlohmann::json::parse(it->second, nullptr, false);
    if (!plugins.is_array()) {
      std::fprintf(stderr, "berthctl: berthd sent an unreadable plugin list\n");
      return 1;
    }
    if (opts_.json) {
      std::printf("%s\n", plugins.dump(2).c_str());
      return 0;
    }
    std::printf("%-30s %-14s %-8s %-4s %-9s %s\n", "ID", "KIND", "VERSION", "ABI", "STATE",
                "REASON");
    for (const auto& p : plugins) {
      std::printf("%-30s %-14s %-8s %-4s %-9s %s\n", p.value("id", "-").c_str(),
                  p.value("kind", "-").c_str(), p.value("version", "-").c_str(),
                  p.value("abi", "-").c_str(), p.value("state", "-").c_str(),
                  p.value("reason", "").c_str());
    }
    return 0;
  }

 private:
  Options opts_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
};

}  // namespace
}  // namespace berth::ctl

int main(int argc, char** argv) {
  using berth::ctl::Usage;
  berth::ctl::Options opts;
  if (const char* env = std::getenv("BERTH_SOCKET"); env != nullptr && *env != '\0') {
    opts.socket = env;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--socket") {
      if (!value(&opts.socket)) return Usage("--socket needs a path");
    } else if (a.rfind("--socket=", 0) == 0) {
      opts.socket = a.substr(9);
    } else if (a == "-o" || a == "--output") {
      if (!value(&v) || (v != "json" && v != "text")) return Usage("-o takes text or json");
      opts.json = v == "json";
    } else if (a == "--timeout") {
      if (!value(&v)) return Usage("--timeout needs seconds");
      try {
        opts.timeout_s = std::stoi(v);
      } catch (...) {
        return Usage("--timeout needs a whole number of seconds");
      }
      if (opts.timeout_s <= 0) return Usage("--timeout must be positive");
    } else if (a == "-h" || a == "--help") {
      std::printf("%s", berth::ctl::kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage("unknown option " + a);
    } else if (opts.command.empty()) {
      opts.command = a;
    } else {
      return Usage("unexpected argument " + a);
    }
  }
  if (opts.command.empty()) return Usage("no command given");
  berth::ctl::Client client(opts);
  if (opts.command == "version") return client.Version();
  if (opts.command == "info") return client.Info();
  if (opts.command == "plugins") return client.Plugins();
  return Usage("unknown command " + opts.command);
}
