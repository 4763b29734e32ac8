// SPDX-License-Identifier: Apache-2.0
// Pods through a runtime handler of the shim v2 kind (io.berth.runtime.kata): Kata needs KVM,
// which this machine lacks, so the handler `shimv2-test` runs Debian's
// containerd-shim-runc-v2 — a real shim v2 that knows nothing of berth. The same things as
// with berth-shim must work: the CRI log (written by berthd from FIFOs), ExecSync, streaming
// exec and attach, stats, stop and removal, and a berthd restart in the middle.
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using StreamClient = cri::spdy::testing::PortForwardClient;

constexpr char kHandler[] = "shimv2-test";

std::string ReadFileText(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The messages of a CRI log, one per F entry ("<ts> <stream> <tag> <message>").
std::vector<std::string> LogMessages(const std::string& text, const std::string& stream = "") {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string ts, s, tag;
    fields >> ts >> s >> tag;
    if (!stream.empty() && s != stream) continue;
    std::string message;
    std::getline(fields, message);
    if (!message.empty() && message[0] == ' ') message.erase(0, 1);
    out.push_back(message);
  }
  return out;
}

class PodShimV2Test : public PodFixture<> {
 protected:
  void SetUp() override {
    StartHarness("shimv2");
    if (h_ == nullptr) return;
    if (!fs::exists("/usr/bin/containerd-shim-runc-v2")) {
      GTEST_SKIP() << "containerd-shim-runc-v2 is not installed";
    }
  }

  std::string RunPod(v1::PodSandboxConfig* pod, const std::string& name) {
    *pod = h_->NewPod(name);
    std::string id;
    grpc::Status s = h_->RunPod(*pod, &id, kHandler);
    EXPECT_TRUE(s.ok()) << Describe(s) << h_->LogTail();
    return s.ok() ? id : "";
  }
  std::string Run(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                  const v1::ContainerConfig& c) {
    std::string id;
    grpc::Status s = h_->RunContainer(pod_id, pod, c, &id);
    EXPECT_TRUE(s.ok()) << Describe(s) << h_->LogTail();
    if (!s.ok()) return "";
    EXPECT_TRUE(h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10)));
    return id;
  }
  fs::path LogPath(const std::string& id) {
    v1::ContainerStatus st;
    EXPECT_TRUE(h_->ContainerStatus(id, &st).ok());
    return st.log_path();
  }
  // What any first pod leaves (the netns pin directory, the test's cgroup parent).
  Footprint Baseline() {
    std::string warm;
    EXPECT_TRUE(h_->RunPod(h_->NewPod("warm-up"), &warm).ok());
    EXPECT_TRUE(h_->RemovePod(warm).ok());
    return FootprintWithoutBerthd();
  }
  // The pod's shim: the parent of its pause process (containerd's shim reparents to init);
  // 0, with a test failure, when it cannot be found.
  int ShimPid(const std::string& pod_id) {
    v1::PodSandboxStatusResponse pst;
    EXPECT_TRUE(h_->PodStatus(pod_id, &pst, true).ok());
    const std::string info = pst.info().count("info") ? pst.info().at("info") : "";
    const nlohmann::json j = nlohmann::json::parse(info, nullptr, false);
    const int pause = j.is_object() ? j.value("pid", 0) : 0;
    EXPECT_GT(pause, 0) << info;
    std::ifstream stat("/proc/" + std::to_string(pause) + "/stat");
    std::string statline;
    std::getline(stat, statline);
    if (statline.rfind(')') == std::string::npos) return 0;
    std::istringstream fields(statline.substr(statline.rfind(')') + 2));
    std::string state;
    int shim = 0;
    fields >> state >> shim;
    const std::string comm = ReadFileText("/proc/" + std::to_string(shim) + "/comm");
    EXPECT_THAT(comm, StartsWith("containerd-shim")) << "pid " << shim << ": " << statline;
    return comm.rfind("containerd-shim", 0) == 0 ? shim : 0;
  }
  // berthd again, logging at debug level (what it says about each stats reading).
  void RestartAtDebugLevel() {
    std::string config = ReadFile(h_->daemon().config());
    ASSERT_EQ(config.rfind("log_level: ", 0), 0u) << config;
    config.replace(0, config.find('\n'), "log_level: debug");
    WriteFile(h_->daemon().config(), config);
    h_->StopDaemon(SIGTERM);
    std::string error;
    ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  }
  template <typename Pred>
  bool Eventually(Pred pred, milliseconds timeout = seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return true;
  }
};

TEST_F(PodShimV2Test, APodRunsThroughContainerdsShimLikeThroughBerthShim) {
  const Footprint before = Baseline();
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "shimv2");
  ASSERT_FALSE(pod_id.empty());
  v1::PodSandboxStatusResponse pst;
  ASSERT_TRUE(h_->PodStatus(pod_id, &pst).ok());
  EXPECT_EQ(pst.status().state(), v1::SANDBOX_READY);
  EXPECT_EQ(pst.status().runtime_handler(), kHandler);

  const std::string id = Run(
      pod_id, pod,
      h_->NewContainer(pod, "app", {"sh", "-c", "echo out-line; echo err-line >&2; sleep 1000"}));
  ASSERT_FALSE(id.empty());
  // The CRI log, written by berthd from the shim's FIFOs.
  const fs::path log = LogPath(id);
  ASSERT_TRUE(Eventually([&] {
    const std::string text = ReadFileText(log);
    return text.find("err-line") != std::string::npos && text.find("out-line") != std::string::npos;
  })) << ReadFileText(log);
  const std::string text = ReadFileText(log);
  EXPECT_THAT(LogMessages(text, "stdout"), ::testing::ElementsAre("out-line"));
  EXPECT_THAT(LogMessages(text, "stderr"), ::testing::ElementsAre("err-line"));
  EXPECT_THAT(text, HasSubstr(" stdout F out-line\n"));

  // ExecSync: output, exit codes, the deadline.
  v1::ExecSyncResponse r;
  grpc::Status es = h_->ExecSync(id, {"sh", "-c", "echo hi; echo oops >&2; exit 3"}, 10, &r);
  ASSERT_TRUE(es.ok()) << Describe(es);
  EXPECT_EQ(r.stdout(), "hi\n");
  EXPECT_EQ(r.stderr(), "oops\n");
  EXPECT_EQ(r.exit_code(), 3);
  grpc::Status late = h_->ExecSync(id, {"sleep", "30"}, 1, &r);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(late);

  // Streaming exec goes through Task/Exec with FIFOs: the same for any shim.
  v1::ExecRequest ereq;
  ereq.set_container_id(id);
  for (const char* a : {"sh", "-c", "cat; exit 5"}) ereq.add_cmd(a);
  ereq.set_stdin(true);
  ereq.set_stdout(true);
  v1::ExecResponse eresp;
  ASSERT_TRUE(h_->rt().Exec(CriContext().get(), ereq, &eresp).ok());
  StreamClient c;
  ASSERT_TRUE(c.Connect(eresp.url()));
  ASSERT_THAT(c.Upgrade("POST", "v4.channel.k8s.io"), StartsWith("HTTP/1.1 101"));
  const uint32_t error = c.OpenTyped("error");
  const uint32_t in = c.OpenTyped("stdin");
  const uint32_t out = c.OpenTyped("stdout");
  ASSERT_TRUE(c.Send(in, "through containerd's shim\n"));
  ASSERT_TRUE(c.Fin(in));
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }, seconds(20)));
  EXPECT_EQ(c.stream(out).data, "through containerd's shim\n") << c.stream(error).data;
  EXPECT_THAT(c.stream(error).data, HasSubstr("\"message\":\"5\""));

  // Stats through the cgroup driver.
  v1::ContainerStatsRequest sreq;
  sreq.set_container_id(id);
  v1::ContainerStatsResponse sresp;
  ASSERT_TRUE(h_->rt().ContainerStats(CriContext().get(), sreq, &sresp).ok());
  EXPECT_GT(sresp.stats().memory().working_set_bytes().value(), 0u);

  // Stop: SIGTERM is ignored by sh waiting on sleep, so SIGKILL after the grace period.
  ASSERT_TRUE(h_->StopContainer(id, 1).ok());
  v1::ContainerStatus st;
  ASSERT_TRUE(h_->ContainerStatus(id, &st).ok());
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);
  ASSERT_TRUE(h_->RemoveContainer(id).ok());
  ASSERT_TRUE(h_->StopPod(pod_id).ok());
  ASSERT_TRUE(h_->RemovePod(pod_id).ok());
  // No shim, FIFO, mount or cgroup left.
  EXPECT_FALSE(fs::exists(h_->daemon().state() / "io.berth.cri" / "io" / id));
  ExpectBackTo(before);
}

TEST_F(PodShimV2Test, TheLogGoesOnAcrossABerthdCrash) {
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "restart");
  ASSERT_FALSE(pod_id.empty());
  const std::string id =
      Run(pod_id, pod,
          h_->NewContainer(pod, "counter",
                           {"sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"}));
  ASSERT_FALSE(id.empty());
  const fs::path log = LogPath(id);
  ASSERT_TRUE(Eventually([&] { return LogMessages(ReadFileText(log)).size() >= 5; }));
  h_->StopDaemon(SIGKILL);
  std::this_thread::sleep_for(milliseconds(500));  // the container goes on printing
  std::string error;
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  const size_t at_restart = LogMessages(ReadFileText(log)).size();
  ASSERT_TRUE(Eventually([&] { return LogMessages(ReadFileText(log)).size() >= at_restart + 20; }))
      << "the log stopped growing after the restart";
  // Nothing lost or repeated while berthd was away.
  const std::vector<std::string> lines = LogMessages(ReadFileText(log));
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i], "line" + std::to_string(i)) << "at entry " << i;
  }
  v1::ContainerStatus st;
  ASSERT_TRUE(h_->ContainerStatus(id, &st).ok());
  EXPECT_EQ(st.state(), v1::CONTAINER_RUNNING);

  // ReopenContainerLog after the kubelet's rotation.
  fs::rename(log, log.string() + ".1");
  v1::ReopenContainerLogRequest rreq;
  rreq.set_container_id(id);
  v1::ReopenContainerLogResponse rresp;
  ASSERT_TRUE(h_->rt().ReopenContainerLog(CriContext().get(), rreq, &rresp).ok());
  ASSERT_TRUE(Eventually([&] { return !LogMessages(ReadFileText(log)).empty(); }));
  EXPECT_THAT(LogMessages(ReadFileText(log)).front(), StartsWith("line"));

  ASSERT_TRUE(h_->StopPod(pod_id).ok());
  ASSERT_TRUE(h_->RemovePod(pod_id).ok());
}

TEST_F(PodShimV2Test, AttachReadsTheFifoCopyAndFeedsStdin) {
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "attach");
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig cfg =
      h_->NewContainer(pod, "reader", {"sh", "-c", "while read l; do echo got:$l; done"});
  cfg.set_stdin(true);
  const std::string id = Run(pod_id, pod, cfg);
  ASSERT_FALSE(id.empty());
  v1::AttachRequest a;
  a.set_container_id(id);
  a.set_stdin(true);
  a.set_stdout(true);
  v1::AttachResponse ar;
  ASSERT_TRUE(h_->rt().Attach(CriContext().get(), a, &ar).ok());
  StreamClient c;
  ASSERT_TRUE(c.Connect(ar.url()));
  ASSERT_THAT(c.Upgrade("POST", "v4.channel.k8s.io"), StartsWith("HTTP/1.1 101"));
  c.OpenTyped("error");
  const uint32_t in = c.OpenTyped("stdin");
  const uint32_t out = c.OpenTyped("stdout");
  ASSERT_TRUE(c.Send(in, "ping\n"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(out).data == "got:ping\n"; }))
      << c.stream(out).data;
  ASSERT_TRUE(c.GoAway());
  // The line is in the log too.
  EXPECT_TRUE(Eventually([&] {
    return ReadFileText(LogPath(id)).find("got:ping") != std::string::npos;
  }));
  ASSERT_TRUE(h_->StopPod(pod_id).ok());
  ASSERT_TRUE(h_->RemovePod(pod_id).ok());
}

TEST_F(PodShimV2Test, AHandlerWhoseShimIsMissingFailsThePodNamingIt) {
  const Footprint before = Baseline();
  std::string id;
  grpc::Status s = h_->RunPod(h_->NewPod("missing"), &id, "shimv2-missing");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("/nonexistent/containerd-shim-missing-v2"));
  EXPECT_THAT(s.error_message(), HasSubstr("shimv2-missing"));
  // Status (verbose) says the handler is not ready, with the path.
  v1::StatusRequest req;
  req.set_verbose(true);
  v1::StatusResponse resp;
  ASSERT_TRUE(h_->rt().Status(CriContext().get(), req, &resp).ok());
  std::vector<std::string> names;
  for (const auto& h : resp.runtime_handlers()) names.push_back(h.name());
  EXPECT_THAT(names, ::testing::IsSupersetOf({"runc", "shimv2-test", "shimv2-missing"}));
  const std::string info = resp.info().count("config") ? resp.info().at("config") : "";
  EXPECT_THAT(info, HasSubstr("ShimBinaryNotFound"));
  EXPECT_THAT(info, HasSubstr("/nonexistent/containerd-shim-missing-v2"));
  ExpectBackTo(before);
}

TEST_F(PodShimV2Test, AShimThatFailsToStartFailsThePodWithItsMessage) {
  const Footprint before = Baseline();
  std::string id;
  grpc::Status s = h_->RunPod(h_->NewPod("crash"), &id, "shimv2-crash");
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
  EXPECT_THAT(s.error_message(), HasSubstr("/dev/kvm: no such device"));
  EXPECT_THAT(s.error_message(), HasSubstr("crashing-shim"));
  // Nothing of the pod is left (network, mounts, cgroups), and runc pods still run.
  ExpectBackTo(before);
  std::string ok;
  EXPECT_TRUE(h_->RunPod(h_->NewPod("after"), &ok).ok());
}

TEST_F(PodShimV2Test, AShimThatNeverAnswersFailsThePodAtItsStartTimeout) {
  const Footprint before = Baseline();
  std::string id;
  const auto t0 = std::chrono::steady_clock::now();
  grpc::Status s = h_->RunPod(h_->NewPod("hang"), &id, "shimv2-hang");
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
  EXPECT_THAT(s.error_message(), HasSubstr("hanging-shim"));
  EXPECT_LT(took, seconds(10)) << "start_timeout: 2s was not applied";
  ExpectBackTo(before);  // the shim's start process is gone too
}

TEST_F(PodShimV2Test, AContainerForAPodWhoseShimDiedFailsAndThePodCanBeRemoved) {
  const Footprint before = Baseline();
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "orphan");
  ASSERT_FALSE(pod_id.empty());
  const int shim = ShimPid(pod_id);
  ASSERT_GT(shim, 1);
  ASSERT_EQ(::kill(shim, SIGKILL), 0);

  std::string id;
  grpc::Status s = h_->RunContainer(pod_id, pod, h_->NewContainer(pod, "late", {"true"}), &id);
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
  // Either the sandbox is already known to be gone, or the runtime says its shim is.
  EXPECT_THAT(s.error_message(),
              ::testing::AnyOf(HasSubstr("not ready"),
                               ::testing::AllOf(HasSubstr(kHandler),
                                                HasSubstr("containerd-shim-runc-v2"))))
      << Describe(s);
  EXPECT_TRUE(Eventually([&] {
    v1::PodSandboxStatusResponse st;
    return h_->PodStatus(pod_id, &st).ok() && st.status().state() == v1::SANDBOX_NOTREADY;
  })) << "the sandbox of a dead shim is still ready";
  EXPECT_TRUE(h_->StopPod(pod_id).ok());
  EXPECT_TRUE(h_->RemovePod(pod_id).ok());
  ExpectBackTo(before);
}

// UpdateContainerResources goes to the container's shim (Task/Update): for Kata the limits
// belong to the VM's guest, which only the shim can reach. containerd's shim applies them with
// `runc update`; berthd itself writes no cgroup file here, so the new limits in the container's
// cgroup came through the shim.
TEST_F(PodShimV2Test, ResourceUpdatesGoThroughTheShim) {
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "resize");
  ASSERT_FALSE(pod_id.empty());
  const std::string id = Run(pod_id, pod, h_->NewContainer(pod, "main", {"sleep", "1000"}));
  ASSERT_FALSE(id.empty());
  v1::UpdateContainerResourcesRequest req;
  req.set_container_id(id);
  req.mutable_linux()->set_cpu_shares(384);
  req.mutable_linux()->set_memory_limit_in_bytes(192 << 20);
  v1::UpdateContainerResourcesResponse resp;
  ASSERT_OK(h_->rt().UpdateContainerResources(CriContext().get(), req, &resp));
  ExpectContainerCgroupLimits(id, 192 << 20, 384);
  v1::ContainerStatus st;
  ASSERT_OK(h_->ContainerStatus(id, &st));
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 192 << 20);

  // What the shim refuses reaches the caller, and the recorded resources stay as they were.
  req.mutable_linux()->set_memory_limit_in_bytes(64 << 20);
  req.mutable_linux()->set_cpuset_cpus("63");  // well formed, but no such CPU here
  grpc::Status refused = h_->rt().UpdateContainerResources(CriContext().get(), req, &resp);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.error_message(), HasSubstr("UpdateContainerResources " + id));
  ASSERT_OK(h_->ContainerStatus(id, &st));
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 192 << 20);

  ASSERT_OK(h_->StopContainer(id, 1));
  // A stopped container has nothing to update.
  EXPECT_EQ(h_->rt().UpdateContainerResources(CriContext().get(), req, &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_OK(h_->RemoveContainer(id));
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
}

// A container of a shim v2 handler gets its CPU and memory figures from its shim
// (Task/Stats), as a Kata container must: its processes are in a VM and the host holds no
// cgroup of theirs. containerd's shim reads the very cgroup berthd's driver would read, so the
// figures cannot tell which way they came; berthd's log does. At log_level: debug it writes,
// for each reading through a shim, "stats of container <id> from its shim (handler <name>,
// <message type>)", and when the shim fails, a line saying so and that the host cgroup was read
// instead: what an operator looks for when a VM runtime's stats look wrong.
TEST_F(PodShimV2Test, ABusyContainersStatsComeThroughItsShim) {
  RestartAtDebugLevel();
  if (HasFatalFailure()) return;

  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "busy");
  ASSERT_FALSE(pod_id.empty());
  const std::string id =
      Run(pod_id, pod, h_->NewContainer(pod, "spin", {"sh", "-c", "while :; do :; done"}));
  ASSERT_FALSE(id.empty());

  v1::ContainerStatsRequest req;
  req.set_container_id(id);
  v1::ContainerStatsResponse first, second;
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &first));
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &second));
  const v1::ContainerStats& st = second.stats();
  EXPECT_GT(first.stats().cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(st.cpu().usage_core_nano_seconds().value(),
            first.stats().cpu().usage_core_nano_seconds().value());
  // Spinning for 0.5 s: a good part of a core (a loaded CI machine gives it less).
  EXPECT_GT(st.cpu().usage_nano_cores().value(), 50'000'000u);
  EXPECT_GT(st.memory().working_set_bytes().value(), 0u);
  EXPECT_GE(st.memory().usage_bytes().value(), st.memory().working_set_bytes().value());
  EXPECT_GT(st.memory().rss_bytes().value(), 0u);
  EXPECT_GT(st.memory().page_faults().value(), 0u);

  // The same through ListContainerStats and as the container part of the pod's stats.
  v1::ListContainerStatsRequest lreq;
  lreq.mutable_filter()->set_pod_sandbox_id(pod_id);
  v1::ListContainerStatsResponse list;
  ASSERT_OK(h_->rt().ListContainerStats(CriContext().get(), lreq, &list));
  ASSERT_EQ(list.stats_size(), 1);
  EXPECT_EQ(list.stats(0).attributes().id(), id);
  EXPECT_GT(list.stats(0).cpu().usage_core_nano_seconds().value(), 0u);
  v1::PodSandboxStatsRequest preq;
  preq.set_pod_sandbox_id(pod_id);
  v1::PodSandboxStatsResponse pstats;
  ASSERT_OK(h_->rt().PodSandboxStats(CriContext().get(), preq, &pstats));
  ASSERT_EQ(pstats.stats().linux().containers_size(), 1);
  EXPECT_GT(pstats.stats().linux().containers(0).memory().working_set_bytes().value(), 0u);

  // Four readings, each through the shim (cgroup v1 metrics on a v1 or hybrid host, v2 on a
  // unified one), none falling back to the host cgroup.
  const std::string log = h_->daemon().Log();
  const std::string through = "stats of container " + id + " from its shim (handler " +
                              std::string(kHandler) + ", io.containerd.cgroups.v";
  size_t readings = 0;
  for (size_t at = log.find(through); at != std::string::npos; at = log.find(through, at + 1)) {
    ++readings;
  }
  EXPECT_GE(readings, 4u) << h_->LogTail();
  EXPECT_THAT(log, ::testing::Not(HasSubstr("stats of container " + id + ": the shim")));

  ASSERT_OK(h_->StopContainer(id, 1));
  ASSERT_OK(h_->RemoveContainer(id));
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
}

// A shim that stops answering (here: SIGSTOP) does not make the kubelet's stats calls hang or
// fail: the first of its containers waits for Task/Stats's 5 s, then that container and the
// pod's others are read from their cgroups on the host, without asking the shim again in the
// same call — one timeout per call and pod, not one per container.
TEST_F(PodShimV2Test, AShimThatDoesNotAnswerCostsOneTimeoutAndTheHostCgroupsAnswer) {
  RestartAtDebugLevel();
  if (HasFatalFailure()) return;
  v1::PodSandboxConfig pod;
  const std::string pod_id = RunPod(&pod, "frozen");
  ASSERT_FALSE(pod_id.empty());
  std::vector<std::string> ids;
  for (const char* name : {"a", "b", "c"}) {
    ids.push_back(Run(pod_id, pod, h_->NewContainer(pod, name, {"sleep", "1000"})));
    ASSERT_FALSE(ids.back().empty());
  }
  const int shim = ShimPid(pod_id);
  ASSERT_GT(shim, 1);
  ASSERT_EQ(::kill(shim, SIGSTOP), 0);
  struct Resume {  // even when an assertion fails: the harness must be able to stop the pod
    int pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{shim};
  // The stop is complete when every thread of the shim is stopped ('T').
  ASSERT_TRUE(Eventually([&] {
    std::error_code ec;
    for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(shim) + "/task", ec)) {
      const std::string stat = ReadFileText(t.path() / "stat");
      const size_t paren = stat.rfind(')');
      if (paren == std::string::npos || stat.substr(paren + 2, 1) != "T") return false;
    }
    return !ec;
  })) << "shim " << shim << " did not stop";

  v1::ListContainerStatsRequest req;
  req.mutable_filter()->set_pod_sandbox_id(pod_id);
  v1::ListContainerStatsResponse resp;
  const auto started = std::chrono::steady_clock::now();
  ASSERT_OK(h_->rt().ListContainerStats(CriContext(seconds(60)).get(), req, &resp));
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(resp.stats_size(), 3);
  for (const v1::ContainerStats& st : resp.stats()) {
    EXPECT_GT(st.memory().working_set_bytes().value(), 0u) << st.attributes().id();
    EXPECT_GT(st.cpu().usage_core_nano_seconds().value(), 0u) << st.attributes().id();
  }
  // One timeout (5 s), where asking each container's shim would take 15 s.
  EXPECT_LT(took, seconds(12));
  const std::string log = h_->daemon().Log();
  size_t timed_out = 0, not_asked = 0;
  for (const std::string& id : ids) {
    timed_out += log.find("stats of container " + id + ": the shim of handler") != std::string::npos;
    not_asked += log.find("stats of container " + id + ": not asking the shim of pod " + pod_id) !=
                 std::string::npos;
  }
  EXPECT_EQ(timed_out, 1u) << h_->LogTail();
  EXPECT_EQ(not_asked, 2u) << h_->LogTail();
  EXPECT_THAT(log, HasSubstr("reading its cgroup"));

  // Answering again, the shim is asked again (the next call starts afresh).
  ::kill(shim, SIGCONT);
  v1::ContainerStatsRequest one;
  one.set_container_id(ids[0]);
  v1::ContainerStatsResponse again;
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), one, &again));
  EXPECT_THAT(h_->daemon().Log(),
              HasSubstr("stats of container " + ids[0] + " from its shim (handler"));
  for (const std::string& id : ids) ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
}

}  // namespace
}  // namespace berth::testing
