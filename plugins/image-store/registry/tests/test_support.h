// SPDX-License-Identifier: Apache-2.0
// Test fixtures of the registry client: temporary directories, child processes stopped by PID,
// Debian's docker-registry on a free loopback port, the image tool (tests/tools/oci_image.py),
// and a small loopback HTTP server for what a real registry will not do (oversized or broken
// manifests, stalls, redirects, token services).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

#include "tests/support/test_support.h"

namespace berth::image::testing {

namespace fs = std::filesystem;

using berth::testing::FreeLoopbackPort;
using berth::testing::ReadFile;
using berth::testing::WriteFile;
inline bool CanConnect(int port) { return berth::testing::CanConnectTcp(port); }
// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir : public berth::testing::TempDir {
 public:
  TempDir() : berth::testing::TempDir("registry-test") {}
};

// A child process (posix_spawn: nothing but exec runs in the child of this threaded test),
// its stdout and stderr appended to `log`. Stopped by its PID only: SIGTERM, then SIGKILL.
class Child {
 public:
  Child() = default;
  ~Child() { Stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool Start(const std::vector<std::string>& argv, const fs::path& log) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
    return rc == 0;
  }

  // Exit status once exited (waits up to `timeout`), nullopt if still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return exit_status_;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_status_;
      }
      if (r < 0) {
        pid_ = -1;
        return exit_status_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!Wait(std::chrono::seconds(5)).has_value()) {
      ::kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(5));
    }
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// Runs a command to completion (at most 60 s); returns its exit code and output.
inline std::pair<int, std::string> RunCommand(const std::vector<std::string>& argv,
                                              const fs::path& log) {
  std::error_code ec;
  fs::remove(log, ec);
  Child c;
  if (!c.Start(argv, log)) return {-1, "cannot spawn " + argv[0]};
  std::optional<int> code = c.Wait(std::chrono::seconds(60));
  if (!code.has_value()) c.Stop();
  return {code.value_or(-1), ReadFile(log)};
}

// Debian's docker-registry on a free 127.0.0.1 port with its own storage under `dir`.
class DockerRegistry {
 public:
  struct Options {
    std::string htpasswd_user, htpasswd_password;  // basic auth when set
    // Token auth when realm is set (rootcertbundle: the token signer's certificate).
    std::string token_realm, token_service, token_issuer, token_rootcert;
  };

  explicit DockerRegistry(fs::path dir) : dir_(std::move(dir)) {}
  ~DockerRegistry() { Stop(); }

  bool Start(const Options& options = {}) {
    fs::create_directories(dir_ / "storage");
    std::string auth;
    if (!options.htpasswd_user.empty()) {
      auto [code, out] = RunCommand(
          {"/usr/bin/htpasswd", "-Bbn", options.htpasswd_user, options.htpasswd_password},
          dir_ / "htpasswd.out");
      if (code != 0) {
        error_ = "htpasswd failed: " + out;
        return false;
      }
      WriteFile(dir_ / "htpasswd", out.substr(0, out.find('\n') + 1));
      auth =
          "auth:\n  htpasswd:\n    realm: berth-test\n    path: " + (dir_ / "htpasswd").string() +
          "\n";
    } else if (!options.token_realm.empty()) {
      auth = "auth:\n  token:\n    realm: " + options.token_realm +
             "\n    service: " + options.token_service + "\n    issuer: " + options.token_issuer +
             "\n    rootcertbundle: " + options.token_rootcert + "\n";
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreeLoopbackPort();
      WriteFile(dir_ / "config.yml",
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                "storage:\n  filesystem:\n    rootdirectory: " +
                    (dir_ / "storage").string() + "\n  delete:\n    enabled: true\n" + auth +
                    "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n");
      if (!child_.Start({"/usr/bin/docker-registry", "serve", (dir_ / "config.yml").string()},
                        log())) {
        error_ = "cannot start /usr/bin/docker-registry (apt-get install docker-registry)";
        return false;
      }
      for (int i = 0; i < 500; ++i) {
        if (CanConnect(port_)) return true;
        if (child_.Wait(std::chrono::milliseconds(10)).has_value()) break;  // exited
      }
      child_.Stop();
    }
    error_ = "docker-registry did not start: " + ReadFile(log());
    return false;
  }

  void Stop() { child_.Stop(); }

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  fs::path log() const { return dir_ / "registry.log"; }
  const std::string& error() const { return error_; }

  // Runs tests/tools/oci_image.py <command> --registry <this> args…; returns the digest it
  // prints last (empty on failure, with the output in *out).
  std::string Tool(const std::string& command, const std::vector<std::string>& args,
                   std::string* out = nullptr) {
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     BERTH_SOURCE_DIR "/tests/tools/oci_image.py", command,
                                     "--registry", host()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [code, text] = RunCommand(argv, dir_ / "tool.log");
    if (out != nullptr) *out = text;
    if (code != 0) return "";
    size_t p = text.rfind("sha256:");
    return p == std::string::npos ? "" : text.substr(p, 71);
  }
  std::string Push(const std::vector<std::string>& args, std::string* out = nullptr) {
    return Tool("push", args, out);
  }

 private:
  fs::path dir_;
  int port_ = 0;
  Child child_;
  std::string error_;
};

// A request as the test HTTP server saw it.
struct SeenRequest {
  std::string method;
  std::string target;  // path and query
  std::string path;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct CannedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Sends the headers (with the full Content-Length) and `body`'s first stall_after bytes,
  // then nothing until the server stops.
  std::optional<size_t> stall_after;
};

// A loopback HTTP/1.1 server, one thread per connection, each answered and closed. Bounded:
// requests over 1 MiB are dropped. Stop() (or the destructor) closes everything and joins.
class TestHttpServer {
 public:
  using Handler = std::function<CannedResponse(const SeenRequest&)>;

  explicit TestHttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::pipe2(stop_pipe_, O_CLOEXEC);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestHttpServer() { Stop(); }
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  void Stop() {
    if (stopped_.exchange(true)) return;
    ::close(stop_pipe_[1]);  // wakes every poll on the read end
    if (accept_thread_.joinable()) accept_thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(conn_threads_);
    }
    for (std::thread& t : threads) t.join();
    ::close(listen_fd_);
    ::close(stop_pipe_[0]);
  }

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<SeenRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  // Waits for fd to be readable; false when the server stops (or `ms` passes).
  bool WaitReadable(int fd, int ms = 30000) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int r = ::poll(p, 2, ms);
    return r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && p[1].revents == 0;
  }

  void AcceptLoop() {
    while (WaitReadable(listen_fd_, -1)) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      conn_threads_.emplace_back([this, fd] {
        Serve(fd);
        ::close(fd);
      });
    }
  }

  void Serve(int fd) {
    std::string in;
    size_t header_end;
    char buf[16384];
    while ((header_end = in.find("\r\n\r\n")) == std::string::npos) {
      if (in.size() > (1 << 20) || !WaitReadable(fd)) return;
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      in.append(buf, n);
    }
    SeenRequest req;
    std::istringstream head(in.substr(0, header_end));
    std::string line;
    std::getline(head, line);
    std::istringstream first(line);
    first >> req.method >> req.target;
    req.path = req.target.substr(0, req.target.find('?'));
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = line.find_first_not_of(" \t", colon + 1);
      req.headers[name] = v == std::string::npos ? "" : line.substr(v);
    }
    size_t length = std::strtoul(req.Header("content-length").c_str(), nullptr, 10);
    if (length > (1 << 20)) return;
    req.body = in.substr(header_end + 4);
    while (req.body.size() < length) {
      if (!WaitReadable(fd)) return;
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      req.body.append(buf, n);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(req);
    }
    CannedResponse resp = handler_(req);
    std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " Status\r\n";
    bool has_length = false;
    for (const auto& [k, v] : resp.headers) {
      out += k + ": " + v + "\r\n";
      if (k == "Content-Length") has_length = true;
    }
    if (!has_length) out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
    out += "Connection: close\r\n\r\n";
    if (req.method != "HEAD") {
      out += resp.stall_after.has_value() ? resp.body.substr(0, *resp.stall_after) : resp.body;
    }
    size_t sent = 0;
    while (sent < out.size()) {
      ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += n;
    }
    if (resp.stall_after.has_value()) {
      // Until the client gives up (EOF) or the server stops.
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      ::poll(p, 2, 30000);
    }
    ::shutdown(fd, SHUT_WR);
  }

  Handler handler_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stopped_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> conn_threads_;
  std::vector<SeenRequest> requests_;
};

}  // namespace berth::image::testing
