// SPDX-License-Identifier: Apache-2.0
// shim-client: drives one containerd shim v2 runtime through the berth SDK's shim client
// (berth/ttrpc/shim.h), the way a runtime plugin does before it creates a container:
//
//   1. reads the shim's log FIFO (<bundle>/log) and serves the events socket the shim
//      publishes to (TTRPC_ADDRESS), so that the shim neither blocks nor retries;
//   2. runs the shim binary's `start` command in the bundle (berth::ttrpc::StartShim), which
//      leaves the shim daemon running and prints its ttrpc address;
//   3. connects a berth::ttrpc::TaskClient and calls Task.Connect (printing the shim's pid)
//      and Task.Shutdown, then waits for the daemon to exit;
//   4. runs the shim binary's `delete` command (berth::ttrpc::DeleteShim), as for a shim
//      that is gone, which cleans up after it.
//
// usage: shim-client SHIM_BINARY BUNDLE_DIR
//   SHIM_BINARY  absolute path of a shim v2 binary (/usr/bin/containerd-shim-runc-v2)
//   BUNDLE_DIR   an OCI bundle (a directory with a config.json); its last path component is
//                the container id, as containerd names bundles
//
// Prints "shim address: <address>", "shim pid: <pid>" and "shim delete: exit status <n>" on
// stdout, the shim's log on stderr; exits 0 on success, 1 with "shim-client: <error>" on
// stderr otherwise, 2 on a usage error. Needs root for containerd-shim-runc-v2 (it puts its
// socket in /run/containerd/s).
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/ttrpc/shim.h"
#include "shim/task/v2/shim.pb.h"

namespace {

namespace fs = std::filesystem;
namespace task = ::containerd::task::v2;

constexpr char kNamespace[] = "shim-client";

int Fail(const absl::Status& status) {
  std::cerr << "shim-client: " << status << "\n";
  return 1;
}

// A private directory for the events socket: unix socket paths are short (108 bytes), so it
// is made under /tmp rather than next to the bundle.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/shim-client.XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The shim daemon is not our child (`start` detaches it), so it is polled: gone, or a zombie
// that its new parent has not reaped yet.
bool Alive(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const std::size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'Z';
}

int Run(const std::string& shim, const std::string& bundle_arg) {
  std::error_code ec;
  fs::path bundle = fs::absolute(bundle_arg, ec).lexically_normal();
  if (ec) return Fail(absl::InvalidArgumentError("bad bundle path " + bundle_arg));
  if (!bundle.has_filename()) bundle = bundle.parent_path();  // "dir/" -> "dir"
  if (!fs::is_regular_file(bundle / "config.json")) {
    return Fail(absl::FailedPreconditionError(bundle.string() + "/config.json not found"));
  }

  // 1. The shim opens <bundle>/log for writing when its daemon starts; that open blocks
  // until there is a reader, so the reader comes first.
  std::mutex err_mu;
  absl::StatusOr<std::unique_ptr<berth::ttrpc::ShimLog>> log =
      berth::ttrpc::ShimLog::Open(bundle.string(), [&](std::string_view line) {
        std::lock_guard<std::mutex> lock(err_mu);
        std::cerr << "shim log: " << line << "\n";
      });
  if (!log.ok()) return Fail(log.status());

  TempDir dir;
  if (dir.path().empty()) return Fail(absl::InternalError("mkdtemp under /tmp failed"));
  berth::ttrpc::ShimCommand cmd;
  cmd.binary = shim;
  cmd.bundle = bundle.string();
  cmd.id = bundle.filename().string();
  cmd.ns = kNamespace;
  // The "daemon address" the shim is given; nothing listens on it. Its events go to
  // TTRPC_ADDRESS, which is this address + ".ttrpc" by default.
  cmd.address = dir.path() + "/events.sock";
  cmd.timeout = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<berth::ttrpc::Server>> events =
      berth::ttrpc::ServeShimEvents(cmd.address + ".ttrpc", nullptr);
  if (!events.ok()) return Fail(events.status());

  // 2. `start`.
  absl::StatusOr<std::string> address = berth::ttrpc::StartShim(cmd);
  if (!address.ok()) return Fail(address.status());
  std::cout << "shim address: " << *address << std::endl;

  // 3. Task.Connect and Task.Shutdown.
  absl::StatusOr<std::unique_ptr<berth::ttrpc::TaskClient>> client =
      berth::ttrpc::TaskClient::Connect(*address, absl::Seconds(5));
  if (!client.ok()) return Fail(client.status());
  berth::ttrpc::TaskClient& shim_client = **client;
  auto deadline = [] { return absl::Now() + absl::Seconds(10); };

  task::ConnectRequest connect;
  connect.set_id(cmd.id);
  absl::StatusOr<task::ConnectResponse> connected = shim_client.ConnectTask(connect, deadline());
  if (!connected.ok()) return Fail(connected.status());
  const auto shim_pid = static_cast<pid_t>(connected->shim_pid());
  std::cout << "shim pid: " << shim_pid << std::endl;

  task::ShutdownRequest shutdown;
  shutdown.set_id(cmd.id);
  absl::StatusOr<google::protobuf::Empty> down = shim_client.Shutdown(shutdown, deadline());
  // The shim may exit before its reply is written: UNAVAILABLE is success here.
  if (!down.ok() && down.status().code() != absl::StatusCode::kUnavailable) {
    return Fail(down.status());
  }
  shim_client.Close();
  const absl::Time gone_by = absl::Now() + absl::Seconds(10);
  while (shim_pid > 1 && Alive(shim_pid) && absl::Now() < gone_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (shim_pid > 1 && Alive(shim_pid)) {
    return Fail(absl::DeadlineExceededError("shim pid " + std::to_string(shim_pid) +
                                            " still running 10s after Task.Shutdown"));
  }

  // 4. `delete`.
  absl::StatusOr<task::DeleteResponse> deleted = berth::ttrpc::DeleteShim(cmd);
  if (!deleted.ok()) return Fail(deleted.status());
  std::cout << "shim delete: exit status " << deleted->exit_status() << std::endl;

  (*events)->Shutdown(absl::Seconds(1));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: shim-client SHIM_BINARY BUNDLE_DIR\n";
    return 2;
  }
  return Run(argv[1], argv[2]);
}
