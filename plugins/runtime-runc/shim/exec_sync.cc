// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/exec_sync.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"

extern char** environ;

namespace berth::shim {
namespace {

using Clock = std::chrono::steady_clock;
using sdk::UniqueFd;

constexpr size_t kReadChunk = 64 << 10;
// After the group was killed we take what is already buffered, but no more than this per
// stream: a writer that escaped the group could otherwise keep us reading.
constexpr int kFinalDrainReads = 32;

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

absl::StatusOr<Pipe> MakePipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("ExecSync: pipe2 for ", what));
  }
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

absl::Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return core::ErrnoToStatus(errno, "ExecSync: fcntl(O_NONBLOCK)");
  }
  return absl::OkStatus();
}

// 128+N for signal N, the exit code otherwise.
int ExitCodeFrom(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return info.si_status;
  return 128 + info.si_status;  // CLD_KILLED, CLD_DUMPED
}

// The direct child: killed (whole process group) and reaped on destruction unless reaped.
class Child {
 public:
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&& o) noexcept
      : pid_(o.pid_), pidfd_(std::move(o.pidfd_)), reaped_(std::exchange(o.reaped_, true)) {}
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (!reaped_) {
      KillGroup();
      (void)Reap();
    }
  }

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }

  // Safe while the child is unreaped: its zombie keeps the pid and the group id reserved.
  void KillGroup() {
    if (!reaped_) ::kill(-pid_, SIGKILL);
  }

  // Without reaping: the exit code if the child has exited. -1 if someone else (a SIGCHLD
  // handler with waitpid(-1)) reaped it: the status is lost and the pid may be reused, so
  // the group is no longer ours to kill.
  std::optional<int> Peek() {
    if (reaped_) return -1;
    siginfo_t info{};
    if (::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno != ECHILD) return std::nullopt;
      reaped_ = true;
      return -1;
    }
    if (info.si_pid == 0) return std::nullopt;
    return ExitCodeFrom(info);
  }

  // Blocks until the child exited; returns its exit code (-1 if waitid failed). A child stuck
  // in uninterruptible sleep delays this even after SIGKILL.
  int Reap() {
    if (reaped_) return -1;
    siginfo_t info{};
    int rc;
    do {
      rc = ::waitid(P_PID, pid_, &info, WEXITED);
    } while (rc != 0 && errno == EINTR);
    reaped_ = true;
    return rc == 0 ? ExitCodeFrom(info) : -1;
  }

 private:
  pid_t pid_;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

// Blocks SIGPIPE in this thread while we write to the child's stdin, so a child that exits
// early gives us EPIPE instead of killing the process; a SIGPIPE we caused is consumed.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) == 0) was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;
  ~SigpipeGuard() {
    if (got_epipe_ && !was_pending_) {
      timespec zero{};
      while (::sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void NoteEpipe() { got_epipe_ = true; }

 private:
  sigset_t set_;
  sigset_t old_;
  bool was_pending_ = false;
  bool got_epipe_ = false;
};

// posix_spawn attribute and file-action objects, destroyed on scope exit.
class SpawnConfig {
 public:
  SpawnConfig() {
    ok_ = ::posix_spawnattr_init(&attr_) == 0;
    if (ok_ && ::posix_spawn_file_actions_init(&actions_) != 0) {
      ::posix_spawnattr_destroy(&attr_);
      ok_ = false;
    }
  }
  SpawnConfig(const SpawnConfig&) = delete;
  SpawnConfig& operator=(const SpawnConfig&) = delete;
  ~SpawnConfig() {
    if (ok_) {
      ::posix_spawn_file_actions_destroy(&actions_);
      ::posix_spawnattr_destroy(&attr_);
    }
  }
  bool ok() const { return ok_; }
  posix_spawnattr_t* attr() { return &attr_; }
  posix_spawn_file_actions_t* actions() { return &actions_; }

 private:
  bool ok_ = false;
  posix_spawnattr_t attr_;
  posix_spawn_file_actions_t actions_;
};

// One captured output stream.
struct Capture {
  UniqueFd fd;
  std::string* data;
  bool* truncated;
  size_t cap;

  void Append(const char* buf, size_t n) {
    size_t room = cap > data->size() ? cap - data->size() : 0;
    if (n > room) *truncated = true;
    data->append(buf, std::min(n, room));
  }

  // One read; closes the fd at EOF. Errors other than EAGAIN close it too (nothing more can
  // be read from a broken pipe).
  void ReadOnce(char* buf) {
    ssize_t n = ::read(fd.get(), buf, kReadChunk);
    if (n > 0) {
      Append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      fd.Reset();
    }
  }

  // Takes what is already buffered without waiting for more.
  void FinalDrain(char* buf) {
    for (int i = 0; i < kFinalDrainReads && fd.valid(); ++i) {
      ssize_t n = ::read(fd.get(), buf, kReadChunk);
      if (n > 0) {
        Append(buf, static_cast<size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        break;
      }
    }
    fd.Reset();
  }
};

absl::StatusOr<Child> Spawn(const ExecSyncOptions& options, Pipe& in, Pipe& out, Pipe& err) {
  SpawnConfig config;
  if (!config.ok()) return absl::ResourceExhaustedError("ExecSync: posix_spawn init failed");

  // A new session: the child leads its own process group, which we can kill as a whole, and
  // has no controlling terminal. Empty signal mask and default dispositions for everything.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  int rc = ::posix_spawnattr_setflags(
      config.attr(), POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = ::posix_spawnattr_setsigmask(config.attr(), &none);
  if (rc == 0) rc = ::posix_spawnattr_setsigdefault(config.attr(), &all);
  // dup2 clears O_CLOEXEC on the target; every other fd of ours is O_CLOEXEC.
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(config.actions(), in.read_end.get(), 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(config.actions(), out.write_end.get(), 1);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(config.actions(), err.write_end.get(), 2);
  if (rc == 0 && !options.cwd.empty()) {
    rc = ::posix_spawn_file_actions_addchdir_np(config.actions(), options.cwd.c_str());
  }
  if (rc != 0) return core::ErrnoToStatus(rc, "ExecSync: posix_spawn setup");

  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  char** env = environ;
  if (!options.env.empty()) {
    envp.reserve(options.env.size() + 1);
    for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    env = envp.data();
  }

  pid_t pid = -1;
  // glibc's posix_spawn uses CLONE_VFORK and reports exec failures (ENOENT, EACCES...) here.
  rc = ::posix_spawnp(&pid, argv[0], config.actions(), config.attr(), argv.data(), env);
  if (rc != 0) {
    std::string what = absl::StrCat("ExecSync: cannot run \"", options.argv[0], "\"");
    if (!options.cwd.empty()) absl::StrAppend(&what, " in \"", options.cwd, "\"");
    if (rc == ENOENT) {
      absl::StrAppend(&what, options.cwd.empty() ? " (binary not found)"
                                                 : " (binary or working directory not found)");
    }
    return core::ErrnoToStatus(rc, what);
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // always O_CLOEXEC
  if (pidfd < 0) {
    int e = errno;
    ::kill(-pid, SIGKILL);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return core::ErrnoToStatus(e, absl::StrCat("ExecSync: pidfd_open of pid ", pid));
  }
  return Child(pid, UniqueFd(pidfd));
}

int PollTimeoutMs(Clock::time_point now, std::optional<Clock::time_point> a,
                  std::optional<Clock::time_point> b) {
  std::optional<Clock::time_point> first = a;
  if (b && (!first || *b < *first)) first = b;
  if (!first) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*first - now).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, 1 << 30));
}

}  // namespace

absl::StatusOr<ExecSyncResult> ExecSync(const ExecSyncOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("ExecSync: empty argv (no command to run)");
  }
  ASSIGN_OR_RETURN(Pipe in, MakePipe("stdin"));
  ASSIGN_OR_RETURN(Pipe out, MakePipe("stdout"));
  ASSIGN_OR_RETURN(Pipe err, MakePipe("stderr"));
  RETURN_IF_ERROR(SetNonBlocking(in.write_end.get()));
  RETURN_IF_ERROR(SetNonBlocking(out.read_end.get()));
  RETURN_IF_ERROR(SetNonBlocking(err.read_end.get()));

  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(Child child, Spawn(options, in, out, err));
  // From here on `child` kills the group and reaps on every return path.
  in.read_end.Reset();
  out.write_end.Reset();
  err.write_end.Reset();

  ExecSyncResult result;
  result.pid = child.pid();
  Capture cap_out{std::move(out.read_end), &result.stdout_data, &result.stdout_truncated,
                  options.max_output_bytes};
  Capture cap_err{std::move(err.read_end), &result.stderr_data, &result.stderr_truncated,
                  options.max_output_bytes};
  UniqueFd in_fd = std::move(in.write_end);
  size_t in_off = 0;
  if (options.stdin_data.empty()) in_fd.Reset();

  SigpipeGuard sigpipe_guard;
  std::optional<Clock::time_point> deadline;
  if (options.timeout.count() > 0) deadline = start + options.timeout;
  std::optional<Clock::time_point> grace_deadline;
  std::optional<int> exit_code;
  std::string buf(kReadChunk, '\0');

  while (true) {
    if (exit_code && !cap_out.fd.valid() && !cap_err.fd.valid()) break;
    Clock::time_point now = Clock::now();
    if (deadline && now >= *deadline) {
      result.timed_out = true;
      break;
    }
    if (grace_deadline && now >= *grace_deadline) {
      result.drain_cut_short = true;
      break;
    }

    pollfd fds[4];
    int n = 0;
    int i_pid = -1, i_out = -1, i_err = -1, i_in = -1;
    if (!exit_code) fds[i_pid = n++] = {child.pidfd(), POLLIN, 0};
    if (cap_out.fd.valid()) fds[i_out = n++] = {cap_out.fd.get(), POLLIN, 0};
    if (cap_err.fd.valid()) fds[i_err = n++] = {cap_err.fd.get(), POLLIN, 0};
    if (in_fd.valid()) fds[i_in = n++] = {in_fd.get(), POLLOUT, 0};
    int rc = ::poll(fds, n, PollTimeoutMs(now, deadline, grace_deadline));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return core::ErrnoToStatus(errno, absl::StrCat("ExecSync: poll for pid ", child.pid()));
    }
    if (rc == 0) continue;  // a deadline; checked at the top

    if (i_out >= 0 && fds[i_out].revents != 0) cap_out.ReadOnce(buf.data());
    if (i_err >= 0 && fds[i_err].revents != 0) cap_err.ReadOnce(buf.data());
    if (i_in >= 0 && fds[i_in].revents != 0) {
      if (fds[i_in].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        in_fd.Reset();  // the child closed stdin: drop the rest
      } else {
        const std::string& data = options.stdin_data;
        ssize_t w = ::write(in_fd.get(), data.data() + in_off, data.size() - in_off);
        if (w > 0) {
          in_off += static_cast<size_t>(w);
          if (in_off == data.size()) in_fd.Reset();
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          if (errno == EPIPE) sigpipe_guard.NoteEpipe();
          in_fd.Reset();
        }
      }
    }
    if (i_pid >= 0 && fds[i_pid].revents != 0) {
      exit_code = child.Peek();
      if (exit_code) {
        // Nobody reads stdin any more (unless a descendant does; it does not get the rest).
        in_fd.Reset();
        grace_deadline = Clock::now() + options.drain_grace;
      }
    }
  }

  if (result.timed_out || result.drain_cut_short) {
    if (!exit_code) exit_code = child.Peek();  // it may have exited just now
    child.KillGroup();
    in_fd.Reset();
    cap_out.FinalDrain(buf.data());
    cap_err.FinalDrain(buf.data());
  }
  int reaped_code = child.Reap();
  result.exit_code = exit_code ? *exit_code : (result.timed_out ? -1 : reaped_code);
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return result;
}

}  // namespace berth::shim
