// SPDX-License-Identifier: Apache-2.0
// Debian's docker-registry on a free loopback port with its own storage, and the test image
// tool (tests/tools/oci_image.py) to build and push images into it. Stopped by PID only.
#pragma once

#include <netinet/in.h>

#include "tests/integration/daemon_harness.h"

namespace berth::testing {

class Registry {
 public:
  explicit Registry(fs::path dir) : dir_(std::move(dir)) {}
  ~Registry() { Stop(); }

  // With user set, the registry requires basic auth (an htpasswd file made by htpasswd).
  bool Start(const std::string& user = "", const std::string& password = "") {
    port_ = FreeLoopbackPort();
    fs::create_directories(dir_ / "storage");
    std::string auth;
    if (!user.empty()) {
      auto [code, out] = RunCommand({"/usr/bin/htpasswd", "-Bbn", user, password},
                                    dir_ / "htpasswd.out");
      if (code != 0) return false;
      WriteFile(dir_ / "htpasswd", out.substr(0, out.find('\n') + 1));
      auth = "auth:\n  htpasswd:\n    realm: berth-test\n    path: " +
             (dir_ / "htpasswd").string() + "\n";
      user_ = user;
      password_ = password;
    }
    WriteFile(dir_ / "config.yml",
              "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: " +
                  (dir_ / "storage").string() +
                  "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" +
                  std::to_string(port_) + "\n" + auth);
    pid_ = Spawn({"/usr/bin/docker-registry", "serve", (dir_ / "config.yml").string()},
                 dir_ / "registry.log");
    for (int i = 0; i < 1000; ++i) {
      if (CanConnectTcp(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void Stop() {
    if (pid_ <= 0) return;
    // SIGKILL: its storage is a temporary directory, and SIGTERM drains for 1.5 s.
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // The file holding a blob in the registry's storage.
  fs::path BlobFile(const std::string& digest) const {
    std::string hex = digest.substr(7);
    return dir_ / "storage/docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
  }
  int port() const { return port_; }

  // Builds an image with tests/tools/oci_image.py and pushes it; returns the manifest
  // digest (empty on failure, with the tool's output in *log_out).
  std::string Push(const std::vector<std::string>& args, std::string* log_out = nullptr) {
    std::vector<std::string> argv = {"/usr/bin/python3", BERTH_SOURCE_DIR "/tests/tools/oci_image.py",
                                     "push", "--registry", host()};
    if (!user_.empty()) {
      for (const std::string& a : {std::string("--username"), user_, std::string("--password"),
                                   password_}) {
        argv.push_back(a);
      }
    }
    argv.insert(argv.end(), args.begin(), args.end());
    auto [code, out] = RunCommand(argv, dir_ / "push.log");
    if (log_out != nullptr) *log_out = out;
    if (code != 0) return "";
    size_t p = out.rfind("sha256:");
    return p == std::string::npos ? "" : out.substr(p, 71);
  }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string user_, password_;
};

}  // namespace berth::testing
