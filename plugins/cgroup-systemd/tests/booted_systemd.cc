// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-systemd/tests/booted_systemd.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "plugins/cgroup-systemd/systemd_bus.h"

extern char** environ;

namespace berth::cgroup_systemd::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kSystemd[] = "/lib/systemd/systemd";
constexpr char kNsenter[] = "/usr/bin/nsenter";
constexpr char kBridge[] = "/usr/bin/systemd-stdio-bridge";
constexpr char kHostCgroupRoot[] = "/sys/fs/cgroup";
constexpr char kTarget[] = "berth-test.target";
constexpr auto kBootTimeout = std::chrono::seconds(60);
constexpr char kSubtreePrefix[] = "berthtest";
constexpr char kTempPrefix[] = "/tmp/berth-systemd-";

// A cgroup hierarchy mounted directly under /sys/fs/cgroup on the host.
struct CgroupMount {
  std::string mount_point;  // "/sys/fs/cgroup/memory"
  std::string name;         // "memory"
  bool v2 = false;
  std::string options;  // mount(2) data for a v1 hierarchy: "memory", "none,name=systemd"
};

bool IsController(std::string_view opt) {
  static const std::set<std::string_view> kControllers = {
      "cpu",      "cpuacct", "cpuset",     "memory",  "devices", "freezer", "net_cls",
      "net_prio", "blkio",   "perf_event", "hugetlb", "pids",    "rdma",    "misc"};
  return kControllers.count(opt) > 0;
}

// The cgroup mounts of /proc/self/mountinfo one level below /sys/fs/cgroup whose root is the
// hierarchy's root.
absl::StatusOr<std::vector<CgroupMount>> HostCgroupMounts() {
  std::ifstream info("/proc/self/mountinfo");
  if (!info) return absl::InternalError("cannot read /proc/self/mountinfo");
  std::vector<CgroupMount> out;
  std::string line;
  while (std::getline(info, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<std::string> pre = absl::StrSplit(line.substr(0, dash), ' ');
    std::vector<std::string> post = absl::StrSplit(line.substr(dash + 3), ' ');
    if (pre.size() < 5 || post.size() < 3) continue;
    const std::string& root = pre[3];
    const std::string& mp = pre[4];
    const std::string& type = post[0];
    if (type != "cgroup" && type != "cgroup2") continue;
    fs::path p(mp);
    if (p.parent_path() != kHostCgroupRoot || root != "/") continue;
    CgroupMount m;
    m.mount_point = mp;
    m.name = p.filename().string();
    m.v2 = type == "cgroup2";
    if (!m.v2) {
      std::vector<std::string> opts;
      bool controller = false;
      for (const std::string& o : std::vector<std::string>(absl::StrSplit(post[2], ','))) {
        if (o == "rw" || o == "ro" || o.rfind("release_agent=", 0) == 0) continue;
        controller = controller || IsController(o);
        opts.push_back(o);
      }
      if (!controller) opts.insert(opts.begin(), "none");
      m.options = absl::StrJoin(opts, ",");
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) {
    return absl::FailedPreconditionError("no cgroup hierarchy mounted under /sys/fs/cgroup");
  }
  return out;
}

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < bytes; ++i) absl::StrAppend(&s, absl::Hex(rd() & 0xff, absl::kZeroPad2));
  return s;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

// Writes "0" (the writer itself) to each cgroup.procs; in a forked child only.
bool JoinCgroups(const std::vector<std::string>& procs) {
  for (const std::string& p : procs) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::write(fd, "0", 1) == 1;
    ::close(fd);
    if (!ok) return false;
  }
  return true;
}

// Removes cgroup directory `dir` and its children, deepest first, retrying while the kernel
// still reports it busy (tasks of a killed namespace exiting).
void RemoveCgroupTree(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec)) RemoveCgroupTree(e.path().string());
  }
  for (int i = 0; i < 250; ++i) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fprintf(stderr, "booted_systemd: cannot remove cgroup %s: %s\n", dir.c_str(), strerror(errno));
}

// Subtrees and temporary directories left by a test process that died without its
// destructor (killed): their owner's pid is in their name and no longer runs.
void RemoveStaleSubtrees(const std::vector<CgroupMount>& mounts) {
  std::error_code ec;
  std::set<std::string> stale;
  for (const CgroupMount& m : mounts) {
    for (const fs::directory_entry& e : fs::directory_iterator(m.mount_point, ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind(kSubtreePrefix, 0) != 0) continue;
      std::string_view rest = std::string_view(name).substr(strlen(kSubtreePrefix));
      size_t x = rest.find('x');
      if (x == std::string_view::npos) continue;
      pid_t owner = 0;
      auto [end, err] = std::from_chars(rest.data(), rest.data() + x, owner);
      if (err != std::errc() || end != rest.data() + x || owner <= 0) continue;
      if (::kill(owner, 0) == 0 || errno != ESRCH) continue;
      stale.insert(name);
      RemoveCgroupTree(e.path().string());
    }
  }
  for (const fs::directory_entry& e : fs::directory_iterator("/tmp", ec)) {
    std::string name = e.path().filename().string();
    for (const std::string& s : stale) {
      if (name.rfind(absl::StrCat("berth-systemd-", s, "-"), 0) == 0) fs::remove_all(e.path(), ec);
    }
  }
}

// waitpid for at most `timeout`; the status, or nullopt when still running.
std::optional<int> WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const std::string& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

// The pid of host process `pid` in its innermost PID namespace (last NSpid field).
pid_t InnermostPid(pid_t pid) {
  std::string status = ReadAll(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (line.substr(0, 6) != "NSpid:") continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line.substr(6), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.empty()) return 0;
    return static_cast<pid_t>(std::stol(std::string(f.back())));
  }
  return 0;
}

// What the boot child's exit status means (see Boot).
std::string ChildFailure(int status) {
  if (!WIFEXITED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  switch (WEXITSTATUS(status)) {
    case 10:
      return "could not join the test cgroups";
    case 20:
      return "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWCGROUP) failed";
    case 21:
      return "fork of PID 1 failed";
    case 30:
      return "making the mounts private failed";
    case 31:
      return "mounting /proc failed";
    case 32:
      return "mounting a tmpfs on /sys/fs/cgroup failed";
    case 33:
      return "mounting a cgroup hierarchy again failed";
    case 34:
      return "recreating a /sys/fs/cgroup link failed";
    case 35:
      return "binding the test's run directory onto /run failed";
    case 40:
      return "exec of /lib/systemd/systemd failed";
    default:
      return absl::StrCat("systemd exited with status ", WEXITSTATUS(status));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<BootedSystemd>> BootedSystemd::Boot() {
  for (const char* bin : {kSystemd, kNsenter, kBridge}) {
    if (::access(bin, X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(bin, " is not installed"));
    }
  }
  absl::StatusOr<std::vector<CgroupMount>> mounts = HostCgroupMounts();
  if (!mounts.ok()) return mounts.status();
  RemoveStaleSubtrees(*mounts);
  std::unique_ptr<BootedSystemd> sd(new BootedSystemd());
  // "berthtest<pid>x<hex>": the pid of this process tells a later run whether it is stale.
  sd->subtree_ = absl::StrCat(kSubtreePrefix, ::getpid(), "x", RandomHex(4));
  std::string tmpl = absl::StrCat(kTempPrefix, sd->subtree_, "-XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  sd->tmp_ = tmpl;
  const std::string& tmp = sd->tmp_;
  std::error_code ec;
  fs::create_directories(tmp + "/run/systemd/system", ec);
  fs::create_directories(tmp + "/cgroup", ec);
  if (ec) return absl::InternalError("cannot populate " + tmp + ": " + ec.message());
  WriteText(tmp + "/run/systemd/system/" + kTarget,
            "[Unit]\nDescription=berth test target (nothing else is started)\n"
            "DefaultDependencies=no\n");
  // systemd opens /etc/machine-id for writing (to initialise it on a first boot): it gets
  // a copy.
  const std::string machine_id = tmp + "/machine-id";
  WriteText(machine_id, ReadAll("/etc/machine-id"));
  WriteText(tmp + "/console", "");
  WriteText(tmp + "/kmsg", "");

  // The subtree in every hierarchy, and the cgroup_root of links to it.
  std::vector<std::string> procs;
  procs.reserve(mounts->size());
  for (const CgroupMount& m : *mounts) {
    const std::string dir = m.mount_point + "/" + sd->subtree_;
    if (::mkdir(dir.c_str(), 0755) != 0) {
      return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
    }
    sd->hierarchies_.push_back(m.mount_point);
    if (m.name == "cpuset") {
      // A new cpuset has no CPUs nor memory nodes and takes no task until given some.
      for (const char* f : {"/cpuset.cpus", "/cpuset.mems"}) {
        std::string v = ReadAll(m.mount_point + f);
        if (!WriteText(dir + f, v)) return absl::InternalError("cannot set " + dir + f);
      }
    }
    procs.push_back(dir + "/cgroup.procs");
    fs::create_directory_symlink(dir, tmp + "/cgroup/" + m.name, ec);
    if (ec) return absl::InternalError("symlink in " + tmp + "/cgroup: " + ec.message());
  }
  // Links such as cpu -> cpu,cpuacct, in the namespace's /sys/fs/cgroup and in cgroup_root.
  std::vector<std::pair<std::string, std::string>> links;
  for (const fs::directory_entry& e : fs::directory_iterator(kHostCgroupRoot, ec)) {
    if (!e.is_symlink(ec)) continue;
    std::string target = fs::read_symlink(e.path(), ec).string();
    if (ec || target.find('/') != std::string::npos) continue;
    links.emplace_back(e.path().string(), target);
    fs::create_directory_symlink(target, tmp + "/cgroup/" + e.path().filename().string(), ec);
  }

  // Everything the children need, prepared before fork: they only make system calls.
  const std::string run_dir = tmp + "/run";
  const std::string console = tmp + "/console";
  const std::string kmsg = tmp + "/kmsg";
  const std::vector<std::string> args = {kSystemd, std::string("--unit=") + kTarget,
                                         "--log-target=kmsg", "--log-level=info",
                                         "--show-status=no"};
  const std::vector<std::string> env = {"container=berth-test",
                                        "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  std::vector<char*> argv = Argv(args), envp = Argv(env);
  // Device nodes for the new /dev: the host's, bound from a bind of the host's /dev on
  // <tmp>/hostdev (made in the new mount namespace only, and detached once used).
  const std::string host_dev = tmp + "/hostdev";
  fs::create_directory(host_dev, ec);
  std::vector<std::pair<std::string, std::string>> dev_binds = {{"/dev/console", console},
                                                                {"/dev/kmsg", kmsg}};
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
    dev_binds.emplace_back(absl::StrCat("/dev/", node), absl::StrCat(host_dev, "/", node));
  }
  const std::vector<std::pair<std::string, std::string>> dev_links = {
      {"/dev/fd", "/proc/self/fd"},
      {"/dev/stdin", "/proc/self/fd/0"},
      {"/dev/stdout", "/proc/self/fd/1"},
      {"/dev/stderr", "/proc/self/fd/2"}};
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");

  pid_t child = ::fork();
  if (child < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (child == 0) {
    ::close(pipefd[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!JoinCgroups(procs)) ::_exit(10);
    if (::unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                  CLONE_NEWNET) != 0) {
      ::_exit(20);
    }
    pid_t init = ::fork();
    if (init < 0) ::_exit(21);
    if (init == 0) {
      // PID 1 of the new namespace.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(30);
      if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        ::_exit(31);
      }
      // Global sysctls and sysfs stay as they are: systemd would raise fs.file-max, for one.
      // MS_BIND with MS_REMOUNT changes this namespace's mount only, not the filesystem.
      constexpr unsigned long kRo =
          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
      if (::mount("/proc/sys", "/proc/sys", nullptr, MS_BIND, nullptr) != 0 ||
          ::mount(nullptr, "/proc/sys", nullptr, kRo, nullptr) != 0 ||
          ::mount(nullptr, "/sys", nullptr, kRo, nullptr) != 0) {
        ::_exit(36);
      }
      if (::mount("tmpfs", kHostCgroupRoot, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=755") != 0) {
        ::_exit(32);
      }
      for (const CgroupMount& m : *mounts) {
        ::mkdir(m.mount_point.c_str(), 0755);
        if (::mount("cgroup", m.mount_point.c_str(), m.v2 ? "cgroup2" : "cgroup",
                    MS_NOSUID | MS_NODEV | MS_NOEXEC, m.v2 ? nullptr : m.options.c_str()) != 0) {
          ::_exit(33);
        }
      }
      for (const auto& [link, target] : links) {
        if (::symlink(target.c_str(), link.c_str()) != 0) ::_exit(34);
      }
      if (::mount(run_dir.c_str(), "/run", nullptr, MS_BIND, nullptr) != 0) ::_exit(35);
      // A /dev of its own with the usual nodes of the host; its console and kmsg are files
      // of the test (systemd's output and log).
      if (::mount("/dev", host_dev.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
          ::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755") != 0) {
        ::_exit(37);
      }
      for (const auto& [node, source] : dev_binds) {
        int fd = ::open(node.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd >= 0) ::close(fd);
        if (::mount(source.c_str(), node.c_str(), nullptr, MS_BIND, nullptr) != 0) ::_exit(38);
      }
      ::umount2(host_dev.c_str(), MNT_DETACH);
      ::mount(machine_id.c_str(), "/etc/machine-id", nullptr, MS_BIND, nullptr);
      for (const auto& [link, target] : dev_links) ::symlink(target.c_str(), link.c_str());
      ::mkdir("/dev/shm", 01777);
      ::mkdir("/dev/pts", 0755);
      ::execve(kSystemd, argv.data(), envp.data());
      ::_exit(40);
    }
    ssize_t n = ::write(pipefd[1], &init, sizeof(init));
    ::close(pipefd[1]);
    if (n != sizeof(init)) ::kill(init, SIGKILL);
    int st = 0;
    while (::waitpid(init, &st, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  ::close(pipefd[1]);
  sd->child_pid_ = child;
  pollfd pfd{pipefd[0], POLLIN, 0};
  pid_t init = 0;
  if (::poll(&pfd, 1, 10'000) == 1 && ::read(pipefd[0], &init, sizeof(init)) == sizeof(init)) {
    sd->init_pid_ = init;
  }
  ::close(pipefd[0]);
  if (sd->init_pid_ == 0) {
    std::optional<int> st = WaitFor(child, std::chrono::seconds(5));
    sd->child_pid_ = st ? 0 : child;
    return absl::InternalError(absl::StrCat("booting systemd in new namespaces: ",
                                            st ? ChildFailure(*st) : "no PID 1 after 10 s"));
  }
  // The bridge: nsenter joins systemd's PID and mount namespaces and forks, so that the
  // connecting process is one systemd can see; the bridge connects to /run/systemd/private
  // without the Hello of a bus.
  sd->bus_address_ = absl::StrCat("unixexec:path=", kNsenter, ",argv1=--target=", sd->init_pid_,
                                  ",argv2=--pid,argv3=--mount", ",argv4=", kBridge,
                                  ",argv5=--bus-path=unix%3apath%3d/run/systemd/private");

  const auto deadline = std::chrono::steady_clock::now() + kBootTimeout;
  std::string last = "the private socket did not appear";
  for (;;) {
    if (std::optional<int> st = WaitFor(child, std::chrono::milliseconds(0)); st) {
      sd->child_pid_ = 0;
      sd->init_pid_ = 0;
      return absl::InternalError(absl::StrCat(
          "booting systemd in new namespaces: ", ChildFailure(*st), "; its log:\n", sd->Log()));
    }
    if (fs::exists(tmp + "/run/systemd/private", ec)) {
      absl::StatusOr<SystemdBus> bus = SystemdBus::Open(sd->bus_address_);
      if (bus.ok()) {
        absl::StatusOr<std::string> state =
            bus->StringProperty(kSystemdPath, kManagerInterface, "SystemState");
        if (state.ok() && (*state == "running" || *state == "degraded")) return sd;
        last = state.ok() ? "system state " + *state : std::string(state.status().message());
      } else {
        last = std::string(bus.status().message());
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("systemd did not come up within ",
                                                      kBootTimeout.count(), " s (", last,
                                                      "); its log:\n", sd->Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

BootedSystemd::~BootedSystemd() {
  // SIGKILL to the namespace's PID 1 kills every process of the namespace.
  if (init_pid_ > 0) ::kill(init_pid_, SIGKILL);
  if (child_pid_ > 0 && !WaitFor(child_pid_, std::chrono::seconds(10))) {
    ::kill(child_pid_, SIGKILL);
    WaitFor(child_pid_, std::chrono::seconds(5));
  }
  for (pid_t helper : helpers_) {
    if (!WaitFor(helper, std::chrono::seconds(5))) {
      ::kill(helper, SIGKILL);
      WaitFor(helper, std::chrono::seconds(5));
    }
  }
  for (const std::string& h : hierarchies_) RemoveCgroupTree(h + "/" + subtree_);
  std::error_code ec;
  if (!tmp_.empty()) fs::remove_all(tmp_, ec);
}

std::string BootedSystemd::Log() const { return ReadAll(tmp_ + "/kmsg"); }

std::string BootedSystemd::HostCgroupDir(const std::string& mount, const std::string& rel) const {
  return absl::StrCat(kHostCgroupRoot, "/", mount, "/", subtree_, rel);
}

absl::StatusOr<NsProcess> BootedSystemd::Spawn(const std::vector<std::string>& args,
                                               bool ignore_sigterm) const {
  std::vector<std::string> procs;
  for (const std::string& h : hierarchies_) procs.push_back(h + "/" + subtree_ + "/cgroup.procs");
  std::vector<char*> argv = Argv(args);
  int pidns = ::open(absl::StrCat("/proc/", init_pid_, "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC);
  if (pidns < 0) return absl::InternalError(absl::StrCat("open pid ns: ", strerror(errno)));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    ::close(pidns);
    return absl::InternalError("pipe2 failed");
  }
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    if (!JoinCgroups(procs)) ::_exit(2);
    if (::setns(pidns, CLONE_NEWPID) != 0) ::_exit(3);
    pid_t p = ::fork();
    if (p == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (ignore_sigterm) ::signal(SIGTERM, SIG_IGN);
      ::setsid();
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ssize_t n = ::write(pipefd[1], &p, sizeof(p));
    ::close(pipefd[1]);
    if (p <= 0 || n != sizeof(p)) ::_exit(4);
    // Stays its parent (an orphan would go to the host's init, outside the test's tree).
    while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(pidns);
  ::close(pipefd[1]);
  pid_t host_pid = 0;
  bool got = ::read(pipefd[0], &host_pid, sizeof(host_pid)) == sizeof(host_pid);
  ::close(pipefd[0]);
  if (child > 0) helpers_.push_back(child);
  if (child < 0 || !got || host_pid <= 0) {
    int st = -1;
    if (child > 0 && WaitFor(child, std::chrono::seconds(5))) st = 0;
    return absl::InternalError(absl::StrCat("spawning ", args[0],
                                            " in systemd's namespace failed (helper ", child,
                                            st == 0 ? " exited" : " still running", ")"));
  }
  NsProcess p{host_pid, InnermostPid(host_pid)};
  if (p.ns_pid <= 0) return absl::InternalError("no NSpid for the spawned process");
  return p;
}

absl::StatusOr<CommandResult> BootedSystemd::RunInside(const std::vector<std::string>& args,
                                                       const std::string& cwd,
                                                       std::chrono::seconds timeout) const {
  static int counter = 0;
  const std::string out_path = absl::StrCat(tmp_, "/run-inside-", ++counter, ".log");
  std::vector<std::string> procs;
  for (const std::string& h : hierarchies_) procs.push_back(h + "/" + subtree_ + "/cgroup.procs");
  std::vector<char*> argv = Argv(args);
  int fds[3] = {-1, -1, -1};
  const char* kinds[3] = {"cgroup", "mnt", "pid"};
  for (int i = 0; i < 3; ++i) {
    fds[i] =
        ::open(absl::StrCat("/proc/", init_pid_, "/ns/", kinds[i]).c_str(), O_RDONLY | O_CLOEXEC);
  }
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int pipefd[2] = {-1, -1};
  bool ready =
      out >= 0 && fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0 && ::pipe2(pipefd, O_CLOEXEC) == 0;
  auto close_all = [&] {
    for (int fd : {fds[0], fds[1], fds[2], out, pipefd[0], pipefd[1]}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if (!ready) {
    close_all();
    return absl::InternalError("cannot open systemd's namespaces or the output file");
  }
  pid_t child = ::fork();
  if (child == 0) {
    if (!JoinCgroups(procs)) ::_exit(120);
    if (::setns(fds[0], CLONE_NEWCGROUP) != 0) ::_exit(121);
    if (::setns(fds[1], CLONE_NEWNS) != 0) ::_exit(122);
    if (::setns(fds[2], CLONE_NEWPID) != 0) ::_exit(123);
    pid_t p = ::fork();
    if (p == 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      if (::chdir(cwd.c_str()) != 0) ::_exit(124);
      ::execve(argv[0], argv.data(), environ);
      ::_exit(127);
    }
    if (::write(pipefd[1], &p, sizeof(p)) != sizeof(p)) ::_exit(125);
    int st = 0;
    while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 126);
  }
  pid_t inner = 0;
  ::close(pipefd[1]);
  pipefd[1] = -1;
  if (child > 0 && ::read(pipefd[0], &inner, sizeof(inner)) != sizeof(inner)) inner = 0;
  close_all();
  if (child < 0) return absl::InternalError("fork failed");
  CommandResult res;
  std::optional<int> st = WaitFor(child, timeout);
  if (!st) {
    if (inner > 0) ::kill(inner, SIGKILL);
    ::kill(child, SIGKILL);
    WaitFor(child, std::chrono::seconds(5));
  } else if (WIFEXITED(*st)) {
    res.exit_code = WEXITSTATUS(*st);
  }
  res.output = ReadAll(out_path);
  return res;
}

}  // namespace berth::cgroup_systemd::testing
