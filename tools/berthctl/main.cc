// SPDX-License-Identifier: Apache-2.0
// berthctl: the operator's client for berthd, over the same CRI socket the kubelet uses.
#include <grpcpp/grpcpp.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "berth/v1/berth.grpc.pb.h"
#include "cri/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace berth::ctl {
namespace {

constexpr char kUsage[] = R"(usage: berthctl [--socket PATH] [-o text|json] [--timeout SECONDS] COMMAND

commands:
  version        the runtime's name and versions (CRI Version)
  info           runtime and network readiness, handlers, cgroup driver (CRI Status, RuntimeConfig)
  plugins        the plugins of the running berthd and their state
  pull IMAGE     pull an image, with progress (--creds USER:PASSWORD for a registry login)
  images [REF]   list images (optionally those REF names)
  inspecti REF   an image's status and configuration, as JSON
  rmi REF...     remove images (by tag, digest or id)
  imagefsinfo    bytes and inodes used by the image filesystem

options:
  --socket PATH   berthd's socket (default /run/berth/berth.sock, or $BERTH_SOCKET)
  -o FORMAT       text (default) or json, for scripts
  --timeout S     give up after S seconds (default 10; pull: no limit unless given)
  --creds U:P     registry credentials for pull
)";

struct Options {
  std::string socket = "/run/berth/berth.sock";
  bool json = false;
  int timeout_s = 10;
  bool timeout_given = false;
  std::string creds;
  std::string command;
  std::vector<std::string> args;
};

std::string HumanBytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

// "docker.io/library/busybox:1.36" -> {"docker.io/library/busybox", "1.36"}
std::pair<std::string, std::string> SplitTag(const std::string& tag) {
  size_t colon = tag.rfind(':');
  size_t slash = tag.rfind('/');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) {
    return {tag, "<none>"};
  }
  return {tag.substr(0, colon), tag.substr(colon + 1)};
}

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
    images_ = runtime::v1::ImageService::NewStub(channel_);
    berth_ = berth::v1::Berth::NewStub(channel_);
  }

  bool Report(const char* what, const grpc::Status& s) {
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

  std::unique_ptr<grpc::ClientContext> Ctx(bool long_running = false) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!long_running || opts_.timeout_given) {
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(opts_.timeout_s));
    }
    return ctx;
  }

  int Pull() {
    if (opts_.args.size() != 1) {
      std::fprintf(stderr, "berthctl: pull takes one image reference\n");
      return 2;
    }
    berth::v1::PullImageWithProgressRequest req;
    req.set_image(opts_.args[0]);
    if (!opts_.creds.empty()) {
      size_t colon = opts_.creds.find(':');
      req.set_username(opts_.creds.substr(0, colon));
      if (colon != std::string::npos) req.set_password(opts_.creds.substr(colon + 1));
    }
    auto ctx = Ctx(true);
    auto reader = berth_->PullImageWithProgress(ctx.get(), req);
    bool tty = isatty(STDOUT_FILENO) == 1;
    auto start = std::chrono::steady_clock::now();
    auto last_line = start - std::chrono::seconds(10);
    berth::v1::PullProgress p;
    std::string image_ref;
    bool drew = false;
    while (reader->Read(&p)) {
      if (!p.image_ref().empty()) {
        image_ref = p.image_ref();
        break;
      }
      auto now = std::chrono::steady_clock::now();
      double secs = std::chrono::duration<double>(now - start).count();
      double speed = secs > 0 ? p.bytes_done() / secs : 0;
      if (tty) {
        int width = 30;
        double frac = p.bytes_total() > 0 ? double(p.bytes_done()) / p.bytes_total() : 0;
        int fill = std::min(width, static_cast<int>(frac * width));
        std::string bar(fill, '=');
        if (fill < width) bar += '>' + std::string(width - fill - 1, ' ');
        std::printf("\r[%s] %d/%d layers  %s / %s  %s/s   ", bar.c_str(), p.layers_done(),
                    p.layers_total(), HumanBytes(p.bytes_done()).c_str(),
                    HumanBytes(p.bytes_total()).c_str(), HumanBytes(speed).c_str());
        std::fflush(stdout);
        drew = true;
      } else if (now - last_line >= std::chrono::seconds(1)) {
        std::printf("pulling %s: %d/%d layers, %s of %s, %s/s\n", req.image().c_str(),
                    p.layers_done(), p.layers_total(), HumanBytes(p.bytes_done()).c_str(),
                    HumanBytes(p.bytes_total()).c_str(), HumanBytes(speed).c_str());
        last_line = now;
      }
    }
    grpc::Status s = reader->Finish();
    if (drew) std::printf("\n");
    if (!Report("pull", s)) return 1;
    if (opts_.json) {
      std::printf("%s\n", nlohmann::json({{"image_ref", image_ref}}).dump(2).c_str());
    } else {
      std::printf("Image is up to date for %s\n", image_ref.c_str());
    }
    return 0;
  }

  int Images() {
    runtime::v1::ListImagesRequest req;
    if (!opts_.args.empty()) req.mutable_filter()->mutable_image()->set_image(opts_.args[0]);
    runtime::v1::ListImagesResponse resp;
    if (!Report("ListImages", images_->ListImages(Ctx().get(), req, &resp))) return 1;
    if (opts_.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& img : resp.images()) out.push_back(ImageJson(img));
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    std::printf("%-50s %-20s %-15s %s\n", "IMAGE", "TAG", "IMAGE ID", "SIZE");
    for (const auto& img : resp.images()) {
      std::string id = img.id().substr(img.id().find(':') + 1).substr(0, 13);
      std::string size = HumanBytes(static_cast<double>(img.size()));
      if (img.repo_tags().empty()) {
        std::string name = img.repo_digests().empty()
                               ? "<none>"
                               : img.repo_digests(0).substr(0, img.repo_digests(0).find('@'));
        std::printf("%-50s %-20s %-15s %s\n", name.c_str(), "<none>", id.c_str(), size.c_str());
      }
      for (const auto& tag : img.repo_tags()) {
        auto [repo, t] = SplitTag(tag);
        std::printf("%-50s %-20s %-15s %s\n", repo.c_str(), t.c_str(), id.c_str(), size.c_str());
      }
    }
    return 0;
  }

  static nlohmann::json ImageJson(const runtime::v1::Image& img) {
    nlohmann::json j = {{"id", img.id()},
                        {"repo_tags", nlohmann::json::array()},
                        {"repo_digests", nlohmann::json::array()},
                        {"size", img.size()},
                        {"username", img.username()},
                        {"pinned", img.pinned()}};
    for (const auto& t : img.repo_tags()) j["repo_tags"].push_back(t);
    for (const auto& d : img.repo_digests()) j["repo_digests"].push_back(d);
    if (img.has_uid()) j["uid"] = img.uid().value();
    return j;
  }

  int Inspecti() {
    if (opts_.args.size() != 1) {
      std::fprintf(stderr, "berthctl: inspecti takes one image reference\n");
      return 2;
    }
    runtime::v1::ImageStatusRequest req;
    req.mutable_image()->set_image(opts_.args[0]);
    req.set_verbose(true);
    runtime::v1::ImageStatusResponse resp;
    if (!Report("ImageStatus", images_->ImageStatus(Ctx().get(), req, &resp))) return 1;
    if (!resp.has_image()) {
      std::fprintf(stderr, "berthctl: no such image: %s\n", opts_.args[0].c_str());
      return 1;
    }
    nlohmann::json out = {{"status", ImageJson(resp.image())}};
    for (const auto& [k, v] : resp.info()) {
      auto parsed = nlohmann::json::parse(v, nullptr, false);
      out["info"][k] = parsed.is_discarded() ? nlohmann::json(v) : parsed;
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }

  int Rmi() {
    if (opts_.args.empty()) {
      std::fprintf(stderr, "berthctl: rmi takes one or more image references\n");
      return 2;
    }
    int rc = 0;
    for (const std::string& ref : opts_.args) {
      // Say whether it was there: RemoveImage itself is idempotent.
      runtime::v1::ImageStatusRequest sreq;
      sreq.mutable_image()->set_image(ref);
      runtime::v1::ImageStatusResponse sresp;
      if (!Report("ImageStatus", images_->ImageStatus(Ctx().get(), sreq, &sresp))) return 1;
      if (!sresp.has_image()) {
        std::fprintf(stderr, "berthctl: no such image: %s\n", ref.c_str());
        rc = 1;
        continue;
      }
      runtime::v1::RemoveImageRequest req;
      req.mutable_image()->set_image(ref);
      runtime::v1::RemoveImageResponse resp;
      if (!Report("RemoveImage", images_->RemoveImage(Ctx().get(), req, &resp))) return 1;
      std::printf("Deleted: %s\n", ref.c_str());
    }
    return rc;
  }

  int ImageFsInfo() {
    runtime::v1::ImageFsInfoResponse resp;
    if (!Report("ImageFsInfo", images_->ImageFsInfo(Ctx().get(), {}, &resp))) return 1;
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : resp.image_filesystems()) {
      out.push_back({{"mountpoint", f.fs_id().mountpoint()},
                     {"used_bytes", f.used_bytes().value()},
                     {"inodes_used", f.inodes_used().value()}});
    }
    if (opts_.json) {
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    for (const auto& f : out) {
      std::printf("mountpoint: %s\nused: %s (%llu bytes)\ninodes used: %llu\n",
                  f["mountpoint"].get<std::string>().c_str(),
                  HumanBytes(f["used_bytes"].get<double>()).c_str(),
                  static_cast<unsigned long long>(f["used_bytes"].get<uint64_t>()),
                  static_cast<unsigned long long>(f["inodes_used"].get<uint64_t>()));
    }
    return 0;
  }

  // Returns false (after printing why) when the call failed.
  template <typename Req, typename Resp, typename Fn>
  bool Call(const char* what, Fn fn, const Req& req, Resp* resp) {
    return Report(what, (runtime_.get()->*fn)(Ctx().get(), req, resp));
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
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
  std::unique_ptr<berth::v1::Berth::Stub> berth_;
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
      opts.timeout_given = true;
    } else if (a == "--creds") {
      if (!value(&opts.creds)) return Usage("--creds needs USER:PASSWORD");
    } else if (a == "-h" || a == "--help") {
      std::printf("%s", berth::ctl::kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage("unknown option " + a);
    } else if (opts.command.empty()) {
      opts.command = a;
    } else {
      opts.args.push_back(a);
    }
  }
  if (opts.command.empty()) return Usage("no command given");
  for (const char* no_args : {"version", "info", "plugins", "imagefsinfo"}) {
    if (opts.command == no_args && !opts.args.empty()) {
      return Usage(opts.command + " takes no arguments (got " + opts.args[0] + ")");
    }
  }
  berth::ctl::Client client(opts);
  if (opts.command == "version") return client.Version();
  if (opts.command == "info") return client.Info();
  if (opts.command == "plugins") return client.Plugins();
  if (opts.command == "pull") return client.Pull();
  if (opts.command == "images") return client.Images();
  if (opts.command == "inspecti") return client.Inspecti();
  if (opts.command == "rmi") return client.Rmi();
  if (opts.command == "imagefsinfo") return client.ImageFsInfo();
  return Usage("unknown command " + opts.command);
}
