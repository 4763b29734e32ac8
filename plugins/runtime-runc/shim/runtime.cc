// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/runtime.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/runtime-runc/runtime_probe.h"
#include "plugins/runtime-runc/shim/util.h"

namespace berth::shim {
namespace {

std::atomic<uint64_t> g_invocation{0};

std::string ReadMemfd(int fd) {
  std::string out;
  if (fd < 0 || ::lseek(fd, 0, SEEK_SET) != 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The message of the last "error"/"fatal" entry of a runtime's JSON log.
std::string LastLoggedError(const std::string& log) {
  std::string last;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipWhitespace())) {
    nlohmann::json entry =
        nlohmann::json::parse(std::string(line), nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object()) continue;
    auto level = entry.find("level");
    auto msg = entry.find("msg");
    if (level == entry.end() || msg == entry.end() || !level->is_string() || !msg->is_string()) {
      continue;
    }
    const std::string lv = level->get<std::string>();
    if (lv == "error" || lv == "fatal" || lv == "panic") last = msg->get<std::string>();
  }
  return last;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

constexpr char kCgroupRoot[] = "/sys/fs/cgroup";
constexpr char kCgroupUnified[] = "/sys/fs/cgroup/unified";

}  // namespace

absl::Status DecideCgroup2Hiding(EventLoop* loop, RuntimeConfig* config) {
  // binary path -> verdict (OK + hide flag, or the reason crun cannot run here).
  static std::mutex mu;
  static std::map<std::string, absl::StatusOr<bool>> cache;
  // The runtime plugin passes its own verdict (it probed the handler for its status).
  if (const char* given = std::getenv("BERTH_SHIM_HIDE_CGROUP2");
      given != nullptr && (given == std::string_view("0") || given == std::string_view("1"))) {
    config->hide_cgroup2 = given[0] == '1';
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string binary, ResolveBinary(config->binary));
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(binary);
    if (it != cache.end()) {
      if (!it->second.ok()) return it->second.status();
      config->hide_cgroup2 = *it->second;
      return absl::OkStatus();
    }
  }
  absl::StatusOr<bool> verdict = false;
  sdk::UniqueFd out(::memfd_create("runtime-version", MFD_CLOEXEC));
  SpawnOptions spawn;
  spawn.argv = {binary, "--version"};
  spawn.stdout_fd = out.get();
  absl::StatusOr<pid_t> pid = loop->Spawn(spawn);
  int status = -1;
  if (pid.ok() && loop->WaitPidFor(*pid, std::chrono::seconds(10), &status) && WIFEXITED(status) &&
      WEXITSTATUS(status) == 0) {
    absl::StatusOr<runc::RuntimeIdentity> identity =
        runc::ParseRuntimeVersion(ReadMemfd(out.get()));
    absl::StatusOr<runc::CgroupHost> host = runc::ProbeCgroupHost(kCgroupRoot);
    if (identity.ok() && host.ok()) {
      runc::RuntimeReadiness r = runc::EvaluateRuntimeReadiness(*identity, *host);
      if (r.readiness == runc::Readiness::kNotReady) {
        verdict = absl::FailedPreconditionError(absl::StrCat(binary, ": ", r.message));
      } else {
        verdict = r.readiness == runc::Readiness::kReadyWithWorkaround;
      }
    }
  }
  // A runtime that cannot tell its version is run as it is (its own errors will say more).
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(binary, verdict);
  if (!verdict.ok()) return verdict.status();
  config->hide_cgroup2 = *verdict;
  return absl::OkStatus();
}

int HideCgroup2Main(int argc, char** argv) {
  // berth-shim hide-cgroup2 -- <runtime> <args...>
  if (argc < 4 || std::string(argv[2]) != "--") {
    std::fprintf(stderr, "usage: berth-shim hide-cgroup2 -- <runtime> [args...]\n");
    return 2;
  }
  int err = runc::ApplyCrunHybridWorkaroundInChild(kCgroupRoot, kCgroupUnified);
  if (err != 0) {
    std::fprintf(stderr, "hiding the cgroup2 mount %s for crun failed: %s\n", kCgroupUnified,
                 std::strerror(err));
    return 125;
  }
  ::execv(argv[3], argv + 3);
  std::fprintf(stderr, "exec %s: %s\n", argv[3], std::strerror(errno));
  return 127;
}

absl::StatusOr<std::vector<std::string>> RuntimeArgv(const RuntimeConfig& config,
                                                     const std::string& log_file) {
  ASSIGN_OR_RETURN(std::string binary, ResolveBinary(config.binary));
  std::vector<std::string> argv = {binary};
  if (!config.root.empty()) {
    argv.push_back("--root");
    argv.push_back(config.root);
  }
  if (config.systemd_cgroup) argv.push_back("--systemd-cgroup");
  argv.push_back("--log");
  argv.push_back(log_file);
  argv.push_back("--log-format");
  argv.push_back("json");
  return argv;
}

absl::StatusOr<std::string> RunRuntime(EventLoop* loop, const RuntimeConfig& config,
                                       const std::vector<std::string>& args, const RuntimeIo& io,
                                       const std::string& what) {
  const std::string log_file =
      absl::StrCat(config.log_dir, "/runtime-", ::getpid(), "-", g_invocation.fetch_add(1), ".log");
  ASSIGN_OR_RETURN(std::vector<std::string> argv, RuntimeArgv(config, log_file));
  argv.insert(argv.end(), args.begin(), args.end());
  if (config.hide_cgroup2 && !args.empty() && (args[0] == "create" || args[0] == "run")) {
    argv.insert(argv.begin(), {"/proc/self/exe", "hide-cgroup2", "--"});
  }

  sdk::UniqueFd out_capture, err_capture;
  if (io.stdout_fd < 0) out_capture.Reset(::memfd_create("runtime-stdout", MFD_CLOEXEC));
  if (io.stderr_fd < 0) err_capture.Reset(::memfd_create("runtime-stderr", MFD_CLOEXEC));
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.stdin_fd = io.stdin_fd;
  spawn.stdout_fd = io.stdout_fd >= 0 ? io.stdout_fd : out_capture.get();
  spawn.stderr_fd = io.stderr_fd >= 0 ? io.stderr_fd : err_capture.get();
  absl::StatusOr<pid_t> pid = loop->Spawn(spawn);
  if (!pid.ok()) {
    return absl::Status(pid.status().code(),
                        absl::StrCat(config.binary, " ", what, ": ", pid.status().message()));
  }
  const int status = loop->WaitPid(*pid);
  std::string log = ReadWholeFile(log_file).value_or("");
  ::unlink(log_file.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ReadMemfd(out_capture.get());

  std::string message = LastLoggedError(log);
  if (message.empty()) {
    message = std::string(absl::StripAsciiWhitespace(ReadMemfd(err_capture.get())));
  }
  if (message.empty()) message = "no error message (runtime log was empty)";
  return absl::UnknownError(
      absl::StrCat(argv[0], " ", what, " failed (", DescribeWaitStatus(status), "): ", message));
}

}  // namespace berth::shim
