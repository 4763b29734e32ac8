// SPDX-License-Identifier: Apache-2.0
// berthctl: the operator's client for berthd, over the same CRI socket the kubelet uses.
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "berth/unique_fd.hpp"
#include "berth/v1/berth.grpc.pb.h"
#include "cri/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "plugins/cri/streaming/stream_client.h"

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
  exec [-i] [-t] CONTAINER -- CMD...
                 run a command in a running container; berthctl exits with its exit code
  attach [-i] [-t] CONTAINER
                 attach to a running container's main process (its output, and -i: its stdin)
  port-forward POD [LOCAL:]REMOTE...
                 forward 127.0.0.1:LOCAL (REMOTE when left out, any free port when 0 or
                 empty) to port REMOTE of a pod, until interrupted

options:
  --socket PATH   berthd's socket (default /run/berth/berth.sock, or $BERTH_SOCKET)
  -o FORMAT       text (default) or json, for scripts
  --timeout S     give up after S seconds (default 10; pull: no limit unless given)
  --creds U:P     registry credentials for pull
  -i, --stdin     exec, attach: send berthctl's stdin to the process
  -t, --tty       exec, attach: a terminal for the process (stdout and stderr merged); with
                  -i on a terminal, the local terminal is put in raw mode and its size follows
)";

struct Options {
  std::string socket = "/run/berth/berth.sock";
  bool json = false;
  int timeout_s = 10;
  bool timeout_given = false;
  std::string creds;
  bool stdin = false;  // exec, attach: -i
  bool tty = false;    // exec, attach: -t
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

// ---- terminals and signals, for exec, attach and port-forward ----

// The signals the streaming commands handle themselves. They are blocked before any thread
// exists (gRPC starts its own), so that only SignalWatcher's signalfd receives them.
constexpr int kStreamSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};

void BlockStreamSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kStreamSignals) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A closed stdout (berthctl exec ... | head -1) is not a reason to die mid-session.
  signal(SIGPIPE, SIG_IGN);
}

// Runs `on_signal` on a thread of its own for each blocked stream signal that arrives.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : kStreamSignals) sigaddset(&set, sig);
    signals_.Reset(signalfd(-1, &set, SFD_CLOEXEC));
    stop_.Reset(eventfd(0, EFD_CLOEXEC));
    if (!signals_.valid() || !stop_.valid()) {
      std::perror("berthctl: signalfd");
      return;
    }
    thread_ = std::thread([this] {
      for (;;) {
        pollfd p[2] = {{signals_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
          if (errno == EINTR) continue;
          return;
        }
        if (p[1].revents != 0) return;
        signalfd_siginfo info;
        if (read(signals_.get(), &info, sizeof(info)) == sizeof(info)) {
          on_signal_(static_cast<int>(info.ssi_signo));
        }
      }
    });
  }
  ~SignalWatcher() {
    if (!thread_.joinable()) return;
    const uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::function<void(int)> on_signal_;
  sdk::UniqueFd signals_, stop_;
  std::thread thread_;
};

// The local terminal in raw mode for as long as it lives (keys go to the remote terminal as
// typed: Ctrl-C, Ctrl-D and Ctrl-Z included), restored afterwards.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    cfmakeraw(&raw);
    active_ = tcsetattr(fd_, TCSADRAIN, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// The size of the local terminal (stdout's, else stdin's), as kubectl reads it.
std::optional<cri::streaming::TerminalSize> LocalTerminalSize() {
  for (int fd : {STDOUT_FILENO, STDIN_FILENO}) {
    winsize ws{};
    if (isatty(fd) == 1 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
      return cri::streaming::TerminalSize{ws.ws_col, ws.ws_row};
    }
  }
  return std::nullopt;
}

// "8080:80", "80" (the same port locally) or ":80" (any free local port).
std::optional<cri::streaming::PortForwardSpec> ParsePortPair(const std::string& text) {
  cri::streaming::PortForwardSpec spec;
  const size_t colon = text.find(':');
  const std::string local = colon == std::string::npos ? text : text.substr(0, colon);
  const std::string remote = colon == std::string::npos ? text : text.substr(colon + 1);
  if (!absl::SimpleAtoi(remote, &spec.remote_port) || spec.remote_port < 1 ||
      spec.remote_port > 65535) {
    return std::nullopt;
  }
  if (local.empty()) {
    spec.local_port = 0;
  } else if (!absl::SimpleAtoi(local, &spec.local_port) || spec.local_port < 0 ||
             spec.local_port > 65535) {
    return std::nullopt;
  }
  return spec;
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

  // exec: the CRI Exec RPC, then the session on the URL it returns.
  int Exec() {
    if (opts_.args.size() < 2) {
      std::fprintf(stderr,
                   "berthctl: exec takes a container and a command: berthctl exec [-i] "
                   "[-t] CONTAINER -- CMD...\n");
      return 2;
    }
    runtime::v1::ExecRequest req;
    req.set_container_id(opts_.args[0]);
    for (size_t i = 1; i < opts_.args.size(); ++i) req.add_cmd(opts_.args[i]);
    req.set_stdin(opts_.stdin);
    req.set_tty(opts_.tty);
    req.set_stdout(true);
    req.set_stderr(!opts_.tty);  // a terminal merges them (the CRI refuses both)
    runtime::v1::ExecResponse resp;
    if (!Report("Exec", runtime_->Exec(Ctx().get(), req, &resp))) return 1;
    cri::streaming::ExecClient exec(resp.url(), LocalIo(), StreamOptions());
    return RunRemoteCommand(exec, "exec in " + opts_.args[0]);
  }

  int Attach() {
    if (opts_.args.size() != 1) {
      std::fprintf(stderr,
                   "berthctl: attach takes one container: berthctl attach [-i] [-t] "
                   "CONTAINER\n");
      return 2;
    }
    runtime::v1::AttachRequest req;
    req.set_container_id(opts_.args[0]);
    req.set_stdin(opts_.stdin);
    req.set_tty(opts_.tty);
    req.set_stdout(true);
    req.set_stderr(!opts_.tty);
    runtime::v1::AttachResponse resp;
    if (!Report("Attach", runtime_->Attach(Ctx().get(), req, &resp))) return 1;
    cri::streaming::AttachClient attach(resp.url(), LocalIo(), StreamOptions());
    return RunRemoteCommand(attach, "attach to " + opts_.args[0]);
  }

  int PortForward() {
    if (opts_.args.size() < 2) {
      std::fprintf(stderr,
                   "berthctl: port-forward takes a pod and port pairs: berthctl "
                   "port-forward POD [LOCAL:]REMOTE...\n");
      return 2;
    }
    std::vector<cri::streaming::PortForwardSpec> ports;
    runtime::v1::PortForwardRequest req;
    req.set_pod_sandbox_id(opts_.args[0]);
    for (size_t i = 1; i < opts_.args.size(); ++i) {
      std::optional<cri::streaming::PortForwardSpec> spec = ParsePortPair(opts_.args[i]);
      if (!spec.has_value()) {
        std::fprintf(stderr,
                     "berthctl: bad port pair \"%s\": use LOCAL:REMOTE, REMOTE or "
                     ":REMOTE (ports 1-65535)\n",
                     opts_.args[i].c_str());
        return 2;
      }
      ports.push_back(*spec);
      req.add_port(spec->remote_port);
    }
    runtime::v1::PortForwardResponse resp;
    if (!Report("PortForward", runtime_->PortForward(Ctx().get(), req, &resp))) return 1;
    cri::streaming::PortForwardCallbacks callbacks;
    callbacks.on_connection = [](const cri::streaming::PortForwardSpec& p) {
      std::printf("Handling connection for %d\n", p.local_port);
      std::fflush(stdout);
    };
    callbacks.on_error = [](const absl::Status& s) {
      std::fprintf(stderr, "berthctl: port-forward: %s\n", std::string(s.message()).c_str());
    };
    absl::StatusOr<std::unique_ptr<cri::streaming::PortForwardClient>> pf =
        cri::streaming::PortForwardClient::Start(resp.url(), ports, callbacks, StreamOptions());
    if (!pf.ok()) {
      std::fprintf(stderr, "berthctl: port-forward to %s: %s\n", opts_.args[0].c_str(),
                   std::string(pf.status().message()).c_str());
      return 1;
    }
    for (const cri::streaming::PortForwardSpec& p : (*pf)->ports()) {
      std::printf("Forwarding from 127.0.0.1:%d -> %d\n", p.local_port, p.remote_port);
    }
    std::fflush(stdout);
    cri::streaming::PortForwardClient* raw = pf->get();
    SignalWatcher signals([raw](int sig) {
      if (sig != SIGWINCH) raw->Stop();  // SIGINT, SIGTERM, SIGHUP: done
    });
    absl::Status s = (*pf)->Wait();
    (*pf)->Stop();
    if (!s.ok()) {
      std::fprintf(stderr, "berthctl: port-forward to %s: %s\n", opts_.args[0].c_str(),
                   std::string(s.message()).c_str());
      return 1;
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
  cri::streaming::RemoteCommandIo LocalIo() {
    cri::streaming::RemoteCommandIo io;
    io.stdin_fd = opts_.stdin ? STDIN_FILENO : -1;
    io.stdout_fd = STDOUT_FILENO;
    io.stderr_fd = opts_.tty ? -1 : STDERR_FILENO;
    io.tty = opts_.tty;
    if (opts_.tty) io.sizes = &sizes_;
    return io;
  }

  cri::streaming::StreamClientOptions StreamOptions() {
    cri::streaming::StreamClientOptions o;
    o.user_agent = "berthctl";
    return o;
  }

  // Runs an exec or attach session to its end: the remote exit code, 1 (after saying why)
  // when there is none, 128+N when signal N ended it here.
  int RunRemoteCommand(cri::streaming::RemoteCommandClient& client, const std::string& what) {
    std::optional<RawTerminal> raw;
    if (opts_.tty) {
      // Raw only when the keyboard is relayed: without -i, Ctrl-C must still stop berthctl.
      if (opts_.stdin && isatty(STDIN_FILENO) == 1) raw.emplace(STDIN_FILENO);
      if (std::optional<cri::streaming::TerminalSize> size = LocalTerminalSize()) {
        sizes_.Push(*size);
      }
    }
    std::atomic<int> stopped_by{0};
    std::optional<absl::StatusOr<int>> result;
    {
      SignalWatcher signals([&](int sig) {
        if (sig == SIGWINCH) {
          if (std::optional<cri::streaming::TerminalSize> size = LocalTerminalSize()) {
            sizes_.Push(*size);
          }
          return;
        }
        stopped_by = sig;
        client.Cancel();  // the remote process goes on, as with kubectl
      });
      result = client.Run();
    }
    raw.reset();
    if (result->ok()) return **result;
    if (stopped_by != 0) return 128 + stopped_by;
    std::fprintf(stderr, "berthctl: %s: %s\n", what.c_str(),
                 std::string(result->status().message()).c_str());
    return 1;
  }

  cri::streaming::TerminalSizeQueue sizes_;
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
    // exec: everything after the container is the command, options included (as docker and
    // crictl read it); a "--" there is only a separator.
    if (opts.command == "exec" && !opts.args.empty()) {
      if (a == "--") ++i;
      opts.args.insert(opts.args.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (a == "--") {  // the end of the options: the rest is positional
      for (++i; i < args.size(); ++i) {
        if (opts.command.empty()) {
          opts.command = args[i];
        } else {
          opts.args.push_back(args[i]);
        }
      }
      break;
    }
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
    } else if (a == "-i" || a == "--stdin") {
      opts.stdin = true;
    } else if (a == "-t" || a == "--tty") {
      opts.tty = true;
    } else if (a == "-it" || a == "-ti") {
      opts.stdin = opts.tty = true;
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
  const bool streaming =
      opts.command == "exec" || opts.command == "attach" || opts.command == "port-forward";
  if ((opts.stdin || opts.tty) && opts.command != "exec" && opts.command != "attach") {
    return Usage("-i and -t are options of exec and attach");
  }
  // Before the gRPC channel starts its threads: they must not take these signals.
  if (streaming) berth::ctl::BlockStreamSignals();
  berth::ctl::Client client(opts);
  if (opts.command == "version") return client.Version();
  if (opts.command == "info") return client.Info();
  if (opts.command == "plugins") return client.Plugins();
  if (opts.command == "pull") return client.Pull();
  if (opts.command == "images") return client.Images();
  if (opts.command == "inspecti") return client.Inspecti();
  if (opts.command == "rmi") return client.Rmi();
  if (opts.command == "imagefsinfo") return client.ImageFsInfo();
  if (opts.command == "exec") return client.Exec();
  if (opts.command == "attach") return client.Attach();
  if (opts.command == "port-forward") return client.PortForward();
  return Usage("unknown command " + opts.command);
}
