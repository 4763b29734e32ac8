// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/cni_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "plugins/cni/cni_config.h"

namespace berth::cni {
namespace {

using core::ErrnoToStatus;
using nlohmann::json;

// What plugins need to find their helpers (iptables, ip, tc, modprobe); nothing of berthd's
// own environment reaches them.
constexpr char kPluginPath[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

// Reads what `fd` (non-blocking) has. Returns false at end of file (or on an error).
// keep_tail: keep the last `cap` bytes; otherwise the first `cap` and set *truncated.
bool Drain(int fd, std::string* buf, size_t cap, bool keep_tail, bool* truncated) {
  char chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      buf->append(chunk, static_cast<size_t>(n));
      if (buf->size() > cap) {
        if (keep_tail) {
          buf->erase(0, buf->size() - cap);
        } else {
          buf->resize(cap);
          *truncated = true;
        }
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

// Kills (the process group) and reaps a spawned child unless it was reaped already, so that
// no early return leaves a plugin running or a zombie behind.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  void Reaped() { pid_ = -1; }

 private:
  pid_t pid_;
};

// Spawn attributes and file actions, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

// The last `max` bytes of `s`, trimmed, on one line.
std::string OneLineTail(std::string_view s, size_t max) {
  if (s.size() > max) s = s.substr(s.size() - max);
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  std::string out(s.substr(b, e - b + 1));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return out;
}

// A CNI error object ({"code": N, "msg": ..., "details": ...}) in `text`, or null.
json ErrorObject(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_object() && j.contains("code") && j["code"].is_number_integer()) return j;
  return nullptr;
}

std::string StringField(const json& j, const char* key) {
  if (j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

}  // namespace

absl::StatusOr<ProcessResult> RunProcess(const std::string& path,
                                         const std::vector<std::string>& env,
                                         std::string_view input, absl::Duration timeout) {
  // stdin is a memory file holding the whole input: nothing to pump, and a plugin that
  // does not read it cannot block us (nor make us take a SIGPIPE).
  sdk::UniqueFd in(::memfd_create("cni-stdin", MFD_CLOEXEC));
  if (!in.valid()) return ErrnoToStatus(errno, "memfd_create for the stdin of " + path);
  for (std::string_view rest = input; !rest.empty();) {
    ssize_t n = ::write(in.get(), rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write the stdin of " + path);
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (::lseek(in.get(), 0, SEEK_SET) != 0) return ErrnoToStatus(errno, "lseek");

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe2");
  sdk::UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe2");
  sdk::UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);

  SpawnSetup setup;
  // dup2 clears close-on-exec on the target; every other descriptor of berthd is closed.
  posix_spawn_file_actions_adddup2(&setup.actions, in.get(), 0);
  posix_spawn_file_actions_adddup2(&setup.actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&setup.actions, err_w.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  // A process group of its own (killed as a whole on timeout), default signal dispositions
  // and an empty mask whatever berthd's threads block or ignore.
  posix_spawnattr_setflags(&setup.attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &all);

  std::vector<char*> argv = {const_cast<char*>(path.c_str()), nullptr};
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path.c_str(), &setup.actions, &setup.attr, argv.data(), envp.data());
  if (rc != 0) {
    absl::Status s = ErrnoToStatus(rc, "cannot execute " + path);
    return absl::FailedPreconditionError(std::string(s.message()));
  }
  ChildGuard guard(pid);
  in.Reset();
  out_w.Reset();
  err_w.Reset();
  sdk::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  for (int fd : {out_r.get(), err_r.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  ProcessResult result;
  bool err_truncated = false;
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true, exited = false;
  int status = 0;
  while (!exited) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      ::kill(-pid, SIGKILL);  // the group: a plugin's own children go too
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      guard.Reaped();
      return absl::DeadlineExceededError(absl::StrCat(
          path, " did not finish within ", absl::FormatDuration(timeout), " and was killed"));
    }
    pollfd fds[3];
    nfds_t n = 0;
    if (pidfd.valid()) fds[n++] = {pidfd.get(), POLLIN, 0};
    const int out_index = out_open ? static_cast<int>(n) : -1;
    if (out_open) fds[n++] = {out_r.get(), POLLIN, 0};
    const int err_index = err_open ? static_cast<int>(n) : -1;
    if (err_open) fds[n++] = {err_r.get(), POLLIN, 0};
    // Without a pidfd (kernels before 5.3) poll in short steps and ask waitpid.
    int64_t wait_ms =
        std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, pidfd.valid() ? INT_MAX : 20);
    if (::poll(fds, n, static_cast<int>(wait_ms)) < 0 && errno != EINTR) {
      return ErrnoToStatus(errno, "poll");
    }
    if (out_index >= 0 && (fds[out_index].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      out_open = Drain(out_r.get(), &result.out, kMaxStdout, false, &result.out_truncated);
    }
    if (err_index >= 0 && (fds[err_index].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      err_open = Drain(err_r.get(), &result.err, kMaxStderr, true, &err_truncated);
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exited = true;
      guard.Reaped();
    } else if (w < 0 && errno != EINTR) {
      return ErrnoToStatus(errno, "waitpid");
    }
  }
  // What the plugin wrote before it exited is in the pipes now. A descendant that kept them
  // open (a daemon it started) does not hold us: read what is there and stop.
  if (out_open) Drain(out_r.get(), &result.out, kMaxStdout, false, &result.out_truncated);
  if (err_open) Drain(err_r.get(), &result.err, kMaxStderr, true, &err_truncated);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
    result.exit_code = 128 + result.term_signal;
  }
  return result;
}

std::vector<std::string> PluginRunner::Environment(const Invocation& inv) const {
  std::vector<std::string> env = {"CNI_COMMAND=" + inv.command};
  if (inv.command == "ADD" || inv.command == "DEL" || inv.command == "CHECK") {
    env.push_back("CNI_CONTAINERID=" + inv.container_id);
    env.push_back("CNI_NETNS=" + inv.netns);
    env.push_back("CNI_IFNAME=" + inv.ifname);
    env.push_back("CNI_ARGS=" + inv.args);
  }
  env.push_back("CNI_PATH=" + JoinPaths(bin_dirs_));
  env.push_back(kPluginPath);
  return env;
}

absl::Status PluginFailure(const std::string& what, const ProcessResult& result) {
  bool from_stderr = false;
  json error = ErrorObject(result.out);
  if (error.is_null()) {
    error = ErrorObject(result.err);
    from_stderr = !error.is_null();
  }
  std::string text;
  int64_t cni_code = -1;
  if (!error.is_null()) {
    cni_code = error["code"].get<int64_t>();
    std::string msg = StringField(error, "msg");
    std::string details = StringField(error, "details");
    text = what + ": " + (msg.empty() ? "failed" : msg);
    if (!details.empty() && details != msg) text += ": " + details;
    text += " (CNI error code " + std::to_string(cni_code) + ")";
    std::string err = from_stderr ? "" : OneLineTail(result.err, 1024);
    if (!err.empty() && err.find(msg) == std::string::npos) text += "; stderr: " + err;
  } else {
    text = what +
           (result.term_signal != 0 ? " was killed by signal " + std::to_string(result.term_signal)
                                    : " exited with status " + std::to_string(result.exit_code)) +
           " without a CNI error object";
    std::string out = OneLineTail(result.out, 1024);
    std::string err = OneLineTail(result.err, 2048);
    if (!out.empty()) text += "; stdout: " + out;
    if (!err.empty()) text += "; stderr: " + err;
  }
  // 11: try again later; 50, 51: the plugin is not available (yet).
  if (cni_code == 11 || cni_code == 50 || cni_code == 51) return absl::UnavailableError(text);
  return absl::InternalError(text);
}

absl::StatusOr<std::string> PluginRunner::Run(std::string_view type, std::string_view network,
                                              const Invocation& inv,
                                              std::string_view config) const {
  const std::string what = "plugin \"" + std::string(type) + "\" (" + inv.command + ", network \"" +
                           std::string(network) + "\")";
  absl::StatusOr<std::string> binary = FindPluginBinary(type, bin_dirs_);
  if (!binary.ok()) {
    return absl::FailedPreconditionError(
        what + ": " + std::string(binary.status().message()) +
        " (install it, or add its directory to bin_dirs of io.berth.cni)");
  }
  absl::StatusOr<ProcessResult> result = RunProcess(*binary, Environment(inv), config, timeout_);
  if (!result.ok()) {
    if (absl::IsDeadlineExceeded(result.status())) {
      return absl::DeadlineExceededError(what + " did not finish within " +
                                         absl::FormatDuration(timeout_) +
                                         " and was killed (plugin_timeout of io.berth.cni)");
    }
    return absl::Status(result.status().code(),
                        what + ": " + std::string(result.status().message()));
  }
  if (result->exit_code != 0) return PluginFailure(what, *result);
  if (result->out_truncated) {
    return absl::InternalError(what + ": printed more than " + std::to_string(kMaxStdout) +
                               " bytes on stdout, which is not a CNI result");
  }
  return std::move(result->out);
}

}  // namespace berth::cni
