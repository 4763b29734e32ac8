// SPDX-License-Identifier: Apache-2.0
// berth-shim: the per-pod shim v2 process of the berth container runtime (docs/shim.md).
//
//   berth-shim -namespace <ns> -address <addr> -publish-binary <bin> -id <id> [-debug] start
//   berth-shim ... -id <id> -bundle <dir> delete
//   berth-shim -v
// Hidden: `serve` (the daemon, started by `start` with the listening socket on fd 3) and
// `exec-sync` (the ExecSync helper, see service.h).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "berth/ttrpc/server.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/runtime-runc/shim/loop.h"
#include "plugins/runtime-runc/shim/runtime.h"
#include "plugins/runtime-runc/shim/service.h"
#include "plugins/runtime-runc/shim/util.h"

namespace berth::shim {
namespace {

constexpr const char* kVersion = "berth-shim 0.1.0 (containerd shim v2, ttrpc)";
constexpr const char* kDefaultStateDir = "/run/berth/shim";
constexpr int kListenFd = 3;

struct Flags {
  std::map<std::string, std::string> values;
  bool debug = false;
  std::string command;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      std::string name = a.substr(a[1] == '-' ? 2 : 1);
      std::string value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (name == "debug" || name == "v" || name == "version") {
        if (name == "debug") f.debug = true;
        if (name != "debug") f.command = "version";
        continue;
      } else if (i + 1 < argc) {
        value = argv[++i];
      }
      f.values[name] = value;
    } else if (f.command.empty()) {
      f.command = a;
    }
  }
  return f;
}

std::string Flag(const Flags& f, const std::string& name) {
  auto it = f.values.find(name);
  return it == f.values.end() ? std::string() : it->second;
}

std::string StateDir() {
  const char* env = std::getenv("BERTH_SHIM_STATE_DIR");
  return env != nullptr && *env != '\0' ? env : kDefaultStateDir;
}

// The pod grouping key: the sandbox-id annotation of <bundle>/config.json, else the id.
std::string GroupKey(const std::string& bundle, const std::string& id) {
  absl::StatusOr<std::string> config = ReadWholeFile(bundle + "/config.json");
  if (config.ok()) {
    nlohmann::json spec = nlohmann::json::parse(*config, nullptr, false);
    if (spec.is_object() && spec.contains("annotations") && spec["annotations"].is_object()) {
      auto it = spec["annotations"].find("io.kubernetes.cri.sandbox-id");
      if (it != spec["annotations"].end() && it->is_string() && !it->get<std::string>().empty()) {
        return it->get<std::string>();
      }
    }
  }
  return id;
}

std::string GroupHash(const std::string& ns, const std::string& key) {
  return Sha256Hex(absl::StrCat(ns, "/", key)).substr(0, 16);
}

bool SocketAlive(const std::string& path) {
  sdk::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0;
}

std::string Cwd() {
  char buf[4096];
  return ::getcwd(buf, sizeof(buf)) != nullptr ? buf : ".";
}

int Fail(const absl::Status& s) {
  fprintf(stderr, "berth-shim: %s\n", std::string(s.message()).c_str());
  return 1;
}

int StartCommand(const Flags& flags, const char* self_exe) {
  const std::string ns = Flag(flags, "namespace");
  const std::string id = Flag(flags, "id");
  if (id.empty()) return Fail(absl::InvalidArgumentError("start: -id is required"));
  const std::string state_dir = StateDir();
  const std::string h = GroupHash(ns, GroupKey(Cwd(), id));
  const std::string sock = absl::StrCat(state_dir, "/", h, ".sock");
  const std::string dir = absl::StrCat(state_dir, "/", h);
  const std::string address = absl::StrCat("unix://", sock);
  if (sock.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("start: socket path ", sock, " is too long (shorten BERTH_SHIM_STATE_DIR)")));
  }
  if (absl::Status s = MakeDirs(state_dir); !s.ok()) return Fail(s);

  // One start at a time per group.
  sdk::UniqueFd lock(
      ::open(absl::StrCat(state_dir, "/", h, ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX) != 0) {
    return Fail(
        core::ErrnoToStatus(errno, absl::StrCat("start: lock ", state_dir, "/", h, ".lock")));
  }
  if (SocketAlive(sock)) {
    printf("%s\n", address.c_str());
    return 0;
  }
  for (const char* sub : {"", "/exits", "/tasks"}) {
    if (absl::Status s = MakeDirs(dir + sub); !s.ok()) return Fail(s);
  }
  sdk::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, sock.c_str(), sizeof(sun.sun_path) - 1);
  ::unlink(sock.c_str());
  if (!listener.valid() ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0 ||
      ::listen(listener.get(), 128) != 0) {
    return Fail(core::ErrnoToStatus(errno, absl::StrCat("start: listen on ", sock)));
  }
  ::chmod(sock.c_str(), 0600);
  const std::string log_path = dir + "/shim.log";
  sdk::UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!log.valid()) return Fail(core::ErrnoToStatus(errno, absl::StrCat("start: open ", log_path)));

  std::vector<std::string> args = {self_exe, "serve", "-namespace", ns,
                                   "-dir",   dir,     "-socket",    sock};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) return Fail(core::ErrnoToStatus(errno, "start: fork"));
  if (pid == 0) {
    // The daemon: own session, cwd /, stdio on /dev/null and shim.log, the socket on fd 3.
    ::setsid();
    if (::chdir("/") != 0) _exit(127);
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log.get(), STDOUT_FILENO);
    ::dup2(log.get(), STDERR_FILENO);
    ::dup2(listener.get(), kListenFd);  // dup2 clears FD_CLOEXEC
    ::execv(self_exe, argv.data());
    _exit(127);
  }
  // The pid file before the address: whoever reads the address can find the pid.
  absl::Status s = WriteFileDurably(dir + "/pid", std::to_string(pid) + "\n");
  if (!s.ok()) return Fail(s);
  printf("%s\n", address.c_str());
  fflush(stdout);
  return 0;
}

// Drops the pages of our own executable that only start-up touched (static initializers,
// flag parsing, the start command): the daemon faults back in what it runs. Only mappings
// without private (copied-on-write) pages are dropped: those are re-read from the file
// unchanged, while a written page such as the relocated RELRO would lose its contents.
void TrimExecutableMappings(const char* self_exe) {
  const std::string smaps = ReadWholeFile("/proc/self/smaps").value_or("");
  const std::string exe = std::string(" ") + self_exe;
  unsigned long start = 0, end = 0;
  bool candidate = false;
  size_t pos = 0;
  while (pos < smaps.size()) {
    size_t nl = smaps.find('\n', pos);
    if (nl == std::string::npos) nl = smaps.size();
    const std::string line = smaps.substr(pos, nl - pos);
    pos = nl + 1;
    const size_t dash = line.find('-');
    const bool header = dash != std::string::npos && dash > 0 && line.find(' ') > dash &&
                        std::isxdigit(static_cast<unsigned char>(line[0]));
    if (header) {
      char* rest = nullptr;
      start = std::strtoul(line.c_str(), &rest, 16);
      end = std::strtoul(rest + 1, &rest, 16);
      const bool writable = rest[0] == ' ' && rest[2] == 'w';
      candidate = !writable && line.size() >= exe.size() &&
                  line.compare(line.size() - exe.size(), exe.size(), exe) == 0;
      continue;
    }
    if (candidate && line.rfind("Anonymous:", 0) == 0) {
      if (std::strtoul(line.c_str() + 10, nullptr, 10) == 0) {
        ::madvise(reinterpret_cast<void*>(start),  // NOLINT(performance-no-int-to-ptr)
                  end - start, MADV_DONTNEED);
      }
      candidate = false;
    }
  }
}

int ServeCommand(const Flags& flags, const char* self_exe) {
  TrimExecutableMappings(self_exe);
  BlockSigchld();
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    LogLine(absl::StrCat("prctl(PR_SET_CHILD_SUBREAPER): ", strerror(errno)));
    return 1;
  }
  const std::string dir = Flag(flags, "dir");
  const std::string sock = Flag(flags, "socket");
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) {
    LogLine(loop.status().ToString());
    return 1;
  }
  (*loop)->Start();
  ShimService service(loop->get(), dir, self_exe);
  auto server = std::make_unique<ttrpc::Server>();
  service.Register(server.get());
  // Inherited without FD_CLOEXEC: set it, or every runtime and container would hold it.
  if (::fcntl(kListenFd, F_SETFD, FD_CLOEXEC) != 0) {
    LogLine(
        absl::StrCat("serve: fd ", kListenFd, " is not the listening socket: ", strerror(errno)));
    return 1;
  }
  absl::Status s = server->ListenFd(sdk::UniqueFd(kListenFd));
  if (s.ok()) s = server->Start();
  if (!s.ok()) {
    LogLine(absl::StrCat("serve: ", s.ToString()));
    return 1;
  }
  LogLine(absl::StrCat("berth-shim pid ", ::getpid(), " serving unix://", sock));
  const bool empty = service.WaitForShutdown();
  LogLine(empty ? "shutdown: no task left; exiting" : "shutdown now: exiting with tasks left");
  ::unlink(sock.c_str());
  server->Shutdown(absl::Milliseconds(200));
  if (empty) {
    // Nothing left to remember: remove <state>/<h>/ and its lock so that /run does not
    // collect a directory per pod. Under the lock, so a concurrent start waits for us.
    const std::string lock_path = dir + ".lock";
    sdk::UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CLOEXEC));
    if (lock.valid()) ::flock(lock.get(), LOCK_EX);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    ::unlink(lock_path.c_str());
  }
  // Containers still running (Shutdown with now) stay; nobody reaps them but init.
  _exit(0);
}

int DeleteCommand(const Flags& flags) {
  const std::string ns = Flag(flags, "namespace");
  const std::string id = Flag(flags, "id");
  std::string bundle = Flag(flags, "bundle");
  if (bundle.empty()) bundle = Cwd();
  const std::string h = GroupHash(ns, GroupKey(bundle, id));
  const std::string dir = absl::StrCat(StateDir(), "/", h);
  absl::StatusOr<containerd::task::v2::DeleteResponse> resp = DeleteDeadShimTask(dir, id, bundle);
  if (!resp.ok()) return Fail(resp.status());
  std::string out = resp->SerializeAsString();
  fwrite(out.data(), 1, out.size(), stdout);
  fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace berth::shim

int main(int argc, char** argv) {
  using namespace berth::shim;
  if (argc >= 2 && std::string(argv[1]) == "hide-cgroup2") return HideCgroup2Main(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "exec-sync") return ExecSyncHelperMain(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "exec-wait") return ExecWaitMain(argc, argv);
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) {
    fprintf(stderr, "berth-shim: readlink /proc/self/exe: %s\n", strerror(errno));
    return 1;
  }
  self[n] = '\0';
  Flags flags = ParseFlags(argc, argv);
  if (flags.command == "version") {
    printf("%s\n", kVersion);
    return 0;
  }
  if (flags.command == "start") return StartCommand(flags, self);
  if (flags.command == "serve") return ServeCommand(flags, self);
  if (flags.command == "delete") return DeleteCommand(flags);
  fprintf(stderr, "berth-shim: unknown command '%s' (start, delete, -v)\n", flags.command.c_str());
  return 2;
}
