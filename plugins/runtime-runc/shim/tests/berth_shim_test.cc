// SPDX-License-Identifier: Apache-2.0
// Integration tests of berth-shim: a real shim started with the shim v2 `start` command,
// driven over ttrpc, running busybox containers with the host's runc. Root only; every
// test uses a private runc --root and BERTH_SHIM_STATE_DIR under its own temp dir, and
// cleans up what it started (shim pids from the shim's pid file, `runc delete --force`).
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/ttrpc/client.h"
#include "berth/ttrpc/shim.h"
#include "google/protobuf/empty.pb.h"
#include "gtest/gtest.h"
#include "shim/berth/v1/shim.pb.h"
#include "shim/runc/options.pb.h"
#include "shim/task/v2/shim.pb.h"
#include "tests/support/bundle.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace berth::shim {
namespace {

namespace fs = std::filesystem;
namespace task = containerd::task::v2;
using berth::testing::Bundle;
using berth::testing::BundleOptions;
using google::protobuf::Empty;

// The shim under test; BERTH_SHIM_TEST_BINARY overrides the build's (e.g. another link).
const char* const kShimBinary = [] {
  const char* env = std::getenv("BERTH_SHIM_TEST_BINARY");
  return env != nullptr && *env != '\0' ? env : BERTH_SHIM_BINARY;
}();
constexpr char kRunc[] = "/usr/bin/runc";
constexpr char kTask[] = "containerd.task.v2.Task";
constexpr char kShim[] = "berth.shim.v1.Shim";
constexpr char kSandboxAnnotation[] = "io.kubernetes.cri.sandbox-id";

struct RunResult {
  int exit_code = -1;
  std::string out;
};

// Runs a command with extra environment in `cwd` (the SDK's runner); stdout captured,
// stderr shown unless `quiet`. exit_code: the exit status (128+N for signal N), -1 when the
// command could not run or outlived `timeout` (it is killed then).
RunResult RunCmd(const std::vector<std::string>& args, const std::string& cwd,
                 const std::vector<std::string>& extra_env, absl::Duration timeout,
                 bool quiet = false) {
  RunResult result;
  absl::StatusOr<berth::ttrpc::CommandResult> r =
      berth::ttrpc::RunCommand(args, cwd.empty() ? "." : cwd, extra_env, timeout);
  if (!r.ok()) return result;
  if (!quiet) std::cerr << r->err;
  result.exit_code = r->exit_status;
  result.out = std::move(r->out);
  return result;
}

// A connected unix stream socket to `path`, or -1.
int ConnectUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything `fd` delivers until EOF (or 10 s of silence); closes it.
std::string ReadToEof(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got;
}

// State letter and parent of a process from /proc/<pid>/stat.
bool ProcStat(pid_t pid, char* state, pid_t* ppid) {
  std::string stat = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(stat.substr(close + 2));
  rest >> *state >> *ppid;
  return true;
}

// Running (a zombie waiting for this host's init to reap it counts as gone).
bool ProcessAlive(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  return pid > 0 && ::kill(pid, 0) == 0 && ProcStat(pid, &state, &ppid) && state != 'Z';
}

std::vector<pid_t> ChildrenOf(pid_t parent, bool zombies_only) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    pid_t pid = std::atoi(entry.path().filename().c_str());
    if (pid <= 0) continue;
    char state = 0;
    pid_t ppid = 0;
    if (!ProcStat(pid, &state, &ppid) || ppid != parent) continue;
    if (!zombies_only || state == 'Z') out.push_back(pid);
  }
  return out;
}

struct LogEntry {
  std::string time;
  std::string stream;
  char tag = 0;
  std::string message;
};

// Parses a CRI log; returns false on a malformed line.
bool ParseCriLog(const std::string& text, std::vector<LogEntry>* entries, std::string* error) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      *error = "unterminated last line";
      return false;
    }
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    size_t s1 = line.find(' ');
    size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos || s2 + 2 > line.size() ||
        (line.size() > s2 + 2 && line[s2 + 2] != ' ')) {
      *error = absl::StrCat("malformed line: ", std::string(line.substr(0, 100)));
      return false;
    }
    LogEntry e;
    e.time = std::string(line.substr(0, s1));
    e.stream = std::string(line.substr(s1 + 1, s2 - s1 - 1));
    e.tag = line[s2 + 1];
    e.message = line.size() > s2 + 3 ? std::string(line.substr(s2 + 3)) : std::string();
    if ((e.tag != 'P' && e.tag != 'F') || (e.stream != "stdout" && e.stream != "stderr") ||
        !absl::EndsWith(e.time, "Z")) {
      *error = absl::StrCat("malformed line: ", std::string(line.substr(0, 100)));
      return false;
    }
    entries->push_back(std::move(e));
  }
  return true;
}

// The stream content a CRI log stands for (F entries end a line).
std::string Reassemble(const std::vector<LogEntry>& entries, const std::string& stream) {
  std::string out;
  for (const auto& e : entries) {
    if (e.stream != stream) continue;
    out += e.message;
    if (e.tag == 'F') out += '\n';
  }
  return out;
}

class ShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runc, mounts, cgroups)";
    if (::access(kRunc, X_OK) != 0) GTEST_SKIP() << kRunc << " not installed";
    if (::access(berth::testing::kHostBusybox, X_OK) != 0) {
      GTEST_SKIP() << "busybox-static not installed";
    }
    ASSERT_FALSE(tmp_.path().empty());
    state_dir_ = tmp_.File("s");
    runc_root_ = tmp_.File("runc");
    fs::create_directories(runc_root_);
  }

  void TearDown() override {
    clients_.clear();
    for (const std::string& id : container_ids_) {
      RunCmd({kRunc, "--root", runc_root_, "delete", "--force", id}, "", {}, absl::Seconds(20),
             /*quiet=*/true);
    }
    KillShims();
    for (auto& b : bundles_) ::umount2(b->rootfs().c_str(), MNT_DETACH);
    bundles_.clear();
  }

  void KillShims() {
    if (state_dir_.empty() || !fs::exists(state_dir_)) return;
    for (const auto& entry : fs::directory_iterator(state_dir_)) {
      fs::path pid_file = entry.path() / "pid";
      if (!fs::is_directory(entry.path()) || !fs::exists(pid_file)) continue;
      pid_t pid = std::atoi(berth::testing::ReadFile(pid_file).c_str());
      if (pid > 0 && ProcessAlive(pid)) {
        std::string cmdline = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
        if (cmdline.find("serve") != std::string::npos) ::kill(pid, SIGKILL);
      }
    }
  }

  Bundle* MakeBundle(const std::string& what, const BundleOptions& options) {
    bundles_.push_back(std::make_unique<Bundle>(what, options));
    Bundle* b = bundles_.back().get();
    EXPECT_TRUE(b->ok()) << b->error();
    return b;
  }

  std::vector<std::string> ShimEnv() const {
    return {absl::StrCat("BERTH_SHIM_STATE_DIR=", state_dir_)};
  }

  // `berth-shim start` in the bundle; returns the address it printed.
  std::string StartShim(const Bundle& b, const std::string& id) {
    RunResult r = RunCmd({kShimBinary, "-namespace", "berth-test", "-address", "/run/none.sock",
                          "-publish-binary", "/bin/true", "-id", id, "start"},
                         b.str(), ShimEnv(), absl::Seconds(20));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::string address(absl::StripAsciiWhitespace(r.out));
    EXPECT_TRUE(absl::StartsWith(address, "unix://")) << address;
    return address;
  }

  ttrpc::Client* Connect(const std::string& address) {
    auto c = ttrpc::Client::Connect(address, absl::Seconds(10));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    clients_.push_back(std::move(*c));
    return clients_.back().get();
  }

  pid_t ShimPid(const std::string& address) {
    std::string sock = address.substr(strlen("unix://"));
    std::string dir = sock.substr(0, sock.size() - strlen(".sock"));
    return std::atoi(berth::testing::ReadFile(dir + "/pid").c_str());
  }

  std::string ShimDir(const std::string& address) {
    std::string sock = address.substr(strlen("unix://"));
    return sock.substr(0, sock.size() - strlen(".sock"));
  }

  google::protobuf::Any RuncOptions(const std::string& binary = "") {
    containerd::runc::v1::Options o;
    o.set_root(runc_root_);
    if (!binary.empty()) o.set_binary_name(binary);
    google::protobuf::Any any;
    any.set_type_url("containerd.runc.v1.Options");
    any.set_value(o.SerializeAsString());
    return any;
  }

  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Call(ttrpc::Client* c, const char* service, const char* method,
                            const Req& req, absl::Duration timeout = absl::Seconds(60)) {
    return c->Call<Req, Resp>(service, method, req, absl::Now() + timeout);
  }

  absl::StatusOr<task::CreateTaskResponse> Create(ttrpc::Client* c, const std::string& id,
                                                  const Bundle& b, const std::string& out = "",
                                                  const std::string& err = "",
                                                  bool terminal = false,
                                                  const std::string& binary = "",
                                                  const std::string& in = "") {
    container_ids_.push_back(id);
    task::CreateTaskRequest req;
    req.set_id(id);
    req.set_bundle(b.str());
    req.set_stdout(out);
    req.set_stderr(err);
    req.set_stdin(in);
    req.set_terminal(terminal);
    *req.mutable_options() = RuncOptions(binary);
    return Call<task::CreateTaskResponse>(c, kTask, "Create", req);
  }

  absl::Status Start(ttrpc::Client* c, const std::string& id, const std::string& exec_id = "") {
    task::StartRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return Call<task::StartResponse>(c, kTask, "Start", req).status();
  }

  absl::StatusOr<task::WaitResponse> Wait(ttrpc::Client* c, const std::string& id,
                                          const std::string& exec_id = "",
                                          absl::Duration timeout = absl::Seconds(120)) {
    task::WaitRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return Call<task::WaitResponse>(c, kTask, "Wait", req, timeout);
  }

  absl::StatusOr<task::DeleteResponse> Delete(ttrpc::Client* c, const std::string& id,
                                              const std::string& exec_id = "") {
    task::DeleteRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return Call<task::DeleteResponse>(c, kTask, "Delete", req);
  }

  absl::Status Kill(ttrpc::Client* c, const std::string& id, int sig, bool all = false) {
    task::KillRequest req;
    req.set_id(id);
    req.set_signal(sig);
    req.set_all(all);
    return Call<Empty>(c, kTask, "Kill", req).status();
  }

  absl::StatusOr<berth::shim::v1::InfoResponse> Info(ttrpc::Client* c, const std::string& id,
                                                     const std::string& exec_id = "") {
    berth::shim::v1::InfoRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return Call<berth::shim::v1::InfoResponse>(c, kShim, "Info", req);
  }

  // A started container with `args`; returns the client.
  ttrpc::Client* RunContainer(const std::string& id, BundleOptions options,
                              const std::string& out = "", const std::string& err = "",
                              bool terminal = false, std::string* address_out = nullptr) {
    options.terminal = terminal;
    Bundle* b = MakeBundle(id, options);
    std::string address = StartShim(*b, id);
    if (address_out != nullptr) *address_out = address;
    ttrpc::Client* c = Connect(address);
    if (c == nullptr) return nullptr;
    auto created = Create(c, id, *b, out, err, terminal);
    EXPECT_TRUE(created.ok()) << created.status();
    EXPECT_TRUE(Start(c, id).ok());
    return c;
  }

  berth::testing::TempDir tmp_{"shim"};
  std::string state_dir_;
  std::string runc_root_;
  std::vector<std::unique_ptr<Bundle>> bundles_;
  std::vector<std::string> container_ids_;
  std::vector<std::unique_ptr<ttrpc::Client>> clients_;
};

BundleOptions Args(std::vector<std::string> args) {
  BundleOptions o;
  o.args = std::move(args);
  return o;
}

TEST_F(ShimTest, VersionFlag) {
  RunResult r = RunCmd({kShimBinary, "-v"}, "", {}, absl::Seconds(5));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "berth-shim")) << r.out;
}

TEST_F(ShimTest, SameSandboxSameAddress) {
  BundleOptions o;
  o.annotations[kSandboxAnnotation] = "pod-a";
  Bundle* a1 = MakeBundle("a1", o);
  Bundle* a2 = MakeBundle("a2", o);
  o.annotations[kSandboxAnnotation] = "pod-b";
  Bundle* b1 = MakeBundle("b1", o);
  std::string first = StartShim(*a1, "a1");
  std::string second = StartShim(*a2, "a2");
  std::string other = StartShim(*b1, "b1");
  EXPECT_EQ(first, second);
  EXPECT_NE(first, other);
  pid_t pid = ShimPid(first);
  EXPECT_TRUE(ProcessAlive(pid));
  ttrpc::Client* c = Connect(first);
  ASSERT_NE(c, nullptr);
  auto connected = Call<task::ConnectResponse>(c, kTask, "Connect", task::ConnectRequest());
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_EQ(static_cast<pid_t>(connected->shim_pid()), pid);
}

TEST_F(ShimTest, CreateStartWaitExitCode) {
  std::string address;
  ttrpc::Client* c = RunContainer("exit3", Args({"sh", "-c", "exit 3"}), "", "", false, &address);
  ASSERT_NE(c, nullptr);
  auto waited = Wait(c, "exit3");
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 3u);
  EXPECT_GT(waited->exited_at().seconds(), 0);
  // The durable record exists by the time Wait answered.
  std::string record = berth::testing::ReadFile(ShimDir(address) + "/exits/exit3");
  auto j = nlohmann::json::parse(record, nullptr, false);
  ASSERT_TRUE(j.is_object()) << record;
  EXPECT_EQ(j["exit_status"], 3);
  task::StateRequest sreq;
  sreq.set_id("exit3");
  auto state = Call<task::StateResponse>(c, kTask, "State", sreq);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status(), containerd::v1::types::STOPPED);
  EXPECT_EQ(state->exit_status(), 3u);
  auto deleted = Delete(c, "exit3");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 3u);
  EXPECT_EQ(Call<task::StateResponse>(c, kTask, "State", sreq).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ShimTest, KillSigtermGives143) {
  BundleOptions o = Args({"sleep", "1000"});
  o.host_pid = true;  // a pid-namespace init ignores SIGTERM without a handler
  ttrpc::Client* c = RunContainer("term", o);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Kill(c, "term", SIGTERM).ok());
  auto waited = Wait(c, "term", "", absl::Seconds(20));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 143u);
  // Killing a finished process: NOT_FOUND.
  EXPECT_EQ(Kill(c, "term", SIGTERM).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Delete(c, "term").ok());
}

TEST_F(ShimTest, KillAllInPidNamespace) {
  ttrpc::Client* c = RunContainer("killall", Args({"sh", "-c", "sleep 1000 & wait"}));
  ASSERT_NE(c, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(Kill(c, "killall", SIGKILL, /*all=*/true).ok());
  auto waited = Wait(c, "killall", "", absl::Seconds(20));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 137u);
}

TEST_F(ShimTest, ReapsOrphans) {
  BundleOptions o =
      Args({"sh", "-c", "for i in 1 2 3 4 5 6; do (sleep 0.2 &); done; sleep 2; exit 0"});
  o.host_pid = true;  // orphans are reparented to the shim, the subreaper
  std::string address;
  ttrpc::Client* c = RunContainer("orphans", o, "", "", false, &address);
  ASSERT_NE(c, nullptr);
  const pid_t shim = ShimPid(address);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_TRUE(ChildrenOf(shim, /*zombies_only=*/true).empty());
  auto waited = Wait(c, "orphans", "", absl::Seconds(20));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(ChildrenOf(shim, /*zombies_only=*/true).empty());
}

TEST_F(ShimTest, OomKilled) {
  BundleOptions o = Args({"dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"});
  o.memory_limit_bytes = 16 << 20;
  o.cgroups_path = absl::StrCat("/berth-shim-test-oom-", ::getpid());
  ttrpc::Client* c = RunContainer("oom", o);
  ASSERT_NE(c, nullptr);
  auto waited = Wait(c, "oom", "", absl::Seconds(60));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 137u);
  auto info = Info(c, "oom");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->exited());
  EXPECT_TRUE(info->oom_killed());
  EXPECT_EQ(info->exit_status(), 137u);
}

TEST_F(ShimTest, CriLog100MegabytesIntact) {
  const std::string log = tmp_.File("big.log");
  const std::string line(97, 'x');
  constexpr size_t kTotal = 100'000'000;
  ttrpc::Client* c =
      RunContainer("big", Args({"sh", "-c", absl::StrCat("yes ", line, " | head -c ", kTotal)}),
                   "crilog://" + log, "crilog://" + log);
  ASSERT_NE(c, nullptr);
  auto waited = Wait(c, "big", "", absl::Seconds(120));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 0u);
  std::vector<LogEntry> entries;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &entries, &error)) << error;
  std::string out = Reassemble(entries, "stdout");
  ASSERT_EQ(out.size(), kTotal);
  size_t lines = 0;
  for (absl::string_view l : absl::StrSplit(out, '\n')) {
    if (l.size() != line.size()) {
      EXPECT_LT(l.size(), line.size());  // only the cut last line is shorter
      EXPECT_EQ(l, absl::string_view(line).substr(0, l.size()));
    } else {
      ++lines;
    }
  }
  EXPECT_EQ(lines, kTotal / (line.size() + 1));
}

TEST_F(ShimTest, LongLinesSplitIntoPartials) {
  const std::string log = tmp_.File("long.log");
  ttrpc::Client* c = RunContainer("long",
                                  Args({"sh", "-c",
                                        "head -c 40000 /dev/zero | tr '\\0' a; echo; echo short; "
                                        "head -c 20000 /dev/zero | tr '\\0' b >&2; echo >&2"}),
                                  "crilog://" + log, "crilog://" + log);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Wait(c, "long").ok());
  std::vector<LogEntry> entries;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &entries, &error)) << error;
  std::vector<std::pair<char, size_t>> out, err;
  for (const auto& e : entries) {
    (e.stream == "stdout" ? out : err).emplace_back(e.tag, e.message.size());
  }
  std::vector<std::pair<char, size_t>> want_out = {
      {'P', 16384}, {'P', 16384}, {'F', 40000 - 2 * 16384}, {'F', 5}};
  std::vector<std::pair<char, size_t>> want_err = {{'P', 16384}, {'F', 20000 - 16384}};
  EXPECT_EQ(out, want_out);
  EXPECT_EQ(err, want_err);
  EXPECT_EQ(Reassemble(entries, "stdout"), std::string(40000, 'a') + "\nshort\n");
}

TEST_F(ShimTest, ReopenLogWhileWriting) {
  const std::string log = tmp_.File("rot.log");
  constexpr int kLines = 300000;
  ttrpc::Client* c =
      RunContainer("rot", Args({"sh", "-c", absl::StrCat("sleep 0.3; seq 1 ", kLines)}),
                   "crilog://" + log, "crilog://" + log);
  ASSERT_NE(c, nullptr);
  // Rotate as soon as output flows.
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until && (!fs::exists(log) || fs::file_size(log) < 4096)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  fs::rename(log, log + ".1");
  berth::shim::v1::ReopenLogRequest req;
  req.set_id("rot");
  auto reopened = Call<Empty>(c, kShim, "ReopenLog", req);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_TRUE(Wait(c, "rot").ok());
  std::vector<LogEntry> first, second;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log + ".1"), &first, &error)) << error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &second, &error)) << error;
  EXPECT_FALSE(first.empty());
  EXPECT_FALSE(second.empty()) << "all output landed before the reopen; test is too slow";
  int next = 1;
  for (const auto* part : {&first, &second}) {
    for (const auto& e : *part) {
      ASSERT_EQ(e.tag, 'F') << e.message;  // no line split between files
      ASSERT_EQ(e.message, std::to_string(next));
      ++next;
    }
  }
  EXPECT_EQ(next, kLines + 1);
}

TEST_F(ShimTest, TerminalContainer) {
  const std::string log = tmp_.File("tty.log");
  ttrpc::Client* c = RunContainer("tty", Args({"sh", "-c", "tty; echo hello-tty; exit 4"}),
                                  "crilog://" + log, "", /*terminal=*/true);
  ASSERT_NE(c, nullptr);
  auto waited = Wait(c, "tty");
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 4u);
  std::vector<LogEntry> entries;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &entries, &error)) << error;
  std::string out = Reassemble(entries, "stdout");
  EXPECT_TRUE(absl::StrContains(out, "/dev/pts/")) << out;
  EXPECT_TRUE(absl::StrContains(out, "hello-tty\n")) << out;
}

TEST_F(ShimTest, ExecStartWait) {
  ttrpc::Client* c = RunContainer("ex", Args({"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  const std::string out = tmp_.File("exec.out");
  task::ExecProcessRequest req;
  req.set_id("ex");
  req.set_exec_id("e1");
  req.set_stdout("file://" + out);
  req.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "echo exec-out; exit 5"}).dump());
  ASSERT_TRUE(Call<Empty>(c, kTask, "Exec", req).ok());
  EXPECT_EQ(Call<Empty>(c, kTask, "Exec", req).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(Start(c, "ex", "e1").ok());
  auto waited = Wait(c, "ex", "e1");
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 5u);
  EXPECT_EQ(berth::testing::ReadFile(out), "exec-out\n");
  auto deleted = Delete(c, "ex", "e1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 5u);
  EXPECT_EQ(Wait(c, "ex", "e1").status().code(), absl::StatusCode::kNotFound);
  // Pids lists the container's processes.
  task::PidsRequest preq;
  preq.set_id("ex");
  auto pids = Call<task::PidsResponse>(c, kTask, "Pids", preq);
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_GE(pids->processes_size(), 1);
  // Running container: Delete is refused.
  EXPECT_EQ(Delete(c, "ex").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Kill(c, "ex", SIGKILL).ok());
  auto done = Wait(c, "ex");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->exit_status(), 137u);
}

TEST_F(ShimTest, ExecSyncOutputAndTimeouts) {
  ttrpc::Client* c = RunContainer("es", Args({"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  berth::shim::v1::ExecSyncRequest req;
  req.set_id("es");
  req.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "cat; echo err >&2; exit 2"}).dump());
  req.set_stdin("from-stdin\n");
  req.set_timeout_ms(10000);
  auto r = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code(), 2);
  EXPECT_EQ(r->stdout(), "from-stdin\n");
  EXPECT_EQ(r->stderr(), "err\n");
  EXPECT_FALSE(r->timed_out());

  // A background child keeps the pipes open: the call still returns promptly.
  req.set_stdin("");
  req.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "sleep 97 & echo hi"}).dump());
  req.set_timeout_ms(8000);
  absl::Time t0 = absl::Now();
  r = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(6));
  EXPECT_TRUE(r->drain_cut_short() || r->timed_out());
  EXPECT_EQ(r->stdout(), "hi\n");

  // The deadline.
  req.mutable_spec()->set_value(berth::testing::MakeOciProcess({"sleep", "98"}).dump());
  req.set_timeout_ms(500);
  t0 = absl::Now();
  r = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(4));
  EXPECT_TRUE(r->timed_out());

  // Both runs left nothing behind in the container: the process groups were killed.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  req.mutable_spec()->set_value(berth::testing::MakeOciProcess({"ps", "-o", "args"}).dump());
  req.set_timeout_ms(10000);
  r = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(absl::StrContains(r->stdout(), "sleep 97")) << r->stdout();
  EXPECT_FALSE(absl::StrContains(r->stdout(), "sleep 98")) << r->stdout();
}

TEST_F(ShimTest, RuntimeErrorsOfExecAreSurfaced) {
  ttrpc::Client* c = RunContainer("exerr", Args({"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  task::ExecProcessRequest req;
  req.set_id("exerr");
  req.set_exec_id("bad");
  req.mutable_spec()->set_value(berth::testing::MakeOciProcess({"/no/such/binary"}).dump());
  ASSERT_TRUE(Call<Empty>(c, kTask, "Exec", req).ok());
  absl::Status started = Start(c, "exerr", "bad");
  ASSERT_FALSE(started.ok());
  EXPECT_TRUE(absl::StrContains(started.message(), "/no/such/binary")) << started;
  EXPECT_TRUE(absl::StrContains(started.message(), "exec")) << started;
  // The failed exec is stopped and can be deleted.
  auto waited = Wait(c, "exerr", "bad", absl::Seconds(5));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_TRUE(Delete(c, "exerr", "bad").ok());
  // ExecSync: the runtime's message comes back on stderr with a failing exit code.
  berth::shim::v1::ExecSyncRequest es;
  es.set_id("exerr");
  es.mutable_spec()->set_value(berth::testing::MakeOciProcess({"/no/such/binary"}).dump());
  es.set_timeout_ms(10000);
  auto r = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", es);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->exit_code(), 0);
  EXPECT_TRUE(absl::StrContains(r->stderr(), "/no/such/binary")) << r->stderr();
}

TEST_F(ShimTest, ResizePty) {
  const std::string log = tmp_.File("resize.log");
  ttrpc::Client* c = RunContainer("resize", Args({"sh", "-c", "sleep 0.5; stty size"}),
                                  "crilog://" + log, "", /*terminal=*/true);
  ASSERT_NE(c, nullptr);
  task::ResizePtyRequest req;
  req.set_id("resize");
  req.set_width(100);
  req.set_height(40);
  auto resized = Call<Empty>(c, kTask, "ResizePty", req);
  ASSERT_TRUE(resized.ok()) << resized.status();
  ASSERT_TRUE(Wait(c, "resize").ok());
  std::vector<LogEntry> entries;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &entries, &error)) << error;
  EXPECT_EQ(Reassemble(entries, "stdout"), "40 100\n");
}

TEST_F(ShimTest, UnknownIdsAreNotFound) {
  Bundle* b = MakeBundle("nf", Args({"true"}));
  std::string address = StartShim(*b, "nf");
  ttrpc::Client* c = Connect(address);
  ASSERT_NE(c, nullptr);
  task::StateRequest s;
  s.set_id("nope");
  EXPECT_EQ(Call<task::StateResponse>(c, kTask, "State", s).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Wait(c, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Kill(c, "nope", SIGKILL).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Delete(c, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Info(c, "nope").status().code(), absl::StatusCode::kNotFound);
  task::ExecProcessRequest e;
  e.set_id("nope");
  e.set_exec_id("x");
  e.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
  EXPECT_EQ(Call<Empty>(c, kTask, "Exec", e).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShimTest, IdsThatWouldNameOtherFilesAreInvalid) {
  Bundle* b = MakeBundle("badid", Args({"sleep", "1000"}));
  ttrpc::Client* c = Connect(StartShim(*b, "badid"));
  ASSERT_NE(c, nullptr);
  for (const std::string& id :
       std::vector<std::string>{"..", ".", "a/../../x", std::string(200, 'a')}) {
    auto created = Create(c, id, *b);
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument) << id;
  }
  // A relative bundle is refused too.
  task::CreateTaskRequest rel;
  rel.set_id("badid-rel");
  rel.set_bundle("relative/bundle");
  EXPECT_EQ(Call<task::CreateTaskResponse>(c, kTask, "Create", rel).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Exec ids name exit records: no '/', no "..".
  ASSERT_TRUE(Create(c, "badid", *b).ok());
  for (const std::string exec_id : {"..", "x/../../../y", ""}) {
    task::ExecProcessRequest e;
    e.set_id("badid");
    e.set_exec_id(exec_id);
    e.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
    EXPECT_EQ(Call<Empty>(c, kTask, "Exec", e).status().code(), absl::StatusCode::kInvalidArgument)
        << exec_id;
  }
}

TEST_F(ShimTest, ExecInStoppedContainerIsFailedPrecondition) {
  ttrpc::Client* c = RunContainer("stopped", Args({"true"}));
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Wait(c, "stopped").ok());
  task::ExecProcessRequest e;
  e.set_id("stopped");
  e.set_exec_id("x");
  e.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
  EXPECT_EQ(Call<Empty>(c, kTask, "Exec", e).status().code(),
            absl::StatusCode::kFailedPrecondition);
  berth::shim::v1::ExecSyncRequest s;
  s.set_id("stopped");
  s.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
  EXPECT_EQ(Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", s).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShimTest, MissingRuntimeBinaryNamesThePath) {
  Bundle* b = MakeBundle("nobin", Args({"true"}));
  ttrpc::Client* c = Connect(StartShim(*b, "nobin"));
  ASSERT_NE(c, nullptr);
  auto created = Create(c, "nobin", *b, "", "", false, "/nonexistent/bin/runc");
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(created.status().message(), "/nonexistent/bin/runc"))
      << created.status();
}

TEST_F(ShimTest, InvalidSpecSurfacesRuntimeMessage) {
  Bundle* b = MakeBundle("badspec", Args({"true"}));
  b->spec()["process"]["cwd"] = "relative/dir";
  ASSERT_EQ(b->WriteConfig(), "");
  ttrpc::Client* c = Connect(StartShim(*b, "badspec"));
  ASSERT_NE(c, nullptr);
  auto created = Create(c, "badspec", *b);
  ASSERT_FALSE(created.ok());
  EXPECT_TRUE(absl::StrContains(created.status().message(), "absolute")) << created.status();
  EXPECT_TRUE(absl::StrContains(created.status().message(), "create")) << created.status();
  // Nothing is left registered.
  task::StateRequest s;
  s.set_id("badspec");
  EXPECT_EQ(Call<task::StateResponse>(c, kTask, "State", s).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ShimTest, AttachStdinAndOutput) {
  Bundle* b = MakeBundle("att", Args({"cat"}));
  ttrpc::Client* c = Connect(StartShim(*b, "att"));
  ASSERT_NE(c, nullptr);
  auto created = Create(c, "att", *b, "", "", false, "", "attach:");
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(Start(c, "att").ok());
  berth::shim::v1::AttachRequest areq;
  areq.set_id("att");
  auto attached = Call<berth::shim::v1::AttachResponse>(c, kShim, "Attach", areq);
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_TRUE(attached->stdin());
  std::string path = attached->address();
  if (absl::StartsWith(path, "unix://")) path = path.substr(7);
  int fd = ConnectUnix(path);
  ASSERT_GE(fd, 0) << path;
  auto frame = [](uint8_t type, const std::string& payload) {
    std::string f(1, static_cast<char>(type));
    uint32_t len = htonl(static_cast<uint32_t>(payload.size()));
    f.append(reinterpret_cast<const char*>(&len), 4);
    return f + payload;
  };
  std::string send = frame(1, "ping\n") + frame(5, "");
  ASSERT_EQ(::write(fd, send.data(), send.size()), static_cast<ssize_t>(send.size()));
  std::string got = ReadToEof(fd);
  EXPECT_EQ(got, frame(2, "ping\n") + frame(6, std::string("\0\0\0\0", 4)));
  auto waited = Wait(c, "att");
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(waited->exit_status(), 0u);
}

TEST_F(ShimTest, AttachToExecBeforeStart) {
  ttrpc::Client* c = RunContainer("attexec", Args({"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  task::ExecProcessRequest e;
  e.set_id("attexec");
  e.set_exec_id("x");
  e.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "echo out; echo err >&2; exit 9"}).dump());
  ASSERT_TRUE(Call<Empty>(c, kTask, "Exec", e).ok());
  berth::shim::v1::AttachRequest areq;
  areq.set_id("attexec");
  areq.set_exec_id("x");
  auto attached = Call<berth::shim::v1::AttachResponse>(c, kShim, "Attach", areq);
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_FALSE(attached->stdin());
  std::string path = attached->address().substr(strlen("unix://"));
  int fd = ConnectUnix(path);
  ASSERT_GE(fd, 0) << path;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // accepted by the shim
  ASSERT_TRUE(Start(c, "attexec", "x").ok());
  std::string got = ReadToEof(fd);
  // Frames: stdout "out\n", stderr "err\n" (either order), then exit 9.
  std::string out_frame = std::string("\x02\0\0\0\x04", 5) + "out\n";
  std::string err_frame = std::string("\x03\0\0\0\x04", 5) + "err\n";
  std::string exit_frame = std::string("\x06\0\0\0\x04\0\0\0\x09", 9);
  EXPECT_TRUE(got == out_frame + err_frame + exit_frame ||
              got == err_frame + out_frame + exit_frame)
      << got.size();
  auto waited = Wait(c, "attexec", "x");
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(waited->exit_status(), 9u);
}

TEST_F(ShimTest, FifoStdinAndStdout) {
  const std::string in = tmp_.File("in.fifo");
  const std::string out = tmp_.File("out.fifo");
  ASSERT_EQ(::mkfifo(in.c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(out.c_str(), 0600), 0);
  // The client's ends: like containerd, open the read side before the task exists.
  int out_fd = ::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(out_fd, 0);
  Bundle* b = MakeBundle("fifo", Args({"sh", "-c", "cat; echo done"}));
  ttrpc::Client* c = Connect(StartShim(*b, "fifo"));
  ASSERT_NE(c, nullptr);
  auto created = Create(c, "fifo", *b, out, "", false, "", in);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(Start(c, "fifo").ok());
  // Nothing has been written yet: the container must still be waiting for input.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  berth::shim::v1::InfoRequest ireq;
  ireq.set_id("fifo");
  auto info = Call<berth::shim::v1::InfoResponse>(c, kShim, "Info", ireq);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->exited()) << "stdin reached EOF before any writer came";
  int in_fd = ::open(in.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(in_fd, 0);
  ASSERT_EQ(::write(in_fd, "abc\n", 4), 4);
  ::close(in_fd);  // EOF for cat
  auto waited = Wait(c, "fifo", "", absl::Seconds(20));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_status(), 0u);
  // The output FIFO ends (EOF) once everything was written, before any Delete: a reader
  // knows the output is complete.
  std::string got;
  bool eof = false;
  char buf[256];
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (!eof && absl::Now() < until) {
    pollfd p{out_fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(out_fd, buf, sizeof(buf));
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n == 0) eof = true;
  }
  ::close(out_fd);
  EXPECT_EQ(got, "abc\ndone\n");
  EXPECT_TRUE(eof) << "the shim keeps the output FIFO open after the process ended";
}

// The client writes its stdin into the FIFO, closes it and calls CloseIO at once (as berthd's
// exec does): what is still in the FIFO reaches the process before its stdin is closed.
TEST_F(ShimTest, CloseIOAfterTheWriterLeftLosesNothing) {
  const std::string in = tmp_.File("in2.fifo");
  const std::string out = tmp_.File("out2.fifo");
  ASSERT_EQ(::mkfifo(in.c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(out.c_str(), 0600), 0);
  int out_fd = ::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(out_fd, 0);
  // The process reads nothing for a while: its stdin pipe and the shim's queue (1 MiB) fill
  // up and the rest waits in the FIFO.
  Bundle* b = MakeBundle("drain", Args({"sh", "-c", "sleep 1; wc -c"}));
  ttrpc::Client* c = Connect(StartShim(*b, "drain"));
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Create(c, "drain", *b, out, "", false, "", in).ok());
  ASSERT_TRUE(Start(c, "drain").ok());
  int in_fd = ::open(in.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(in_fd, 0);
  // Less than pipe + queue + FIFO can hold: the writes complete while the process sleeps.
  const std::string data(1160000, 'x');
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(in_fd, data.data() + written, data.size() - written);
    ASSERT_GT(n, 0);
    written += static_cast<size_t>(n);
  }
  ::close(in_fd);
  task::CloseIORequest close_req;
  close_req.set_id("drain");
  close_req.set_stdin(true);
  ASSERT_TRUE(Call<Empty>(c, kTask, "CloseIO", close_req).ok());
  auto waited = Wait(c, "drain", "", absl::Seconds(20));
  ASSERT_TRUE(waited.ok()) << waited.status();
  std::string got;
  char buf[256];
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (got.find('\n') == std::string::npos && absl::Now() < until) {
    pollfd p{out_fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(out_fd, buf, sizeof(buf));
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n == 0) break;
  }
  ::close(out_fd);
  EXPECT_EQ(got, "1160000\n");
}

TEST_F(ShimTest, SurvivesParentDeath) {
  Bundle* b = MakeBundle("orphan-shim", Args({"sleep", "1000"}));
  // Start the shim from an intermediate process that exits right after.
  const std::string out = tmp_.File("start.out");
  RunResult r = RunCmd({"/bin/sh", "-c",
                        absl::StrCat("'", kShimBinary, "' -namespace berth-test -address /x ",
                                     "-publish-binary /x -id orphan-shim start > '", out, "'")},
                       b->str(), ShimEnv(), absl::Seconds(20));
  ASSERT_EQ(r.exit_code, 0);
  std::string address(absl::StripAsciiWhitespace(berth::testing::ReadFile(out)));
  pid_t shim = ShimPid(address);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(ProcessAlive(shim));
  char state = 0;
  pid_t ppid = 0;
  ASSERT_TRUE(ProcStat(shim, &state, &ppid));
  EXPECT_NE(ppid, ::getpid());
  EXPECT_EQ(::getsid(shim), shim) << "the shim leads its own session";
  ttrpc::Client* c = Connect(address);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Create(c, "orphan-shim", *b).ok());
  ASSERT_TRUE(Start(c, "orphan-shim").ok());
  ASSERT_TRUE(Kill(c, "orphan-shim", SIGKILL).ok());
  auto waited = Wait(c, "orphan-shim");
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(waited->exit_status(), 137u);
}

TEST_F(ShimTest, DeleteCommandAfterShimKilled) {
  BundleOptions o = Args({"sh", "-c", "exit 7"});
  o.annotations[kSandboxAnnotation] = "pod-del";
  std::string address;
  ttrpc::Client* c = RunContainer("del7", o, "", "", false, &address);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Wait(c, "del7").ok());
  // A second container of the pod, still running when the shim dies.
  Bundle* b2 = MakeBundle("delrun", [&] {
    BundleOptions r = Args({"sleep", "1000"});
    r.annotations[kSandboxAnnotation] = "pod-del";
    return r;
  }());
  ASSERT_EQ(StartShim(*b2, "delrun"), address);
  ASSERT_TRUE(Create(c, "delrun", *b2).ok());
  ASSERT_TRUE(Start(c, "delrun").ok());
  clients_.clear();
  pid_t shim = ShimPid(address);
  ASSERT_EQ(::kill(shim, SIGKILL), 0);
  for (int i = 0; i < 100 && ProcessAlive(shim); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto del = [&](const Bundle& b, const std::string& id) {
    RunResult r = RunCmd({kShimBinary, "-namespace", "berth-test", "-address", "/x",
                          "-publish-binary", "/x", "-id", id, "-bundle", b.str(), "delete"},
                         b.str(), ShimEnv(), absl::Seconds(30));
    EXPECT_EQ(r.exit_code, 0);
    task::DeleteResponse resp;
    EXPECT_TRUE(resp.ParseFromString(r.out));
    return resp;
  };
  task::DeleteResponse first = del(*bundles_[0], "del7");
  EXPECT_EQ(first.exit_status(), 7u);
  EXPECT_GT(first.pid(), 0u);
  task::DeleteResponse second = del(*b2, "delrun");
  EXPECT_EQ(second.exit_status(), 137u);
  // The runtime no longer knows the running one.
  RunResult state =
      RunCmd({kRunc, "--root", runc_root_, "state", "delrun"}, "", {}, absl::Seconds(10));
  EXPECT_NE(state.exit_code, 0) << state.out;
}

TEST_F(ShimTest, ShutdownWhenEmpty) {
  Bundle* b = MakeBundle("sd", Args({"true"}));
  std::string address = StartShim(*b, "sd");
  pid_t shim = ShimPid(address);
  ttrpc::Client* c = Connect(address);
  ASSERT_NE(c, nullptr);
  task::ShutdownRequest req;
  (void)Call<Empty>(c, kTask, "Shutdown", req, absl::Seconds(5));
  for (int i = 0; i < 100 && ProcessAlive(shim); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(ProcessAlive(shim));
  EXPECT_FALSE(fs::exists(ShimDir(address))) << "a clean shutdown removes the shim's directory";
}

TEST_F(ShimTest, DeleteCreatedContainerAndUnstartedExec) {
  Bundle* b = MakeBundle("created", Args({"sleep", "1000"}));
  ttrpc::Client* c = Connect(StartShim(*b, "created"));
  ASSERT_NE(c, nullptr);
  auto created = Create(c, "created", *b);
  ASSERT_TRUE(created.ok()) << created.status();
  task::StateRequest sreq;
  sreq.set_id("created");
  auto state = Call<task::StateResponse>(c, kTask, "State", sreq);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->status(), containerd::v1::types::CREATED);
  EXPECT_EQ(state->pid(), created->pid());
  // Exec needs a running container.
  task::ExecProcessRequest e;
  e.set_id("created");
  e.set_exec_id("x");
  e.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
  EXPECT_EQ(Call<Empty>(c, kTask, "Exec", e).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto deleted = Delete(c, "created");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 137u);
  RunResult runc_state =
      RunCmd({kRunc, "--root", runc_root_, "state", "created"}, "", {}, absl::Seconds(10));
  EXPECT_NE(runc_state.exit_code, 0);
}

TEST_F(ShimTest, WaitOnUnstartedExecEndsWhenDeleted) {
  ttrpc::Client* c = RunContainer("unstarted", Args({"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  task::ExecProcessRequest e;
  e.set_id("unstarted");
  e.set_exec_id("x");
  e.mutable_spec()->set_value(berth::testing::MakeOciProcess({"true"}).dump());
  ASSERT_TRUE(Call<Empty>(c, kTask, "Exec", e).ok());
  absl::Status waited;
  std::thread waiter([&] { waited = Wait(c, "unstarted", "x", absl::Seconds(20)).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(Delete(c, "unstarted", "x").ok());
  waiter.join();
  EXPECT_EQ(waited.code(), absl::StatusCode::kNotFound) << waited;
}

}  // namespace
}  // namespace berth::shim

namespace berth::shim {
namespace {

// Prints the shim's memory with one running busybox container (target: < 2 MiB RSS).
TEST_F(ShimTest, MemoryFootprint) {
  std::string address;
  const std::string log = tmp_.File("mem.log");
  ttrpc::Client* c = RunContainer("mem", Args({"sh", "-c", "echo started; sleep 1000"}),
                                  "crilog://" + log, "crilog://" + log, false, &address);
  ASSERT_NE(c, nullptr);
  berth::shim::v1::ExecSyncRequest req;
  req.set_id("mem");
  req.mutable_spec()->set_value(berth::testing::MakeOciProcess({"echo", "hi"}).dump());
  ASSERT_TRUE(Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", req).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const pid_t shim = ShimPid(address);
  std::string status = berth::testing::ReadFile(absl::StrCat("/proc/", shim, "/status"));
  std::string rollup = berth::testing::ReadFile(absl::StrCat("/proc/", shim, "/smaps_rollup"));
  auto field = [](const std::string& text, const std::string& key) -> long {
    size_t at = text.find("\n" + key + ":");
    if (at == std::string::npos) return -1;
    return std::atol(text.c_str() + at + key.size() + 2);
  };
  const long rss_kb = field(status, "VmRSS");
  const long pss_kb = field(rollup, "Pss");
  const long anon_kb = field(rollup, "Anonymous");
  const long threads = field(status, "Threads");
  std::printf(
      "berth-shim pid %d with one busybox container: VmRSS %ld kB, Pss %ld kB, "
      "Anonymous %ld kB, threads %ld\n",
      shim, rss_kb, pss_kb, anon_kb, threads);
  // Resident kB per mapping, to see where the memory is.
  std::string smaps = berth::testing::ReadFile(absl::StrCat("/proc/", shim, "/smaps"));
  std::string mapping;
  for (absl::string_view line : absl::StrSplit(smaps, '\n')) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') < line.find(' ')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      mapping = absl::StrCat(f.size() > 1 ? f[1] : "", " ", f.size() > 5 ? f[5] : "[anon]");
    } else if (absl::StartsWith(line, "Rss:")) {
      long kb = std::atol(std::string(line.substr(4)).c_str());
      if (kb > 0) std::printf("  %6ld kB  %s\n", kb, mapping.c_str());
    }
  }
  RecordProperty("VmRSS_kB", static_cast<int>(rss_kb));
  RecordProperty("Pss_kB", static_cast<int>(pss_kb));
  EXPECT_GT(rss_kb, 0);
}

}  // namespace
}  // namespace berth::shim

namespace berth::shim {
namespace {

// Everything a pod's life asks of the shim, ending with Shutdown once the tasks are gone.
TEST_F(ShimTest, FullLifecycleThenShutdown) {
  std::string address;
  const std::string log = tmp_.File("life.log");
  ttrpc::Client* c =
      RunContainer("life", Args({"sh", "-c", "while true; do echo tick; sleep 0.1; done"}),
                   "crilog://" + log, "crilog://" + log, false, &address);
  ASSERT_NE(c, nullptr);
  const pid_t shim = ShimPid(address);
  task::StateRequest sreq;
  sreq.set_id("life");
  auto state = Call<task::StateResponse>(c, kTask, "State", sreq);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status(), containerd::v1::types::RUNNING);
  berth::shim::v1::ExecSyncRequest es;
  es.set_id("life");
  es.mutable_spec()->set_value(berth::testing::MakeOciProcess({"echo", "hi"}).dump());
  auto synced = Call<berth::shim::v1::ExecSyncResponse>(c, kShim, "ExecSync", es);
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->stdout(), "hi\n");
  task::ExecProcessRequest ex;
  ex.set_id("life");
  ex.set_exec_id("e");
  ex.set_stdout("crilog://" + tmp_.File("exec.log"));
  ex.mutable_spec()->set_value(berth::testing::MakeOciProcess({"sleep", "1000"}).dump());
  ASSERT_TRUE(Call<Empty>(c, kTask, "Exec", ex).ok());
  ASSERT_TRUE(Start(c, "life", "e").ok());
  task::PidsRequest preq;
  preq.set_id("life");
  auto pids = Call<task::PidsResponse>(c, kTask, "Pids", preq);
  ASSERT_TRUE(pids.ok()) << pids.status();
  bool saw_exec = false;
  for (const auto& p : pids->processes())
    saw_exec |= p.info().value().find('e') != std::string::npos;
  EXPECT_TRUE(saw_exec);
  berth::shim::v1::AttachRequest areq;
  areq.set_id("life");
  ASSERT_TRUE(Call<berth::shim::v1::AttachResponse>(c, kShim, "Attach", areq).ok());
  berth::shim::v1::ReopenLogRequest rreq;
  rreq.set_id("life");
  ASSERT_TRUE(Call<Empty>(c, kShim, "ReopenLog", rreq).ok());
  task::UpdateTaskRequest ureq;
  ureq.set_id("life");
  ureq.mutable_resources()->set_value(R"({"pids":{"limit":100}})");
  auto updated = Call<Empty>(c, kTask, "Update", ureq);
  EXPECT_TRUE(updated.ok()) << updated.status();
  task::StatsRequest stats_req;
  stats_req.set_id("life");
  auto stats = Call<task::StatsResponse>(c, kTask, "Stats", stats_req);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(absl::StartsWith(stats->stats().type_url(), "io.containerd.cgroups.v"))
      << stats->stats().type_url();
  EXPECT_FALSE(stats->stats().value().empty());
  task::ConnectRequest creq;
  creq.set_id("life");
  auto conn = Call<task::ConnectResponse>(c, kTask, "Connect", creq);
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(conn->task_pid(), state->pid());
  // Shutdown without `now` while a task exists: the shim stays.
  ASSERT_TRUE(Call<Empty>(c, kTask, "Shutdown", task::ShutdownRequest()).ok());
  EXPECT_TRUE(ProcessAlive(shim));
  task::KillRequest kreq;
  kreq.set_id("life");
  kreq.set_exec_id("e");
  kreq.set_signal(SIGKILL);
  ASSERT_TRUE(Call<Empty>(c, kTask, "Kill", kreq).ok());
  auto exec_done = Wait(c, "life", "e");
  ASSERT_TRUE(exec_done.ok());
  EXPECT_EQ(exec_done->exit_status(), 137u);
  ASSERT_TRUE(Delete(c, "life", "e").ok());
  ASSERT_TRUE(Kill(c, "life", SIGKILL).ok());
  ASSERT_TRUE(Wait(c, "life").ok());
  ASSERT_TRUE(Delete(c, "life").ok());
  (void)Call<Empty>(c, kTask, "Shutdown", task::ShutdownRequest(), absl::Seconds(5));
  for (int i = 0; i < 250 && ProcessAlive(shim); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(ProcessAlive(shim));
  std::vector<LogEntry> entries;
  std::string error;
  ASSERT_TRUE(ParseCriLog(berth::testing::ReadFile(log), &entries, &error)) << error;
  EXPECT_FALSE(entries.empty());
}

}  // namespace
}  // namespace berth::shim
