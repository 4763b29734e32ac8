// SPDX-License-Identifier: Apache-2.0
#include "berth/ttrpc/shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "io.h"

extern char** environ;

namespace berth::ttrpc {
namespace {

constexpr std::size_t kMaxStdout = 1u << 20;
constexpr std::size_t kMaxStderr = 64u << 10;
constexpr std::size_t kMaxLogLine = 64u << 10;
constexpr unsigned kCloseRangeCloexec = 1u << 2;  // CLOSE_RANGE_CLOEXEC (linux/close_range.h)

using internal::ErrnoToStatus;

// Reads what is available on a non-blocking fd into `out`, keeping at most `cap` bytes (the
// tail for stderr, the head for stdout). Returns false at EOF or on an error.
bool Drain(int fd, std::string* out, std::size_t cap, bool keep_tail) {
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (n == 0) return false;
    out->append(buf, static_cast<std::size_t>(n));
    if (out->size() > cap) {
      if (keep_tail) {
        out->erase(0, out->size() - cap);
      } else {
        out->resize(cap);
      }
    }
  }
}

std::string ExitText(int status) {
  if (status > 128) return absl::StrCat("was killed by signal ", status - 128);
  return absl::StrCat("exited with status ", status);
}

// "<stderr>" trimmed to its last lines, for error messages.
std::string StderrTail(const std::string& err) {
  std::string s(absl::StripAsciiWhitespace(err));
  if (s.empty()) return "(no output on stderr)";
  if (s.size() > 4096) s = s.substr(s.size() - 4096);
  return s;
}

std::vector<std::string> ShimArgs(const ShimCommand& c) {
  std::vector<std::string> argv = {c.binary,         "-namespace", c.ns,
                                   "-address",       c.address,    "-publish-binary",
                                   c.publish_binary, "-id",        c.id};
  if (c.debug) argv.push_back("-debug");
  return argv;
}

std::vector<std::string> ShimEnv(const ShimCommand& c) {
  std::vector<std::string> env = {absl::StrCat(
      "TTRPC_ADDRESS=", c.ttrpc_address.empty() ? c.address + ".ttrpc" : c.ttrpc_address)};
  env.insert(env.end(), c.extra_env.begin(), c.extra_env.end());
  return env;
}

absl::Status CheckCommand(const ShimCommand& c) {
  if (c.binary.empty() || c.binary.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("shim binary must be an absolute path, got \"", c.binary, "\""));
  }
  if (c.bundle.empty() || c.id.empty() || c.ns.empty() || c.address.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shim command for ", c.binary, ": bundle, id, namespace and address are required"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::string& cwd,
                                         const std::vector<std::string>& extra_env,
                                         absl::Duration timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("RunCommand: empty argv");
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::map<std::string, std::string> env_map;
  std::vector<std::string> env_order;
  auto add_env = [&](const std::string& kv) {
    std::string name = kv.substr(0, kv.find('='));
    if (env_map.emplace(name, kv).second) {
      env_order.push_back(name);
    } else {
      env_map[name] = kv;
    }
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) add_env(*e);
  for (const std::string& kv : extra_env) add_env(kv);
  std::vector<std::string> env_store;
  env_store.reserve(env_order.size());
  for (const std::string& name : env_order) env_store.push_back(env_map[name]);
  std::vector<char*> envp;
  envp.reserve(env_store.size() + 1);
  for (std::string& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = argv;
  std::vector<char*> args;
  args.reserve(argv_store.size() + 1);
  for (std::string& a : argv_store) args.push_back(a.data());
  args.push_back(nullptr);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe2");
  sdk::UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe2");
  sdk::UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe2");
  sdk::UniqueFd exec_r(exec_pipe[0]), exec_w(exec_pipe[1]);
  sdk::UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) return ErrnoToStatus(errno, "open /dev/null");

  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoToStatus(errno, absl::StrCat("fork for ", argv[0]));
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int err = 0;
    if (::dup2(devnull.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(err_w.get(), 2) < 0 ||
        ::chdir(cwd.c_str()) != 0) {
      err = errno;
    } else {
      // Nothing of the caller's (a daemon's store, sockets) leaks into the shim. Older
      // kernels without close_range rely on O_CLOEXEC alone.
      ::syscall(SYS_close_range, 3u, ~0u, kCloseRangeCloexec);
      ::execve(args[0], args.data(), envp.data());
      err = errno;
    }
    // Tell the parent why, then leave without running any atexit handler.
    ssize_t ignored = ::write(exec_w.get(), &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  out_w.Reset();
  err_w.Reset();
  exec_w.Reset();
  sdk::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  for (int fd : {out_r.get(), err_r.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  CommandResult result;
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true, exited = false, timed_out = false;
  int status = 0;
  while (!exited) {
    pollfd fds[3];
    nfds_t n = 0;
    if (pidfd.valid()) fds[n++] = {pidfd.get(), POLLIN, 0};
    const int out_index = out_open ? static_cast<int>(n) : -1;
    if (out_open) fds[n++] = {out_r.get(), POLLIN, 0};
    const int err_index = err_open ? static_cast<int>(n) : -1;
    if (err_open) fds[n++] = {err_r.get(), POLLIN, 0};
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    // Without a pidfd (old kernels) poll in short steps and ask waitpid.
    int wait_ms = static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, pidfd.valid() ? 60000 : 20));
    int rc = ::poll(fds, n, wait_ms);
    if (rc < 0 && errno != EINTR) return ErrnoToStatus(errno, "poll");
    if (out_index >= 0 && (fds[out_index].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      out_open = Drain(out_r.get(), &result.out, kMaxStdout, false);
    }
    if (err_index >= 0 && (fds[err_index].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      err_open = Drain(err_r.get(), &result.err, kMaxStderr, true);
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) exited = true;
    if (w < 0 && errno != EINTR) return ErrnoToStatus(errno, "waitpid");
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);  // the child forked above, not yet reaped: its pid is still ours
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout),
                     " and was killed; stderr: ", StderrTail(result.err)));
  }
  // What the command wrote before it exited is in the pipes now.
  if (out_open) Drain(out_r.get(), &result.out, kMaxStdout, false);
  if (err_open) Drain(err_r.get(), &result.err, kMaxStderr, true);
  int exec_errno = 0;
  if (::read(exec_r.get(), &exec_errno, sizeof(exec_errno)) == sizeof(exec_errno)) {
    absl::Status s = ErrnoToStatus(exec_errno, absl::StrCat("cannot run ", argv[0], " in ", cwd));
    if (exec_errno == ENOENT || exec_errno == EACCES) {
      return absl::FailedPreconditionError(s.message());
    }
    return s;
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::StatusOr<std::string> ParseShimStartOutput(std::string_view out) {
  const std::string s(absl::StripAsciiWhitespace(absl::string_view(out.data(), out.size())));
  if (s.empty()) return absl::InvalidArgumentError("shim start printed nothing on stdout");
  if (s.front() != '{') {
    if (s.find_first_of(" \n\t") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("shim start printed more than an address: \"", s, "\""));
    }
    return s;
  }
  // {"version":2,"address":"...","protocol":"ttrpc"}: a flat object of strings and numbers.
  std::map<std::string, std::string> fields;
  std::size_t i = 1;
  auto skip_ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  };
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("shim start printed malformed JSON (", std::string(why), "): ", s));
  };
  auto read_string = [&](std::string* v) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
        char c = s[i];
        v->push_back(c == 'n' ? '\n' : c == 't' ? '\t' : c);
      } else {
        v->push_back(s[i]);
      }
      ++i;
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  skip_ws();
  while (i < s.size() && s[i] != '}') {
    std::string key, value;
    if (!read_string(&key)) return bad("expected a key");
    skip_ws();
    if (i >= s.size() || s[i] != ':') return bad("expected ':'");
    ++i;
    skip_ws();
    if (i < s.size() && s[i] == '"') {
      if (!read_string(&value)) return bad("unterminated string");
    } else {
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') value.push_back(s[i++]);
      if (value.empty()) return bad("expected a value");
    }
    fields[key] = value;
    skip_ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      skip_ws();
    }
  }
  if (i >= s.size()) return bad("unterminated object");
  auto it = fields.find("address");
  if (it == fields.end() || it->second.empty()) return bad("no \"address\"");
  auto protocol = fields.find("protocol");
  if (protocol != fields.end() && !protocol->second.empty() && protocol->second != "ttrpc") {
    return absl::InvalidArgumentError(absl::StrCat("shim serves protocol \"", protocol->second,
                                                   "\" at ", it->second,
                                                   "; only ttrpc shims are supported"));
  }
  return it->second;
}

namespace {

// Runs the shim binary with its flags plus `verb_args`; the error names `verb`, the
// container and the bundle, with the command's exit status and stderr.
absl::StatusOr<CommandResult> RunShimVerb(const ShimCommand& command,
                                          const std::vector<std::string>& verb_args,
                                          const char* verb, std::string* what) {
  if (absl::Status s = CheckCommand(command); !s.ok()) return s;
  std::vector<std::string> argv = ShimArgs(command);
  argv.insert(argv.end(), verb_args.begin(), verb_args.end());
  absl::StatusOr<CommandResult> r =
      RunCommand(argv, command.bundle, ShimEnv(command), command.timeout);
  *what = absl::StrCat("shim ", command.binary, " ", verb, " for container ", command.id,
                       " (bundle ", command.bundle, ")");
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrCat(*what, ": ", r.status().message()));
  }
  if (r->exit_status != 0) {
    return absl::InternalError(
        absl::StrCat(*what, " ", ExitText(r->exit_status), ": ", StderrTail(r->err)));
  }
  return r;
}

}  // namespace

absl::StatusOr<std::string> StartShim(const ShimCommand& command) {
  std::string what;
  absl::StatusOr<CommandResult> r = RunShimVerb(command, {"start"}, "start", &what);
  if (!r.ok()) return r.status();
  absl::StatusOr<std::string> address = ParseShimStartOutput(r->out);
  if (!address.ok()) {
    return absl::InternalError(
        absl::StrCat(what, ": ", address.status().message(), "; stderr: ", StderrTail(r->err)));
  }
  return address;
}

absl::StatusOr<containerd::task::v2::DeleteResponse> DeleteShim(const ShimCommand& command) {
  std::string what;
  absl::StatusOr<CommandResult> r =
      RunShimVerb(command, {"-bundle", command.bundle, "delete"}, "delete", &what);
  if (!r.ok()) return r.status();
  containerd::task::v2::DeleteResponse response;
  if (!response.ParseFromString(r->out)) {
    return absl::InternalError(
        absl::StrCat(what, " printed ", r->out.size(),
                     " bytes that are not a DeleteResponse; stderr: ", StderrTail(r->err)));
  }
  return response;
}

// ---- ShimLog ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ShimLog>> ShimLog::Open(
    const std::string& bundle, std::function<void(std::string_view line)> on_line) {
  const std::string path = bundle + "/log";
  if (::mkfifo(path.c_str(), 0600) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("mkfifo ", path));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISFIFO(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a FIFO; cannot read the shim's log from it"));
  }
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoToStatus(errno, "pipe2");
  std::unique_ptr<ShimLog> log(new ShimLog(std::move(fd), sdk::UniqueFd(wake[0]),
                                           sdk::UniqueFd(wake[1]), std::move(on_line)));
  log->reader_ = std::thread([p = log.get()] { p->ReadLoop(); });
  return log;
}

ShimLog::ShimLog(sdk::UniqueFd fd, sdk::UniqueFd wake_read, sdk::UniqueFd wake_write,
                 std::function<void(std::string_view)> on_line)
    : fd_(std::move(fd)),
      wake_read_(std::move(wake_read)),
      wake_write_(std::move(wake_write)),
      on_line_(std::move(on_line)) {}

ShimLog::~ShimLog() {
  char c = 1;
  ssize_t ignored = ::write(wake_write_.get(), &c, 1);
  (void)ignored;
  if (reader_.joinable()) reader_.join();
}

void ShimLog::ReadLoop() {
  std::string pending;
  auto emit = [&](bool all) {
    std::size_t start = 0;
    while (true) {
      std::size_t nl = pending.find('\n', start);
      if (nl == std::string::npos) break;
      if (on_line_) on_line_(std::string_view(pending).substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
    if ((all || pending.size() > kMaxLogLine) && !pending.empty()) {
      if (on_line_) on_line_(pending);
      pending.clear();
    }
  };
  while (true) {
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || fds[1].revents != 0) break;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    bool open = true;
    char buf[8192];
    while (true) {
      ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        open = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        break;
      }
      pending.append(buf, static_cast<std::size_t>(n));
      emit(false);
    }
    if (!open) break;  // every writer closed: the shim is gone
  }
  emit(true);
}

// ---- event sink ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Server>> ServeShimEvents(
    std::string_view ttrpc_address, std::function<void(const std::string& request)> on_forward) {
  auto server = std::make_unique<Server>();
  server->Register(
      kShimEventsService, "Forward",
      [on_forward = std::move(on_forward)](const std::string& payload,
                                           const CallContext&) -> absl::StatusOr<std::string> {
        if (on_forward) on_forward(payload);
        return std::string();
      });
  if (absl::Status s = server->Listen(ttrpc_address); !s.ok()) return s;
  if (absl::Status s = server->Start(); !s.ok()) return s;
  return server;
}

// ---- TaskClient ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TaskClient>> TaskClient::Connect(std::string_view address,
                                                                absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(address, timeout);
  if (!client.ok()) return client.status();
  return std::make_unique<TaskClient>(std::move(*client));
}

}  // namespace berth::ttrpc
