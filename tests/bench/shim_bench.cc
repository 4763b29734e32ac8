// SPDX-License-Identifier: Apache-2.0
// berth-shim benchmark: create+start latency of a busybox container through the shim, side
// by side with the bare runtimes (`runc run -d`, `crun run -d`) and with Debian's
// containerd-shim-runc-v2, and the resident memory (RSS, PSS) of each shim with one
// container. Needs root. Prints a table; not part of ctest.
//
//   berth_bench_shim [--runs N]
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/ttrpc/shim.h"
#include "plugins/runtime-runc/runtime_probe.h"
#include "shim/runc/options.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/support/bundle.h"
#include "tests/support/test_support.h"

namespace berth::bench {
namespace {

namespace task = containerd::task::v2;
using testing::Bundle;
using testing::BundleOptions;

constexpr char kShimNs[] = "berth-bench";

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Runs argv (optionally in a mount namespace without the cgroup2 mount, for crun on
// hybrid hosts) and returns its exit status; stdin on /dev/null, stdout and stderr on
// /dev/null or on `output_fd`.
int Run(const std::vector<std::string>& argv, bool crun_workaround = false, int output_fd = -1) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(output_fd >= 0 ? output_fd : null, 1);
    ::dup2(output_fd >= 0 ? output_fd : null, 2);
    if (crun_workaround &&
        runc::ApplyCrunHybridWorkaroundInChild("/sys/fs/cgroup", "/sys/fs/cgroup/unified") != 0) {
      ::_exit(125);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

BundleOptions Sleeper(std::map<std::string, std::string> annotations = {}) {
  BundleOptions o;
  o.args = {"sleep", "100000"};
  o.annotations = std::move(annotations);
  return o;
}

// `<runtime> run -d` (or `create` then `start`, what a shim does) of a fresh bundle, timed;
// then kill + delete (not timed). With `pipes`, the container's stdout and stderr are a
// pipe, as under a shim that collects its output (/dev/null otherwise).
std::vector<double> BareRuntime(const std::string& binary, bool workaround, int runs,
                                const std::string& root, bool create_start = false,
                                bool pipes = false) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    Bundle bundle("bench-bare", Sleeper());
    if (!bundle.ok()) return {};
    std::string id = "bench-bare-" + std::to_string(i);
    int out[2] = {-1, -1};
    if (pipes && ::pipe2(out, O_CLOEXEC) != 0) return {};
    absl::Time t0 = absl::Now();
    int rc = create_start ? Run({binary, "--root", root, "create", "--bundle", bundle.str(), id},
                                workaround, out[1])
                          : Run({binary, "--root", root, "run", "-d", "--bundle", bundle.str(), id},
                                workaround, out[1]);
    if (rc == 0 && create_start) rc = Run({binary, "--root", root, "start", id});
    absl::Duration d = absl::Now() - t0;
    Run({binary, "--root", root, "delete", "--force", id});
    for (int fd : out) {
      if (fd >= 0) ::close(fd);
    }
    if (rc != 0) {
      std::fprintf(stderr, "  %s run -d failed (exit %d)\n", binary.c_str(), rc);
      return {};
    }
    ms.push_back(Ms(d));
  }
  return ms;
}

struct ShimFigures {
  std::vector<double> shim_start_ms, first_create_start_ms, second_create_start_ms;
  long rss_kb = -1, pss_kb = -1;
};

google::protobuf::Any RuncOptions(const std::string& runtime, const std::string& root) {
  containerd::runc::v1::Options options;
  options.set_binary_name(runtime);
  options.set_root(root);
  google::protobuf::Any any;
  any.set_type_url("containerd.runc.v1.Options");
  any.set_value(options.SerializeAsString());
  return any;
}

absl::Status CreateStart(ttrpc::TaskClient& client, const Bundle& bundle, const std::string& id,
                         const std::string& runtime, const std::string& root) {
  task::CreateTaskRequest create;
  create.set_id(id);
  create.set_bundle(bundle.str());
  *create.mutable_options() = RuncOptions(runtime, root);
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  auto created = client.Create(create, deadline);
  if (!created.ok()) return created.status();
  task::StartRequest start;
  start.set_id(id);
  auto started = client.Start(start, deadline);
  return started.status();
}

void KillDelete(ttrpc::TaskClient& client, const std::string& id) {
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  task::KillRequest kill;
  kill.set_id(id);
  kill.set_signal(SIGKILL);
  kill.set_all(true);
  (void)client.Kill(kill, deadline);
  task::WaitRequest wait;
  wait.set_id(id);
  (void)client.Wait(wait, deadline);
  task::DeleteRequest del;
  del.set_id(id);
  (void)client.Delete(del, deadline);
}

// One pod per run: `start` (a new shim), then two containers created and started in it.
ShimFigures Shim(const std::string& shim_binary, const std::string& runtime, bool hide_cgroup2,
                 int runs, const std::string& root, const std::string& state_dir) {
  ShimFigures f;
  for (int i = 0; i < runs; ++i) {
    std::string sandbox = "bench-pod-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    Bundle first("bench-shim-a", Sleeper({{"io.kubernetes.cri.sandbox-id", sandbox}}));
    Bundle second("bench-shim-b", Sleeper({{"io.kubernetes.cri.sandbox-id", sandbox}}));
    if (!first.ok() || !second.ok()) return f;
    std::string id_a = sandbox + "-a", id_b = sandbox + "-b";
    ttrpc::ShimCommand cmd;
    cmd.binary = shim_binary;
    cmd.bundle = first.str();
    cmd.id = id_a;
    cmd.ns = kShimNs;
    cmd.address = state_dir + "/events.sock";
    // As the runtime plugin starts it: with its verdict on crun and hybrid cgroups.
    cmd.extra_env = {"BERTH_SHIM_STATE_DIR=" + state_dir,
                     std::string("BERTH_SHIM_HIDE_CGROUP2=") + (hide_cgroup2 ? "1" : "0")};
    // containerd shims block until their log FIFO has a reader.
    auto log = ttrpc::ShimLog::Open(first.str(), nullptr);
    if (!log.ok()) return f;
    absl::Time t0 = absl::Now();
    auto address = ttrpc::StartShim(cmd);
    absl::Duration d_start = absl::Now() - t0;
    if (!address.ok()) {
      std::fprintf(stderr, "  %s start: %s\n", shim_binary.c_str(),
                   std::string(address.status().message()).c_str());
      return f;
    }
    auto client = ttrpc::TaskClient::Connect(*address, absl::Seconds(5));
    if (!client.ok()) return f;
    absl::Time t1 = absl::Now();
    absl::Status s = CreateStart(**client, first, id_a, runtime, root);
    absl::Duration d_first = absl::Now() - t1;
    task::ConnectRequest connect;
    connect.set_id(id_a);
    auto connected = (*client)->ConnectTask(connect, absl::Now() + absl::Seconds(5));
    if (s.ok() && connected.ok()) {
      // Memory of the shim of a pod with one running container (the largest of the runs).
      ::usleep(100000);
      f.rss_kb = std::max(f.rss_kb, ProcField(connected->shim_pid(), "status", "VmRSS"));
      f.pss_kb = std::max(f.pss_kb, ProcField(connected->shim_pid(), "smaps_rollup", "Pss"));
    }
    absl::Time t2 = absl::Now();
    absl::Status s2 = s.ok() ? CreateStart(**client, second, id_b, runtime, root) : s;
    absl::Duration d_second = absl::Now() - t2;
    if (s.ok() && s2.ok()) {
      f.shim_start_ms.push_back(Ms(d_start));
      f.first_create_start_ms.push_back(Ms(d_first));
      f.second_create_start_ms.push_back(Ms(d_second));
    } else {
      std::fprintf(stderr, "  create/start through %s: %s\n", shim_binary.c_str(),
                   std::string((s.ok() ? s2 : s).message()).c_str());
    }
    KillDelete(**client, id_b);
    KillDelete(**client, id_a);
    task::ShutdownRequest shutdown;
    shutdown.set_id(id_a);
    (void)(*client)->Shutdown(shutdown, absl::Now() + absl::Seconds(5));
    (*client)->Close();
    if (connected.ok()) {
      // The shim exits on Shutdown; make sure, by pid (ours).
      for (int w = 0; w < 100 && ::kill(connected->shim_pid(), 0) == 0; ++w) ::usleep(10000);
      if (::kill(connected->shim_pid(), 0) == 0) ::kill(connected->shim_pid(), SIGKILL);
    }
    (void)ttrpc::DeleteShim(cmd);
  }
  return f;
}

void Row(const char* what, const std::vector<double>& ms) {
  if (ms.empty()) {
    std::printf("  %-52s %s\n", what, "n/a");
    return;
  }
  Stats s = Summarize(ms);
  std::printf("  %-52s median %7.2f ms  min %7.2f  max %7.2f\n", what, s.median, s.min, s.max);
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) {
  using namespace berth::bench;
  int runs = 10;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--runs") runs = std::atoi(argv[i + 1]);
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_shim needs root\n");
    return 1;
  }
  berth::testing::TempDir tmp("bench-shim");
  std::string runc_root = tmp.File("runc"), crun_root = tmp.File("crun");
  std::string state = tmp.File("shim");
  std::filesystem::create_directories(state);

  auto crun = berth::runc::IdentifyRuntime("/usr/bin/crun");
  auto host = berth::runc::ProbeCgroupHost("/sys/fs/cgroup");
  bool crun_workaround = false;
  if (crun.ok() && host.ok()) {
    auto verdict = berth::runc::EvaluateRuntimeReadiness(*crun, *host, true);
    crun_workaround = verdict.readiness == berth::runc::Readiness::kReadyWithWorkaround;
  }

  std::printf("shim benchmark (%d runs each, busybox `sleep`, private runtime roots)\n", runs);
  Row("runc run -d", BareRuntime("/usr/bin/runc", false, runs, runc_root));
  Row("runc create + runc start", BareRuntime("/usr/bin/runc", false, runs, runc_root, true));
  Row("runc create + runc start, output on a pipe",
      BareRuntime("/usr/bin/runc", false, runs, runc_root, true, true));
  Row(crun_workaround ? "crun run -d (hybrid-cgroup workaround)" : "crun run -d",
      BareRuntime("/usr/bin/crun", crun_workaround, runs, crun_root));
  Row("crun create + crun start",
      BareRuntime("/usr/bin/crun", crun_workaround, runs, crun_root, true));
  Row("crun create + crun start, output on a pipe",
      BareRuntime("/usr/bin/crun", crun_workaround, runs, crun_root, true, true));
  // Shims publish events to TTRPC_ADDRESS (and wait on exit until someone acknowledges).
  auto events = berth::ttrpc::ServeShimEvents(state + "/events.sock.ttrpc", nullptr);
  if (!events.ok()) {
    std::fprintf(stderr, "events listener: %s\n", std::string(events.status().message()).c_str());
    return 1;
  }
  struct Case {
    std::string shim, runtime, root;
    bool hide;
  };
  std::vector<Case> cases = {
      {BERTH_SHIM_BIN, "/usr/bin/runc", runc_root, false},
      {"/usr/bin/containerd-shim-runc-v2", "/usr/bin/runc", runc_root, false}};
  // crun through berth-shim (with the workaround where the host needs it); containerd's shim
  // cannot run crun on a hybrid host.
  if (crun.ok())
    cases.insert(cases.begin() + 1, {BERTH_SHIM_BIN, "/usr/bin/crun", crun_root, crun_workaround});
  for (const Case& c : cases) {
    if (::access(c.shim.c_str(), X_OK) != 0) continue;
    std::string name = std::filesystem::path(c.shim).filename().string() + "/" +
                       std::filesystem::path(c.runtime).filename().string();
    ShimFigures f = Shim(c.shim, c.runtime, c.hide, runs, c.root, state);
    Row((name + " start (new pod)").c_str(), f.shim_start_ms);
    Row((name + " create+start, 1st container").c_str(), f.first_create_start_ms);
    Row((name + " create+start, 2nd container").c_str(), f.second_create_start_ms);
    std::printf("  %-52s RSS %6.2f MiB  PSS %6.2f MiB\n",
                (name + " memory, pod with 1 container").c_str(), f.rss_kb / 1024.0,
                f.pss_kb / 1024.0);
  }
  return 0;
}
