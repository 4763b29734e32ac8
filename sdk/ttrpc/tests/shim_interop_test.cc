// SPDX-License-Identifier: Apache-2.0
// Interop tests: berth's ttrpc client against Debian's containerd-shim-runc-v2 (Go
// ttrpc). The first starts the shim with the shim v2 `start` command (CLI-flag protocol of
// containerd <= 2.2) by hand, calls Task/Connect, State (an error status), an unknown
// method, then Task/Shutdown, and finally runs the shim's `delete` command. The second
// drives a real busybox container through the SDK shim client (berth/ttrpc/shim.h):
// start, create, start, exec, kill, wait, delete, shutdown and the `delete` command. Need
// root (the shim puts its socket under /run/containerd/s); skipped otherwise.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/ttrpc/client.h"
#include "berth/ttrpc/shim.h"
#include "google/protobuf/empty.pb.h"
#include "gtest/gtest.h"
#include "shim/runc/options.pb.h"
#include "shim/task/v2/shim.pb.h"
#include "tests/support/bundle.h"
#include "tests/support/shared_host_state.h"

extern char** environ;

namespace berth::ttrpc {
namespace {

constexpr char kShim[] = "/usr/bin/containerd-shim-runc-v2";
constexpr char kTask[] = "containerd.task.v2.Task";

struct RunResult {
  int exit_code = -1;  // -1: did not exit normally (killed, timed out)
  std::string out;
};

// Runs the shim binary with `args` in `cwd` through the SDK's runner: stdin from
// /dev/null, stdout captured, stderr shown. Kills the command if it outlives `timeout`.
RunResult RunShim(const std::vector<std::string>& args, const std::string& cwd,
                  const std::vector<std::string>& extra_env, absl::Duration timeout) {
  RunResult result;
  std::vector<std::string> argv = {kShim};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> r = RunCommand(argv, cwd, extra_env, timeout);
  if (!r.ok()) return result;
  std::cerr << r->err;
  if (r->exit_status < 128) result.exit_code = r->exit_status;
  result.out = std::move(r->out);
  return result;
}

std::string ReadFileOr(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ProcessAlive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// The shim daemon's command line holds our unique id; only then may the test kill it.
bool IsOurShim(pid_t pid, const std::string& id) {
  std::string cmdline = ReadFileOr(absl::StrCat("/proc/", pid, "/cmdline"));
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  return cmdline.find("containerd-shim-runc-v2") != std::string::npos &&
         cmdline.find(absl::StrCat(" ", id, " ")) != std::string::npos;
}

std::string ParseAddress(std::string out) {
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!out.empty() && out.front() == '{') {  // {"version":..,"address":"..","protocol":..}
    std::size_t k = out.find("\"address\"");
    if (k == std::string::npos) return "";
    std::size_t q1 = out.find('"', out.find(':', k) + 1);
    std::size_t q2 = out.find('"', q1 + 1);
    if (q1 == std::string::npos || q2 == std::string::npos) return "";
    return out.substr(q1 + 1, q2 - q1 - 1);
  }
  return out;
}

TEST(ShimInteropTest, ConnectAndShutdownRuncV2Shim) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the shim creates /run/containerd/s";
  if (::access(kShim, X_OK) != 0) GTEST_SKIP() << kShim << " not installed";

  // The shim creates /run/containerd/{s,runc/<namespace>}: their empty directories go when no
  // other test uses them (shared_host_state.h).
  berth::testing::ContainerdRunDir run_dir;
  char tmpl[] = "/tmp/berth-shim-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  const std::string id = absl::StrCat("berth-ttrpc-interop-", ::getpid());
  const std::string ns = "berth-test";
  const std::string bundle = root + "/" + id;  // the shim expects <dir>/<id>
  ASSERT_EQ(::mkdir(bundle.c_str(), 0700), 0);
  std::ofstream(bundle + "/config.json") << R"({"ociVersion":"1.0.2"})";
  std::ofstream(bundle + "/runtime") << "runc";
  ASSERT_EQ(::mkfifo((bundle + "/log").c_str(), 0600), 0);
  // The shim daemon writes its log to this fifo; a reader must exist for it to open it.
  int log_fd = ::open((bundle + "/log").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(log_fd, 0);

  const std::string containerd_address = root + "/containerd.sock";  // never listened on
  const std::vector<std::string> env = {
      absl::StrCat("TTRPC_ADDRESS=", containerd_address, ".ttrpc")};
  const std::vector<std::string> common = {
      "-namespace", ns, "-id", id, "-address", containerd_address, "-publish-binary", "/bin/true"};

  std::vector<std::string> start_args = common;
  start_args.push_back("start");
  RunResult start = RunShim(start_args, bundle, env, absl::Seconds(20));
  std::string address = ParseAddress(start.out);
  pid_t shim_pid = 0;
  std::string socket_path;
  EXPECT_EQ(start.exit_code, 0) << "shim start output: " << start.out;
  EXPECT_FALSE(address.empty()) << "shim start printed no address";
  if (start.exit_code == 0 && !address.empty()) {
    socket_path = address.substr(0, 7) == "unix://" ? address.substr(7) : address;
    auto client = Client::Connect(address, absl::Seconds(5));
    ASSERT_TRUE(client.ok()) << client.status();

    containerd::task::v2::ConnectRequest connect;
    connect.set_id(id);
    auto resp =
        (*client)
            ->Call<containerd::task::v2::ConnectRequest, containerd::task::v2::ConnectResponse>(
                kTask, "Connect", connect, absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(resp.ok()) << resp.status();
    shim_pid = static_cast<pid_t>(resp->shim_pid());
    EXPECT_GT(shim_pid, 1);
    EXPECT_TRUE(IsOurShim(shim_pid, id)) << "shim_pid " << shim_pid;
    EXPECT_EQ(resp->task_pid(), 0u);  // no task created

    // A Go ttrpc error status arrives with its code: no container has been created.
    containerd::task::v2::StateRequest state;
    state.set_id(id);
    auto st =
        (*client)->Call<containerd::task::v2::StateRequest, containerd::task::v2::StateResponse>(
            kTask, "State", state, absl::Now() + absl::Seconds(10));
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound) << st.status();

    auto unknown = (*client)->CallRaw(kTask, "NoSuchMethod", "", absl::Now() + absl::Seconds(10));
    EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented) << unknown.status();

    containerd::task::v2::ShutdownRequest shutdown;
    shutdown.set_id(id);
    auto down = (*client)->Call<containerd::task::v2::ShutdownRequest, google::protobuf::Empty>(
        kTask, "Shutdown", shutdown, absl::Now() + absl::Seconds(10));
    // The shim may exit before its reply is flushed, as containerd also tolerates.
    EXPECT_TRUE(down.ok() || down.status().code() == absl::StatusCode::kUnavailable)
        << down.status();
    (*client)->Close();
  }

  if (shim_pid > 1) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (ProcessAlive(shim_pid) && IsOurShim(shim_pid, id) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (ProcessAlive(shim_pid) && IsOurShim(shim_pid, id)) {
      ADD_FAILURE() << "shim " << shim_pid << " still running 10s after Shutdown; killing it";
      ::kill(shim_pid, SIGKILL);
    }
  }

  std::vector<std::string> delete_args = common;
  delete_args.insert(delete_args.end(), {"-bundle", bundle, "delete"});
  RunResult del = RunShim(delete_args, bundle, env, absl::Seconds(20));
  EXPECT_EQ(del.exit_code, 0);
  containerd::task::v2::DeleteResponse deleted;
  EXPECT_TRUE(deleted.ParseFromString(del.out)) << "delete printed " << del.out.size() << " bytes";

  std::string log(65536, '\0');
  ssize_t n = ::read(log_fd, log.data(), log.size());
  log.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  ::close(log_fd);
  if (HasFailure()) std::cerr << "shim log:\n" << log << "\n";
  std::error_code ec;
  if (!socket_path.empty() && socket_path.rfind("/run/containerd/s/", 0) == 0) {
    std::filesystem::remove(socket_path, ec);  // normally already removed by the shim
  }
  std::filesystem::remove_all(root, ec);
}

namespace task = ::containerd::task::v2;

// Undoes what the container test started, even when it fails: the shim (only the pid the
// shim reported, and only while its command line names our container), the container in
// the private runc root, /run/containerd's empty directories when no other test uses them.
struct ContainerCleanup {
  std::string id;
  std::string runc_root;
  pid_t shim_pid = 0;
  berth::testing::ContainerdRunDir run_dir;  // released after the body below
  ~ContainerCleanup() {
    if (shim_pid > 1 && ProcessAlive(shim_pid) && IsOurShim(shim_pid, id)) {
      ::kill(shim_pid, SIGKILL);
      absl::Time deadline = absl::Now() + absl::Seconds(5);
      while (ProcessAlive(shim_pid) && IsOurShim(shim_pid, id) && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    if (!runc_root.empty()) {
      std::string cmd = absl::StrCat("runc --root ", runc_root, "/berth-test delete --force ", id,
                                     " >/dev/null 2>&1");
      int rc = std::system(cmd.c_str());
      (void)rc;
    }
  }
};

TEST(ShimInteropTest, SdkClientRunsBusyboxContainerThroughRuncV2Shim) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: runc, /run/containerd/s";
  if (::access(kShim, X_OK) != 0) GTEST_SKIP() << kShim << " not installed";
  berth::testing::BundleOptions o;
  o.args = {"sh", "-c", "echo started; exec sleep 1000"};
  berth::testing::Bundle bundle("interop", o);
  if (!bundle.ok()) GTEST_SKIP() << bundle.error();
  berth::testing::TempDir work("shim-interop");
  ASSERT_FALSE(work.path().empty());
  // containerd-shim-runc-v2's `delete` finds the container by the bundle's directory name.
  const std::string id = bundle.path().filename().string();
  ContainerCleanup cleanup;
  cleanup.id = id;
  cleanup.runc_root = work.File("runc-root");

  std::vector<std::string> log_lines;
  std::mutex log_mu;
  auto log = ShimLog::Open(bundle.str(), [&](std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    log_lines.emplace_back(line);
  });
  ASSERT_TRUE(log.ok()) << log.status();
  // A listener for the shim's events, so that it exits promptly on Shutdown.
  const std::string events = work.File("events.sock");
  int forwarded = 0;
  std::mutex fwd_mu;
  auto sink = ServeShimEvents(events + ".ttrpc", [&](const std::string&) {
    std::lock_guard<std::mutex> lock(fwd_mu);
    ++forwarded;
  });
  ASSERT_TRUE(sink.ok()) << sink.status();

  ShimCommand cmd;
  cmd.binary = kShim;
  cmd.bundle = bundle.str();
  cmd.id = id;
  cmd.ns = "berth-test";
  cmd.address = events;
  cmd.timeout = absl::Seconds(20);
  absl::StatusOr<std::string> address = StartShim(cmd);
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->rfind("unix:///run/containerd/s/", 0), 0u) << *address;
  auto client = TaskClient::Connect(*address, absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  TaskClient& shim = **client;
  auto deadline = [] { return absl::Now() + absl::Seconds(20); };

  task::ConnectRequest connect;
  connect.set_id(id);
  auto connected = shim.ConnectTask(connect, deadline());
  ASSERT_TRUE(connected.ok()) << connected.status();
  cleanup.shim_pid = static_cast<pid_t>(connected->shim_pid());
  ASSERT_TRUE(IsOurShim(cleanup.shim_pid, id));

  const std::string init_out = work.File("init.out");
  task::CreateTaskRequest create;
  create.set_id(id);
  create.set_bundle(bundle.str());
  create.set_stdout("file://" + init_out);
  create.set_stderr("file://" + init_out);
  containerd::runc::v1::Options runc_options;
  runc_options.set_root(cleanup.runc_root);
  create.mutable_options()->set_type_url("containerd.runc.v1.Options");
  create.mutable_options()->set_value(runc_options.SerializeAsString());
  auto created = shim.Create(create, deadline());
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(created->pid(), 0u);
  // The shim keeps runc state under <root>/<namespace>.
  EXPECT_TRUE(std::filesystem::exists(cleanup.runc_root + "/berth-test/" + id))
      << "private runc root unused";

  task::StartRequest start;
  start.set_id(id);
  auto started = shim.Start(start, deadline());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->pid(), created->pid());
  task::StateRequest state;
  state.set_id(id);
  auto st = shim.State(state, deadline());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status(), containerd::v1::types::RUNNING);
  EXPECT_EQ(st->pid(), created->pid());
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (ReadFileOr(init_out) != "started\n" && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(ReadFileOr(init_out), "started\n");

  // An exec: its output in a file, its exit status through Wait.
  // stdout only: containerd-shim-runc-v2 1.6 copies both streams into the file:// stdout
  // path through one file, which its stdout copier may close while the stderr copier still
  // writes ("error copying stderr"): stderr output would be lost now and then.
  const std::string exec_out = work.File("exec.out");
  task::ExecProcessRequest exec;
  exec.set_id(id);
  exec.set_exec_id("e1");
  exec.set_stdout("file://" + exec_out);
  exec.set_stderr("file://" + exec_out);  // 1.6 panics on file:// stdout without stderr
  exec.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  exec.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "echo exec-out; exit 5"}).dump());
  auto registered = shim.Exec(exec, deadline());
  ASSERT_TRUE(registered.ok()) << registered.status();
  task::StartRequest start_exec;
  start_exec.set_id(id);
  start_exec.set_exec_id("e1");
  auto exec_started = shim.Start(start_exec, deadline());
  ASSERT_TRUE(exec_started.ok()) << exec_started.status();
  task::WaitRequest wait_exec;
  wait_exec.set_id(id);
  wait_exec.set_exec_id("e1");
  auto exec_exit = shim.Wait(wait_exec, deadline());
  ASSERT_TRUE(exec_exit.ok()) << exec_exit.status();
  EXPECT_EQ(exec_exit->exit_status(), 5u);
  EXPECT_GT(exec_exit->exited_at().seconds(), 0);
  // The shim copies output on its own; Wait may answer before the copy has landed.
  until = absl::Now() + absl::Seconds(10);
  while (ReadFileOr(exec_out) != "exec-out\n" && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(ReadFileOr(exec_out), "exec-out\n");
  task::DeleteRequest delete_exec;
  delete_exec.set_id(id);
  delete_exec.set_exec_id("e1");
  auto exec_deleted = shim.Delete(delete_exec, deadline());
  ASSERT_TRUE(exec_deleted.ok()) << exec_deleted.status();
  EXPECT_EQ(exec_deleted->exit_status(), 5u);
  task::StateRequest exec_state;
  exec_state.set_id(id);
  exec_state.set_exec_id("e1");
  auto exec_gone = shim.State(exec_state, deadline());
  EXPECT_EQ(exec_gone.status().code(), absl::StatusCode::kNotFound) << exec_gone.status();

  task::PidsRequest pids;
  pids.set_id(id);
  auto listed = shim.Pids(pids, deadline());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_GE(listed->processes_size(), 1);
  EXPECT_EQ(listed->processes(0).pid(), created->pid());

  // Kill the init (a Wait already in flight on another thread sees the exit), then delete.
  absl::StatusOr<task::WaitResponse> init_exit;
  std::thread waiter([&] {
    task::WaitRequest w;
    w.set_id(id);
    init_exit = shim.Wait(w, absl::InfiniteFuture());
  });
  absl::SleepFor(absl::Milliseconds(100));
  task::KillRequest kill;
  kill.set_id(id);
  kill.set_signal(SIGKILL);
  auto killed = shim.Kill(kill, deadline());
  EXPECT_TRUE(killed.ok()) << killed.status();
  waiter.join();
  ASSERT_TRUE(init_exit.ok()) << init_exit.status();
  EXPECT_EQ(init_exit->exit_status(), 128u + SIGKILL);
  task::DeleteRequest del;
  del.set_id(id);
  auto deleted = shim.Delete(del, deadline());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 128u + SIGKILL);
  EXPECT_EQ(deleted->pid(), created->pid());

  task::ShutdownRequest shutdown;
  shutdown.set_id(id);
  auto down = shim.Shutdown(shutdown, deadline());
  EXPECT_TRUE(down.ok() || down.status().code() == absl::StatusCode::kUnavailable) << down.status();
  shim.Close();
  absl::Time gone_by = absl::Now() + absl::Seconds(10);
  while (ProcessAlive(cleanup.shim_pid) && IsOurShim(cleanup.shim_pid, id) &&
         absl::Now() < gone_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(ProcessAlive(cleanup.shim_pid) && IsOurShim(cleanup.shim_pid, id))
      << "shim still running 10s after Shutdown";

  // The `delete` command, as for a shim that died: the container is already gone.
  absl::StatusOr<task::DeleteResponse> cleaned = DeleteShim(cmd);
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  EXPECT_EQ(cleaned->exit_status(), 128u + SIGKILL);
  {
    std::lock_guard<std::mutex> lock(fwd_mu);
    EXPECT_GT(forwarded, 0) << "the shim published no event to TTRPC_ADDRESS";
  }
  (*sink)->Shutdown(absl::Seconds(1));
  log->reset();  // the shim closed its end; the reader has ended
  if (HasFailure()) {
    std::lock_guard<std::mutex> lock(log_mu);
    for (const std::string& l : log_lines) std::cerr << "shim log: " << l << "\n";
  }
}

}  // namespace
}  // namespace berth::ttrpc
