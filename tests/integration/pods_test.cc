// SPDX-License-Identifier: Apache-2.0
// Pods end to end: a real berthd (CRI plugin, image store, overlay snapshotter, runc through
// berth-shim) driven through its CRI socket with the generated gRPC client, the way the
// kubelet drives it: RunPodSandbox to RemovePodSandbox, containers in every state, logs and
// their rotation, ExecSync, stats, the event stream, a berthd restart under load, 50 pods
// that must leave nothing behind, and the errors a kubelet acts upon.
//
// Images are built by the test (tests/tools/oci_image.py from Debian's busybox-static) and
// pushed to a docker-registry on loopback; the pause image is busybox running
// `sleep 2147483647`. Every test has its own berthd, root, state, runc root, log directory
// and cgroup parent under one temporary directory; PodHarness::Cleanup() removes everything
// even when a test failed or berthd crashed (see pod_harness.h).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include "cri/v1/api.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::UnorderedElementsAre;

constexpr char kMissingId[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::map<std::string, std::string> AsMap(const google::protobuf::Map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Polls `done` every 50 ms until it holds or `timeout` passes.
template <typename F>
bool WaitFor(F done, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return true;
}

// One line of a CRI log: "<RFC3339Nano> <stream> <F|P> <text>".
struct LogLine {
  std::string time, stream, tag, text;
};

// Lines of a CRI log file; lines that do not have the format go to *bad.
std::vector<LogLine> ParseCriLog(const fs::path& path, std::vector<std::string>* bad = nullptr) {
  static const std::regex kLine(
      R"(^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})))"  // RFC 3339
      R"( (stdout|stderr) (F|P) (.*)$)");
  std::vector<LogLine> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kLine)) {
      out.push_back({m[1], m[4], m[5], m[6]});
    } else if (bad != nullptr) {
      bad->push_back(line);
    }
  }
  return out;
}

// The numbers n of "line<n>" lines of a CRI log, in file order.
std::vector<int> LineNumbers(const fs::path& path) {
  std::vector<int> out;
  for (const LogLine& l : ParseCriLog(path)) {
    if (l.text.rfind("line", 0) == 0) out.push_back(std::atoi(l.text.c_str() + 4));
  }
  return out;
}

std::vector<std::string> Ids(const std::vector<v1::Container>& v) {
  std::vector<std::string> out;
  for (const auto& c : v) out.push_back(c.id());
  return out;
}
std::vector<std::string> Ids(const std::vector<v1::PodSandbox>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.id());
  return out;
}

class PodsTest : public PodFixture<> {
 protected:
  void SetUp() override { StartHarness("pods"); }

  // RunPodSandbox; "" (and a test failure) when it fails.
  std::string RunPod(const v1::PodSandboxConfig& pod, const std::string& handler = "") {
    std::string id;
    grpc::Status s = h_->RunPod(pod, &id, handler);
    EXPECT_TRUE(s.ok()) << "RunPodSandbox " << pod.metadata().name() << ": " << Describe(s);
    return s.ok() ? id : "";
  }
  // CreateContainer + StartContainer; "" (and a test failure) when either fails.
  std::string RunContainer(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                           const v1::ContainerConfig& c) {
    std::string id;
    grpc::Status s = h_->CreateContainer(pod_id, pod, c, &id);
    EXPECT_TRUE(s.ok()) << "CreateContainer " << c.metadata().name() << ": " << Describe(s);
    if (!s.ok()) return "";
    s = h_->StartContainer(id);
    EXPECT_TRUE(s.ok()) << "StartContainer " << c.metadata().name() << ": " << Describe(s);
    return s.ok() ? id : "";
  }
  // RunContainer, then waits until it is RUNNING.
  std::string RunRunning(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                         const v1::ContainerConfig& c) {
    std::string id = RunContainer(pod_id, pod, c);
    if (id.empty()) return "";
    v1::ContainerStatus st;
    bool running = h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10), &st);
    EXPECT_TRUE(running) << c.metadata().name() << " is " << v1::ContainerState_Name(st.state())
                         << " (exit " << st.exit_code() << ", " << st.reason() << ")";
    return running ? id : "";
  }
  // ExecSync that must succeed with exit code 0; its stdout.
  std::string Exec(const std::string& id, std::vector<std::string> cmd, int64_t timeout = 10) {
    std::string shown;
    for (const auto& a : cmd) shown += a + " ";
    v1::ExecSyncResponse r;
    grpc::Status s = h_->ExecSync(id, std::move(cmd), timeout, &r);
    EXPECT_TRUE(s.ok()) << "ExecSync " << shown << ": " << Describe(s);
    EXPECT_EQ(r.exit_code(), 0) << "ExecSync " << shown << ": stderr " << r.stderr();
    return r.stdout();
  }
  std::vector<v1::Container> Containers(const v1::ContainerFilter* f = nullptr) {
    std::vector<v1::Container> out;
    grpc::Status s = h_->ListContainers(f, &out);
    EXPECT_TRUE(s.ok()) << "ListContainers: " << Describe(s);
    return out;
  }
  std::vector<v1::PodSandbox> Pods(const v1::PodSandboxFilter* f = nullptr) {
    std::vector<v1::PodSandbox> out;
    grpc::Status s = h_->ListPods(f, &out);
    EXPECT_TRUE(s.ok()) << "ListPodSandbox: " << Describe(s);
    return out;
  }
  fs::path LogFile(const v1::PodSandboxConfig& pod, const v1::ContainerConfig& c) {
    return fs::path(pod.log_directory()) / c.log_path();
  }

  // After every pod is gone: no process of the test but berthd, no netns pin, no overlay or
  // tmpfs mount under the state or root directories but what berthd keeps for itself (the
  // netns pin directory), no cgroup below the test's parent.
  void ExpectNothingLeft(const std::string& when) {
    auto only_berthd = [&] {
      std::vector<pid_t> p = ProcessesOf(h_->root(), h_->cgroup_parent());
      p.erase(std::remove(p.begin(), p.end(), h_->daemon().pid()), p.end());
      return p;
    };
    WaitFor([&] { return only_berthd().empty(); }, seconds(10));
    for (pid_t pid : only_berthd()) {
      ADD_FAILURE() << when << ": process left: " << pid << " " << ProcText(pid, "cmdline");
    }
    for (const MountEntry& m : MountsUnder(h_->root())) {
      if (m.fs_type == "nsfs" || m.fs_type == "overlay" || m.fs_type == "tmpfs" ||
          m.fs_type == "proc" || m.fs_type == "mqueue") {
        ADD_FAILURE() << when << ": mount left: " << m.mount_point << " (" << m.fs_type << ")";
      }
    }
    for (const std::string& c : CgroupDirs(h_->cgroup_parent())) {
      if (c.substr(c.find(':') + 1) != h_->cgroup_parent()) {
        ADD_FAILURE() << when << ": cgroup left: " << c;
      }
    }
  }

};

// 1 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, PodWithOneContainerRunsExitsLogsIsListedAndGoesAway) {
  v1::PodSandboxConfig pod = h_->NewPod("one");
  (*pod.mutable_labels())["tier"] = "backend";
  (*pod.mutable_annotations())["berth.test/note"] = "kept as it is: {\"a\": 1}";
  const int64_t before_ns = NowNs();
  std::string pod_id = RunPod(pod, "runc");
  ASSERT_FALSE(pod_id.empty());
  EXPECT_THAT(pod_id, MatchesRegex("[0-9a-f]{64}"));

  v1::PodSandboxStatusResponse ps;
  ASSERT_OK(h_->PodStatus(pod_id, &ps));
  EXPECT_EQ(ps.status().id(), pod_id);
  EXPECT_EQ(ps.status().state(), v1::SANDBOX_READY);
  EXPECT_GE(ps.status().created_at(), before_ns - 1'000'000'000);
  EXPECT_LE(ps.status().created_at(), NowNs());
  EXPECT_EQ(ps.status().metadata().name(), "one");
  EXPECT_EQ(ps.status().metadata().namespace_(), "berth-test");
  EXPECT_EQ(ps.status().metadata().uid(), pod.metadata().uid());
  EXPECT_EQ(ps.status().metadata().attempt(), 0u);
  EXPECT_EQ(AsMap(ps.status().labels()), AsMap(pod.labels()));
  EXPECT_EQ(AsMap(ps.status().annotations()), AsMap(pod.annotations()));
  EXPECT_EQ(ps.status().runtime_handler(), "runc");
  const auto& nso = ps.status().linux().namespaces().options();
  EXPECT_EQ(nso.network(), v1::POD);
  EXPECT_EQ(nso.pid(), v1::CONTAINER);
  EXPECT_EQ(nso.ipc(), v1::POD);

  v1::UpdateRuntimeConfigRequest urc;
  urc.mutable_runtime_config()->mutable_network_config()->set_pod_cidr("10.88.0.0/16");
  v1::UpdateRuntimeConfigResponse urc_resp;
  EXPECT_OK(h_->rt().UpdateRuntimeConfig(CriContext().get(), urc, &urc_resp));

  // A container that writes to both streams and fails.
  v1::ContainerConfig c =
      h_->NewContainer(pod, "main", {"sh", "-c", "echo hello; echo oops >&2; exit 3"});
  (*c.mutable_annotations())["berth.test/container-note"] = "x=y";
  std::string cid;
  ASSERT_OK(h_->CreateContainer(pod_id, pod, c, &cid));
  EXPECT_THAT(cid, MatchesRegex("[0-9a-f]{64}"));
  v1::ContainerStatus st;
  ASSERT_OK(h_->ContainerStatus(cid, &st));
  EXPECT_EQ(st.id(), cid);
  EXPECT_EQ(st.state(), v1::CONTAINER_CREATED);
  EXPECT_GT(st.created_at(), 0);
  EXPECT_EQ(st.started_at(), 0);
  EXPECT_EQ(st.metadata().name(), "main");
  EXPECT_EQ(st.metadata().attempt(), 0u);
  EXPECT_EQ(st.log_path(), LogFile(pod, c).string());
  EXPECT_EQ(st.image().image(), h_->images().busybox);
  EXPECT_EQ(AsMap(st.labels()), AsMap(c.labels()));
  EXPECT_EQ(AsMap(st.annotations()), AsMap(c.annotations()));

  ASSERT_OK(h_->StartContainer(cid));
  ASSERT_TRUE(h_->WaitForState(cid, v1::CONTAINER_EXITED, seconds(20), &st))
      << "state " << v1::ContainerState_Name(st.state());
  EXPECT_EQ(st.exit_code(), 3);
  EXPECT_EQ(st.reason(), "Error");
  EXPECT_GT(st.started_at(), st.created_at());
  EXPECT_GE(st.finished_at(), st.started_at());
  EXPECT_LE(st.finished_at(), NowNs());
  EXPECT_FALSE(st.image_ref().empty());

  // Both lines in the CRI log format, on their streams.
  std::vector<std::string> bad;
  std::vector<LogLine> lines;
  WaitFor([&] { return ParseCriLog(LogFile(pod, c)).size() >= 2; }, seconds(5));
  lines = ParseCriLog(LogFile(pod, c), &bad);
  EXPECT_THAT(bad, IsEmpty()) << ReadFile(LogFile(pod, c));
  ASSERT_EQ(lines.size(), 2u) << ReadFile(LogFile(pod, c));
  std::vector<std::string> got;
  for (const LogLine& l : lines) got.push_back(l.stream + " " + l.tag + " " + l.text);
  EXPECT_THAT(got, UnorderedElementsAre("stdout F hello", "stderr F oops"));

  // A running container next to it, and a second (host network) pod.
  v1::ContainerConfig r = h_->NewContainer(pod, "runner", {"sleep", "1000"});
  (*r.mutable_labels())["role"] = "runner";
  std::string rid = RunRunning(pod_id, pod, r);
  ASSERT_FALSE(rid.empty());
  v1::PodSandboxConfig pod2 = h_->NewPod("two", Network::kHost);
  (*pod2.mutable_labels())["tier"] = "frontend";
  std::string pod2_id = RunPod(pod2);
  ASSERT_FALSE(pod2_id.empty());

  // ListContainers with each filter (pause containers are never listed).
  EXPECT_THAT(Ids(Containers()), UnorderedElementsAre(cid, rid));
  v1::ContainerFilter f;
  f.set_id(cid);
  std::vector<v1::Container> one = Containers(&f);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id(), cid);
  EXPECT_EQ(one[0].pod_sandbox_id(), pod_id);
  EXPECT_EQ(one[0].metadata().name(), "main");
  EXPECT_EQ(one[0].state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(one[0].image().image(), h_->images().busybox);
  EXPECT_FALSE(one[0].image_ref().empty());
  EXPECT_GT(one[0].created_at(), 0);
  EXPECT_EQ(AsMap(one[0].labels()), AsMap(c.labels()));
  EXPECT_EQ(AsMap(one[0].annotations()), AsMap(c.annotations()));
  f.Clear();
  f.mutable_state()->set_state(v1::CONTAINER_RUNNING);
  EXPECT_THAT(Ids(Containers(&f)), ElementsAre(rid));
  f.mutable_state()->set_state(v1::CONTAINER_EXITED);
  EXPECT_THAT(Ids(Containers(&f)), ElementsAre(cid));
  f.mutable_state()->set_state(v1::CONTAINER_CREATED);
  EXPECT_THAT(Ids(Containers(&f)), IsEmpty());
  f.Clear();
  (*f.mutable_label_selector())["role"] = "runner";
  EXPECT_THAT(Ids(Containers(&f)), ElementsAre(rid));
  (*f.mutable_label_selector())["role"] = "nobody";
  EXPECT_THAT(Ids(Containers(&f)), IsEmpty());
  f.Clear();
  (*f.mutable_label_selector())["io.kubernetes.container.name"] = "main";
  (*f.mutable_label_selector())["io.kubernetes.pod.name"] = "one";
  EXPECT_THAT(Ids(Containers(&f)), ElementsAre(cid));
  f.Clear();
  f.set_pod_sandbox_id(pod_id);
  EXPECT_THAT(Ids(Containers(&f)), UnorderedElementsAre(cid, rid));
  f.mutable_state()->set_state(v1::CONTAINER_RUNNING);
  EXPECT_THAT(Ids(Containers(&f)), ElementsAre(rid));
  f.Clear();
  f.set_pod_sandbox_id(pod2_id);
  EXPECT_THAT(Ids(Containers(&f)), IsEmpty());

  // ListPodSandbox with each filter.
  EXPECT_THAT(Ids(Pods()), UnorderedElementsAre(pod_id, pod2_id));
  v1::PodSandboxFilter pf;
  pf.set_id(pod_id);
  std::vector<v1::PodSandbox> pods = Pods(&pf);
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_EQ(pods[0].metadata().uid(), pod.metadata().uid());
  EXPECT_EQ(pods[0].state(), v1::SANDBOX_READY);
  EXPECT_EQ(pods[0].created_at(), ps.status().created_at());
  EXPECT_EQ(AsMap(pods[0].labels()), AsMap(pod.labels()));
  EXPECT_EQ(AsMap(pods[0].annotations()), AsMap(pod.annotations()));
  EXPECT_EQ(pods[0].runtime_handler(), "runc");
  pf.Clear();
  pf.mutable_state()->set_state(v1::SANDBOX_READY);
  EXPECT_THAT(Ids(Pods(&pf)), UnorderedElementsAre(pod_id, pod2_id));
  pf.Clear();
  (*pf.mutable_label_selector())["tier"] = "backend";
  EXPECT_THAT(Ids(Pods(&pf)), ElementsAre(pod_id));
  (*pf.mutable_label_selector())["tier"] = "frontend";
  EXPECT_THAT(Ids(Pods(&pf)), ElementsAre(pod2_id));
  (*pf.mutable_label_selector())["tier"] = "nope";
  EXPECT_THAT(Ids(Pods(&pf)), IsEmpty());

  // Stopping the pod stops its containers; removing it removes them.
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->PodStatus(pod_id, &ps));
  EXPECT_EQ(ps.status().state(), v1::SANDBOX_NOTREADY);
  EXPECT_TRUE(h_->WaitForState(rid, v1::CONTAINER_EXITED, seconds(10), &st))
      << "runner is " << v1::ContainerState_Name(st.state()) << " after StopPodSandbox";
  pf.Clear();
  pf.mutable_state()->set_state(v1::SANDBOX_NOTREADY);
  EXPECT_THAT(Ids(Pods(&pf)), ElementsAre(pod_id));
  pf.mutable_state()->set_state(v1::SANDBOX_READY);
  EXPECT_THAT(Ids(Pods(&pf)), ElementsAre(pod2_id));

  ASSERT_OK(h_->RemovePod(pod_id));
  EXPECT_CODE(h_->PodStatus(pod_id, &ps), NOT_FOUND);
  EXPECT_CODE(h_->ContainerStatus(cid, &st), NOT_FOUND);
  EXPECT_CODE(h_->ContainerStatus(rid, &st), NOT_FOUND);
  EXPECT_THAT(Containers(), IsEmpty());
  ASSERT_OK(h_->StopPod(pod2_id));
  ASSERT_OK(h_->RemovePod(pod2_id));
  EXPECT_THAT(Pods(), IsEmpty());
  // The log directory is the kubelet's: the logs stay.
  EXPECT_TRUE(fs::exists(LogFile(pod, c)));
  ExpectNothingLeft("after both pods were removed");
}

// 2 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, ContainersOfAPodShareItsNetworkIpcUtsNamespacesHostsAndResolvConf) {
  v1::PodSandboxConfig pod = h_->NewPod("shared");
  auto* dns = pod.mutable_dns_config();
  dns->add_servers("10.0.0.10");
  dns->add_servers("10.0.0.11");
  dns->add_searches("berth-test.svc.cluster.local");
  dns->add_searches("cluster.local");
  dns->add_options("ndots:5");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string a = RunRunning(pod_id, pod, h_->NewContainer(pod, "a", {"sleep", "1000"}));
  std::string b = RunRunning(pod_id, pod, h_->NewContainer(pod, "b", {"sleep", "1000"}));
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());

  for (const std::string ns : {"net", "ipc", "uts"}) {
    std::string in_a = Exec(a, {"readlink", "/proc/self/ns/" + ns});
    std::string in_b = Exec(b, {"readlink", "/proc/self/ns/" + ns});
    EXPECT_THAT(in_a, HasSubstr(ns + ":["));
    EXPECT_EQ(in_a, in_b) << ns;
    std::error_code ec;
    EXPECT_NE(in_a, fs::read_symlink("/proc/self/ns/" + ns, ec).string() + "\n")
        << ns << " namespace is the host's";
  }
  // pid CONTAINER (the kubelet's default): each has its own, its command is PID 1.
  EXPECT_NE(Exec(a, {"readlink", "/proc/self/ns/pid"}), Exec(b, {"readlink", "/proc/self/ns/pid"}));
  EXPECT_EQ(Exec(a, {"sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"}), "sleep 1000 ");

  for (const std::string& id : {a, b}) {
    EXPECT_EQ(Exec(id, {"hostname"}), "shared\n");
    std::string hosts = Exec(id, {"cat", "/etc/hosts"});
    EXPECT_THAT(hosts, HasSubstr("localhost"));
    EXPECT_THAT(hosts, HasSubstr("shared"));
    std::string resolv = Exec(id, {"cat", "/etc/resolv.conf"});
    EXPECT_THAT(resolv, HasSubstr("nameserver 10.0.0.10\n"));
    EXPECT_THAT(resolv, HasSubstr("nameserver 10.0.0.11\n"));
    EXPECT_THAT(resolv, HasSubstr("search berth-test.svc.cluster.local cluster.local\n"));
    EXPECT_THAT(resolv, HasSubstr("options ndots:5\n"));
  }
  // The pod's /dev/shm is shared.
  Exec(a, {"sh", "-c", "echo from-a > /dev/shm/x"});
  EXPECT_EQ(Exec(b, {"cat", "/dev/shm/x"}), "from-a\n");
  // A private network namespace: loopback up, and eth0 on the test's bridge network.
  std::string dev = Exec(a, {"cat", "/proc/net/dev"});
  std::vector<std::string> ifaces;
  std::istringstream in(dev);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    ifaces.push_back(name);
  }
  EXPECT_THAT(ifaces, ::testing::UnorderedElementsAre("lo", "eth0")) << dev;
  std::string lo = Exec(a, {"ip", "addr", "show", "lo"});
  EXPECT_THAT(lo, HasSubstr("127.0.0.1"));
  EXPECT_THAT(lo, HasSubstr("UP"));
  v1::PodSandboxStatusResponse pst;
  ASSERT_TRUE(h_->PodStatus(pod_id, &pst).ok());
  const std::string ip = pst.status().network().ip();
  EXPECT_EQ(ip.rfind(h_->subnet().substr(0, h_->subnet().size() - 4), 0), 0u)
      << ip << " is not in " << h_->subnet();
  EXPECT_THAT(Exec(a, {"ip", "addr", "show", "eth0"}), HasSubstr(ip + "/24"));
  // /etc/hosts names the pod on its IP.
  EXPECT_THAT(Exec(a, {"cat", "/etc/hosts"}), HasSubstr(ip + "\tshared"));

  // A pod sharing its process namespace (pid POD): both containers see the pause process as
  // PID 1.
  v1::PodSandboxConfig spod = h_->NewPod("shared-pid");
  spod.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  std::string spod_id = RunPod(spod);
  ASSERT_FALSE(spod_id.empty());
  std::string c = RunRunning(spod_id, spod, h_->NewContainer(spod, "c", {"sleep", "1001"}));
  std::string d = RunRunning(spod_id, spod, h_->NewContainer(spod, "d", {"sleep", "1002"}));
  ASSERT_FALSE(c.empty());
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(Exec(c, {"readlink", "/proc/self/ns/pid"}), Exec(d, {"readlink", "/proc/self/ns/pid"}));
  EXPECT_EQ(Exec(c, {"sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"}), "/bin/sleep 2147483647 ");
  EXPECT_THAT(Exec(c, {"ps"}), HasSubstr("sleep 1002"));

  // A host-network pod: the node's network and UTS namespaces, and its hostname.
  v1::PodSandboxConfig hpod = h_->NewPod("host-net", Network::kHost);
  std::string hpod_id = RunPod(hpod);
  ASSERT_FALSE(hpod_id.empty());
  std::string e = RunRunning(hpod_id, hpod, h_->NewContainer(hpod, "e", {"sleep", "1000"}));
  ASSERT_FALSE(e.empty());
  std::error_code ec;
  EXPECT_EQ(Exec(e, {"readlink", "/proc/self/ns/net"}),
            fs::read_symlink("/proc/self/ns/net", ec).string() + "\n");
  char node[256] = {};
  ::gethostname(node, sizeof(node) - 1);
  EXPECT_EQ(Exec(e, {"hostname"}), std::string(node) + "\n");
}

// 3 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, AttemptsOfAContainerAndOfAPodAreKeptApart) {
  v1::PodSandboxConfig pod = h_->NewPod("attempts");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());

  v1::ContainerConfig c0 = h_->NewContainer(pod, "app", {"sh", "-c", "exit 0"}, 0);
  std::string id0 = RunContainer(pod_id, pod, c0);
  ASSERT_FALSE(id0.empty());
  v1::ContainerStatus st;
  ASSERT_TRUE(h_->WaitForState(id0, v1::CONTAINER_EXITED, seconds(20), &st));
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");

  // The same name and attempt again: refused, and nothing new listed.
  EXPECT_CODE(h_->CreateContainer(pod_id, pod, h_->NewContainer(pod, "app", {"true"}, 0), nullptr),
              ALREADY_EXISTS);
  EXPECT_THAT(Ids(Containers()), ElementsAre(id0));

  // Attempt 1 (what the kubelet does on restart) is a new container beside the old one.
  v1::ContainerConfig c1 =
      h_->NewContainer(pod, "app", {"sh", "-c", "echo attempt 1; exec sleep 1000"}, 1);
  std::string id1 = RunRunning(pod_id, pod, c1);
  ASSERT_FALSE(id1.empty());
  EXPECT_NE(id0, id1);
  std::map<std::string, uint32_t> attempts;
  for (const v1::Container& c : Containers()) {
    EXPECT_EQ(c.metadata().name(), "app");
    attempts[c.id()] = c.metadata().attempt();
  }
  EXPECT_EQ(attempts, (std::map<std::string, uint32_t>{{id0, 0}, {id1, 1}}));
  ASSERT_OK(h_->ContainerStatus(id1, &st));
  EXPECT_EQ(st.metadata().attempt(), 1u);
  EXPECT_EQ(st.log_path(), LogFile(pod, c1).string());
  ASSERT_OK(h_->ContainerStatus(id0, &st));
  EXPECT_EQ(st.metadata().attempt(), 0u);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_CODE(h_->CreateContainer(pod_id, pod, h_->NewContainer(pod, "app", {"true"}, 1), nullptr),
              ALREADY_EXISTS);
  EXPECT_EQ(Containers().size(), 2u);

  // Pods: the same metadata again is refused naming the holder; attempt 1 is a new pod.
  std::string dup;
  grpc::Status s = h_->RunPod(pod, &dup);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr(pod_id));
  v1::PodSandboxConfig pod1 = pod;
  pod1.mutable_metadata()->set_attempt(1);
  std::string pod1_id = RunPod(pod1);
  ASSERT_FALSE(pod1_id.empty());
  EXPECT_NE(pod1_id, pod_id);
  v1::PodSandboxFilter pf;
  (*pf.mutable_label_selector())["io.kubernetes.pod.name"] = "attempts";
  std::map<std::string, uint32_t> pod_attempts;
  for (const v1::PodSandbox& p : Pods(&pf)) pod_attempts[p.id()] = p.metadata().attempt();
  EXPECT_EQ(pod_attempts, (std::map<std::string, uint32_t>{{pod_id, 0}, {pod1_id, 1}}));
}

// 4 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, ContainersStopAndGoAwayInEveryState) {
  // The host's PID namespace: `sleep` is not the init of a PID namespace, which would ignore
  // SIGTERM (it installs no handler), so it dies of the stop signal as in most real images.
  v1::PodSandboxConfig pod = h_->NewPod("stops");
  pod.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::NODE);
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerStatus st;

  // Created, never started: removed.
  std::string created;
  ASSERT_OK(h_->CreateContainer(pod_id, pod, h_->NewContainer(pod, "created", {"sleep", "1000"}),
                                &created));
  ASSERT_OK(h_->ContainerStatus(created, &st));
  EXPECT_EQ(st.state(), v1::CONTAINER_CREATED);
  EXPECT_OK(h_->RemoveContainer(created));
  EXPECT_CODE(h_->ContainerStatus(created, &st), NOT_FOUND);
  EXPECT_OK(h_->RemoveContainer(created));
  EXPECT_OK(h_->StopContainer(created, 0));
  EXPECT_THAT(Containers(), IsEmpty());

  // Running, removed without a stop: forcibly, its processes and cgroup go.
  std::string running =
      RunRunning(pod_id, pod, h_->NewContainer(pod, "running", {"sleep", "1000"}));
  ASSERT_FALSE(running.empty());
  std::optional<std::vector<pid_t>> procs = h_->CgroupProcs(running);
  ASSERT_TRUE(procs.has_value()) << "no cgroup " << h_->cgroup_parent() << "/" << running;
  EXPECT_FALSE(procs->empty());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_OK(h_->RemoveContainer(running));
  EXPECT_LT(SecondsSince(t0), 10.0);
  EXPECT_CODE(h_->ContainerStatus(running, &st), NOT_FOUND);
  EXPECT_TRUE(WaitFor([&] { return std::all_of(procs->begin(), procs->end(), IsZombieOrGone); },
                      seconds(5)))
      << "the container's processes outlived RemoveContainer";
  EXPECT_TRUE(WaitFor([&] { return !h_->CgroupProcs(running).has_value(); }, seconds(5)))
      << "its cgroup outlived RemoveContainer";

  // Exited: stopping changes nothing; stop twice, remove twice.
  std::string exited = RunContainer(pod_id, pod, h_->NewContainer(pod, "exited", {"true"}));
  ASSERT_FALSE(exited.empty());
  ASSERT_TRUE(h_->WaitForState(exited, v1::CONTAINER_EXITED, seconds(20), &st));
  const int64_t finished = st.finished_at();
  t0 = std::chrono::steady_clock::now();
  EXPECT_OK(h_->StopContainer(exited, 10));
  EXPECT_OK(h_->StopContainer(exited, 10));
  EXPECT_LT(SecondsSince(t0), 2.0);
  ASSERT_OK(h_->ContainerStatus(exited, &st));
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.finished_at(), finished);
  EXPECT_OK(h_->RemoveContainer(exited));
  EXPECT_OK(h_->RemoveContainer(exited));

  // `sleep` dies of SIGTERM at once, well before the 10 s grace period.
  std::string sleeper =
      RunRunning(pod_id, pod, h_->NewContainer(pod, "sleeper", {"sleep", "1000"}));
  ASSERT_FALSE(sleeper.empty());
  t0 = std::chrono::steady_clock::now();
  EXPECT_OK(h_->StopContainer(sleeper, 10));
  double took = SecondsSince(t0);
  EXPECT_LT(took, 5.0) << "StopContainer(timeout 10) of sleep";
  ASSERT_OK(h_->ContainerStatus(sleeper, &st));
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 128 + SIGTERM);
  EXPECT_EQ(st.reason(), "Error");
  EXPECT_OK(h_->StopContainer(sleeper, 10));  // twice

  // A container that ignores SIGTERM is killed when the grace period (1 s) ends; nothing of
  // it is left (its `sleep` child ignores SIGTERM too).
  v1::ContainerConfig tc =
      h_->NewContainer(pod, "trapper", {"sh", "-c", "trap '' TERM; echo ready; sleep 1000"});
  std::string trapper = RunRunning(pod_id, pod, tc);
  ASSERT_FALSE(trapper.empty());
  ASSERT_TRUE(WaitFor([&] { return ReadFile(LogFile(pod, tc)).find("ready") != std::string::npos; },
                      seconds(5)))
      << ReadFile(LogFile(pod, tc));
  t0 = std::chrono::steady_clock::now();
  EXPECT_OK(h_->StopContainer(trapper, 1));
  took = SecondsSince(t0);
  EXPECT_GE(took, 0.9) << "SIGTERM was not ignored?";
  EXPECT_LT(took, 4.0) << "StopContainer(timeout 1) of a container ignoring SIGTERM";
  ASSERT_OK(h_->ContainerStatus(trapper, &st));
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 128 + SIGKILL);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto p = h_->CgroupProcs(trapper);
        return !p.has_value() || p->empty();
      },
      seconds(3)))
      << "processes of the stopped container still run";
  std::optional<std::vector<pid_t>> left = h_->CgroupProcs(trapper);
  if (left.has_value()) {
    for (pid_t pid : *left)
      ADD_FAILURE() << "left running: " << pid << " " << ProcText(pid, "cmdline");
  }

  for (const std::string& id : {sleeper, trapper}) {
    EXPECT_OK(h_->RemoveContainer(id));
    EXPECT_OK(h_->RemoveContainer(id));
  }
  EXPECT_THAT(Containers(), IsEmpty());
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
  EXPECT_THAT(Pods(), IsEmpty());
  ExpectNothingLeft("after the pod was removed");
}

// 5 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, ReopenContainerLogStartsANewFileAfterRotation) {
  v1::PodSandboxConfig pod = h_->NewPod("rotate");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig c = h_->NewContainer(
      pod, "printer", {"sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.2; done"});
  std::string id = RunRunning(pod_id, pod, c);
  ASSERT_FALSE(id.empty());
  const fs::path log = LogFile(pod, c);
  const fs::path rotated = log.string() + ".1";
  ASSERT_TRUE(WaitFor([&] { return LineNumbers(log).size() >= 3; }, seconds(10))) << ReadFile(log);

  // What the kubelet's log manager does: rename, then ReopenContainerLog.
  fs::rename(log, rotated);
  v1::ReopenContainerLogRequest req;
  req.set_container_id(id);
  v1::ReopenContainerLogResponse resp;
  ASSERT_OK(h_->rt().ReopenContainerLog(CriContext().get(), req, &resp));
  EXPECT_TRUE(WaitFor([&] { return LineNumbers(log).size() >= 3; }, seconds(5)))
      << "no new lines at " << log;
  // The rotated file is no longer written.
  uintmax_t size = fs::file_size(rotated);
  std::this_thread::sleep_for(milliseconds(800));
  EXPECT_EQ(fs::file_size(rotated), size) << "the rotated file still grows";

  std::vector<std::string> bad_old, bad_new;
  ParseCriLog(rotated, &bad_old);
  ParseCriLog(log, &bad_new);
  EXPECT_THAT(bad_old, IsEmpty());
  EXPECT_THAT(bad_new, IsEmpty());
  std::vector<int> old_n = LineNumbers(rotated), new_n = LineNumbers(log);
  ASSERT_FALSE(old_n.empty());
  ASSERT_FALSE(new_n.empty());
  // Nothing lost, nothing twice: the new file goes on where the old one ended.
  EXPECT_EQ(new_n.front(), old_n.back() + 1);
  for (size_t i = 1; i < old_n.size(); ++i) EXPECT_EQ(old_n[i], old_n[i - 1] + 1);
  for (size_t i = 1; i < new_n.size(); ++i) EXPECT_EQ(new_n[i], new_n[i - 1] + 1);
  EXPECT_EQ(old_n.front(), 0);
}

// 6 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, ExecSyncReturnsOutputAndExitCodeAndHonoursItsTimeout) {
  v1::PodSandboxConfig pod = h_->NewPod("exec");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig c = h_->NewContainer(pod, "main", {"sleep", "1000"});
  auto* env = c.add_envs();
  env->set_key("FOO");
  env->set_value("bar");
  c.set_working_dir("/tmp");
  std::string id = RunRunning(pod_id, pod, c);
  ASSERT_FALSE(id.empty());

  v1::ExecSyncResponse r;
  ASSERT_OK(h_->ExecSync(id, {"sh", "-c", "echo out; echo err >&2; exit 7"}, 10, &r));
  EXPECT_EQ(r.stdout(), "out\n");
  EXPECT_EQ(r.stderr(), "err\n");
  EXPECT_EQ(r.exit_code(), 7);
  // The container's environment and working directory.
  EXPECT_EQ(Exec(id, {"sh", "-c", "echo $FOO $FROM_IMAGE; pwd"}), "bar yes\n/tmp\n");
  // No timeout (0), empty output.
  ASSERT_OK(h_->ExecSync(id, {"true"}, 0, &r));
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_EQ(r.stdout(), "");
  EXPECT_EQ(r.stderr(), "");
  // 1 MB of output arrives whole.
  ASSERT_OK(h_->ExecSync(id, {"head", "-c", "1000000", "/dev/zero"}, 20, &r));
  EXPECT_EQ(r.stdout().size(), 1000000u);
  EXPECT_EQ(r.exit_code(), 0);
  // A command that does not exist fails (an error, or a non-zero exit code).
  grpc::Status s = h_->ExecSync(id, {"/no/such/command"}, 10, &r);
  if (s.ok()) {
    EXPECT_NE(r.exit_code(), 0);
  }

  // The timeout: back in about a second with DEADLINE_EXCEEDED (a timed-out probe for the
  // kubelet), what was printed in the message.
  auto t0 = std::chrono::steady_clock::now();
  s = h_->ExecSync(id, {"sh", "-c", "echo started; sleep 30"}, 1, &r);
  double took = SecondsSince(t0);
  EXPECT_LT(took, 5.0) << "ExecSync(timeout 1) of sleep 30";
  EXPECT_GE(took, 0.9);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("started"));
  // ... and the command's processes are gone.
  std::string ps;
  EXPECT_TRUE(WaitFor(
      [&] {
        ps = Exec(id, {"ps", "-o", "args"});
        return ps.find("sleep 30") == std::string::npos;
      },
      seconds(5)))
      << ps;

  // Not in a stopped container.
  ASSERT_OK(h_->StopContainer(id, 0));
  s = h_->ExecSync(id, {"true"}, 5, &r);
  EXPECT_FALSE(s.ok() && r.exit_code() == 0) << "ExecSync in an exited container succeeded";
}

// 7 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, StatsOfABusyContainerAndItsPod) {
  v1::PodSandboxConfig pod = h_->NewPod("stats");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string busy =
      RunRunning(pod_id, pod, h_->NewContainer(pod, "busy", {"sh", "-c", "while :; do :; done"}));
  v1::ContainerConfig ic = h_->NewContainer(pod, "idle", {"sleep", "1000"});
  (*ic.mutable_labels())["role"] = "idle";
  std::string idle = RunRunning(pod_id, pod, ic);
  ASSERT_FALSE(busy.empty());
  ASSERT_FALSE(idle.empty());
  Exec(idle, {"dd", "if=/dev/zero", "of=/fill", "bs=1048576", "count=4"});
  std::this_thread::sleep_for(milliseconds(1000));

  v1::ContainerStatsRequest req;
  req.set_container_id(busy);
  v1::ContainerStatsResponse r1, r2;
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &r1));
  const v1::ContainerStats& s1 = r1.stats();
  EXPECT_EQ(s1.attributes().id(), busy);
  EXPECT_EQ(s1.attributes().metadata().name(), "busy");
  EXPECT_EQ(AsMap(s1.attributes().labels())["io.kubernetes.container.name"], "busy");
  EXPECT_GT(s1.cpu().timestamp(), 0);
  ASSERT_TRUE(s1.cpu().has_usage_core_nano_seconds());
  EXPECT_GT(s1.cpu().usage_core_nano_seconds().value(), 100'000'000u)  // it spun for ~1 s
      << "usage_core_nano_seconds of a container spinning for a second";
  ASSERT_TRUE(s1.memory().has_working_set_bytes());
  EXPECT_GT(s1.memory().working_set_bytes().value(), 0u);
  EXPECT_GT(s1.memory().timestamp(), 0);
  ASSERT_TRUE(s1.has_writable_layer());
  EXPECT_TRUE(s1.writable_layer().has_used_bytes());
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &r2));
  EXPECT_GT(r2.stats().cpu().usage_core_nano_seconds().value(),
            s1.cpu().usage_core_nano_seconds().value());
  EXPECT_GT(r2.stats().cpu().timestamp(), s1.cpu().timestamp());

  // The idle container's writable layer holds the 4 MiB it wrote.
  req.set_container_id(idle);
  v1::ContainerStatsResponse ri;
  EXPECT_TRUE(WaitFor(
      [&] {
        return h_->rt().ContainerStats(CriContext().get(), req, &ri).ok() &&
               ri.stats().writable_layer().used_bytes().value() >= (4u << 20);
      },
      seconds(10)))
      << "writable_layer.used_bytes " << ri.stats().writable_layer().used_bytes().value();

  v1::ListContainerStatsRequest lreq;
  v1::ListContainerStatsResponse lresp;
  auto listed = [&] {
    std::vector<std::string> ids;
    for (const auto& s : lresp.stats()) ids.push_back(s.attributes().id());
    return ids;
  };
  ASSERT_OK(h_->rt().ListContainerStats(CriContext().get(), lreq, &lresp));
  EXPECT_THAT(listed(), UnorderedElementsAre(busy, idle));
  lreq.mutable_filter()->set_id(busy);
  ASSERT_OK(h_->rt().ListContainerStats(CriContext().get(), lreq, &lresp));
  EXPECT_THAT(listed(), ElementsAre(busy));
  ASSERT_EQ(lresp.stats_size(), 1);
  EXPECT_GT(lresp.stats(0).cpu().usage_core_nano_seconds().value(), 0u);
  lreq.mutable_filter()->Clear();
  lreq.mutable_filter()->set_pod_sandbox_id(pod_id);
  ASSERT_OK(h_->rt().ListContainerStats(CriContext().get(), lreq, &lresp));
  EXPECT_THAT(listed(), UnorderedElementsAre(busy, idle));
  lreq.mutable_filter()->Clear();
  (*lreq.mutable_filter()->mutable_label_selector())["role"] = "idle";
  ASSERT_OK(h_->rt().ListContainerStats(CriContext().get(), lreq, &lresp));
  EXPECT_THAT(listed(), ElementsAre(idle));

  v1::PodSandboxStatsRequest preq;
  preq.set_pod_sandbox_id(pod_id);
  v1::PodSandboxStatsResponse presp;
  ASSERT_OK(h_->rt().PodSandboxStats(CriContext().get(), preq, &presp));
  const v1::PodSandboxStats& ps = presp.stats();
  EXPECT_EQ(ps.attributes().id(), pod_id);
  EXPECT_EQ(ps.attributes().metadata().name(), "stats");
  EXPECT_EQ(AsMap(ps.attributes().labels()), AsMap(pod.labels()));
  EXPECT_GT(ps.linux().cpu().usage_core_nano_seconds().value(),
            s1.cpu().usage_core_nano_seconds().value());
  EXPECT_GT(ps.linux().memory().working_set_bytes().value(), 0u);
  std::vector<std::string> in_pod;
  for (const auto& c : ps.linux().containers()) in_pod.push_back(c.attributes().id());
  EXPECT_THAT(in_pod, UnorderedElementsAre(busy, idle));

  v1::ListPodSandboxStatsRequest lpreq;
  lpreq.mutable_filter()->set_id(pod_id);
  v1::ListPodSandboxStatsResponse lpresp;
  ASSERT_OK(h_->rt().ListPodSandboxStats(CriContext().get(), lpreq, &lpresp));
  ASSERT_EQ(lpresp.stats_size(), 1);
  EXPECT_EQ(lpresp.stats(0).attributes().id(), pod_id);
}

// 8 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, EventStreamReportsTheLifeOfAContainerAndItsPod) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::ContainerEventResponse> events;
  bool ended = false;
  grpc::ClientContext ctx;  // no deadline: cancelled below
  std::unique_ptr<grpc::ClientReader<v1::ContainerEventResponse>> reader =
      h_->rt().GetContainerEvents(&ctx, {});
  std::thread t([&] {
    v1::ContainerEventResponse e;
    while (reader->Read(&e)) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(e);
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    ended = true;
    cv.notify_all();
  });
  // The subscription is made when berthd handles the call, which the client cannot see.
  std::this_thread::sleep_for(milliseconds(500));

  v1::PodSandboxConfig pod = h_->NewPod("events");
  std::string pod_id = RunPod(pod);
  std::string cid;
  if (!pod_id.empty()) {
    cid = RunRunning(pod_id, pod, h_->NewContainer(pod, "main", {"sleep", "1000"}));
    EXPECT_OK(h_->StopContainer(cid, 0));
    EXPECT_OK(h_->RemoveContainer(cid));
    EXPECT_OK(h_->StopPod(pod_id));
    EXPECT_OK(h_->RemovePod(pod_id));
  }
  auto types_of = [&](const std::string& id) {
    std::vector<v1::ContainerEventType> out;
    for (const auto& e : events) {
      if (e.container_id() == id) out.push_back(e.container_event_type());
    }
    return out;
  };
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, seconds(10), [&] {
      if (ended) return true;
      auto c = types_of(cid), p = types_of(pod_id);
      return !c.empty() && c.back() == v1::CONTAINER_DELETED_EVENT && !p.empty() &&
             p.back() == v1::CONTAINER_DELETED_EVENT;
    });
  }
  ctx.TryCancel();
  t.join();
  grpc::Status finished = reader->Finish();
  EXPECT_TRUE(finished.ok() || finished.error_code() == grpc::StatusCode::CANCELLED)
      << "the stream ended with " << Describe(finished);
  ASSERT_FALSE(pod_id.empty());
  ASSERT_FALSE(cid.empty());

  std::string all;
  for (const auto& e : events) {
    all += e.container_id().substr(0, 12) + " " +
           v1::ContainerEventType_Name(e.container_event_type()) + "\n";
  }
  // Each kind of event, in order (a repeated event is tolerated: the kubelet relists).
  auto in_order = [](std::vector<v1::ContainerEventType> got) {
    std::vector<v1::ContainerEventType> want = {
        v1::CONTAINER_CREATED_EVENT, v1::CONTAINER_STARTED_EVENT, v1::CONTAINER_STOPPED_EVENT,
        v1::CONTAINER_DELETED_EVENT};
    got.erase(std::unique(got.begin(), got.end()), got.end());
    return got == want;
  };
  EXPECT_TRUE(in_order(types_of(cid))) << "container " << cid.substr(0, 12) << ":\n" << all;
  EXPECT_TRUE(in_order(types_of(pod_id))) << "sandbox " << pod_id.substr(0, 12) << ":\n" << all;
  int64_t last = 0;
  for (const auto& e : events) {
    EXPECT_GT(e.created_at(), 0);
    if (e.container_id() == cid) {
      EXPECT_GE(e.created_at(), last) << "container events out of time order";
      last = e.created_at();
    }
  }
}

// 9 ------------------------------------------------------------------------------------------
TEST_F(PodsTest, ContainersSurviveABerthdRestartAndExitsWhileItIsDownAreReported) {
  v1::PodSandboxConfig pod = h_->NewPod("restart");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig ac = h_->NewContainer(
      pod, "a", {"sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.1; done"});
  (*ac.mutable_labels())["survives"] = "restarts";
  std::string a = RunRunning(pod_id, pod, ac);
  ASSERT_FALSE(a.empty());
  std::optional<std::vector<pid_t>> a_procs = h_->CgroupProcs(a);
  ASSERT_TRUE(a_procs.has_value() && !a_procs->empty());
  std::string error;

  // SIGTERM: a clean stop; the container keeps running.
  std::optional<int> st = h_->StopDaemon(SIGTERM);
  ASSERT_TRUE(st.has_value()) << "berthd did not stop within 10 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "berthd wait status " << *st;
  EXPECT_FALSE(IsZombieOrGone(a_procs->front())) << "the container died with berthd";
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  v1::ContainerStatus cs;
  EXPECT_TRUE(h_->WaitForState(a, v1::CONTAINER_RUNNING, seconds(10), &cs))
      << v1::ContainerState_Name(cs.state());
  EXPECT_EQ(Exec(a, {"echo", "alive"}), "alive\n");

  // SIGKILL while a second container is about to exit with 5.
  std::string b =
      RunRunning(pod_id, pod, h_->NewContainer(pod, "b", {"sh", "-c", "sleep 4; exit 5"}));
  ASSERT_FALSE(b.empty());
  h_->StopDaemon(SIGKILL);
  bool shim_alive = false;
  for (pid_t pid : ProcessesOf(h_->root(), "")) {
    if (ProcText(pid, "cmdline").find("shim") != std::string::npos) shim_alive = true;
  }
  EXPECT_TRUE(shim_alive) << "no berth-shim runs after berthd was killed";
  EXPECT_TRUE(WaitFor(
      [&] {
        auto p = h_->CgroupProcs(b);
        return !p.has_value() || p->empty();
      },
      seconds(10)))
      << "b did not exit while berthd was down";
  EXPECT_FALSE(IsZombieOrGone(a_procs->front())) << "the container died with berthd";
  const int64_t restarted_ns = NowNs();
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;

  EXPECT_TRUE(h_->WaitForState(a, v1::CONTAINER_RUNNING, seconds(10), &cs))
      << v1::ContainerState_Name(cs.state());
  EXPECT_EQ(Exec(a, {"echo", "alive"}), "alive\n");
  ASSERT_TRUE(h_->WaitForState(b, v1::CONTAINER_EXITED, seconds(10), &cs))
      << v1::ContainerState_Name(cs.state());
  EXPECT_EQ(cs.exit_code(), 5);
  EXPECT_EQ(cs.reason(), "Error");
  EXPECT_LT(cs.finished_at(), restarted_ns) << "finished_at is not the time it exited";
  EXPECT_GT(cs.finished_at() - cs.started_at(), 3'000'000'000) << "it ran for 4 s";
  v1::PodSandboxStatusResponse ps;
  ASSERT_OK(h_->PodStatus(pod_id, &ps));
  EXPECT_EQ(ps.status().state(), v1::SANDBOX_READY);
  EXPECT_THAT(Ids(Containers()), UnorderedElementsAre(a, b));
  ASSERT_OK(h_->ContainerStatus(a, &cs));
  EXPECT_EQ(cs.metadata().name(), "a");
  EXPECT_EQ(AsMap(cs.labels()), AsMap(ac.labels()));
  EXPECT_EQ(cs.log_path(), LogFile(pod, ac).string());
  EXPECT_EQ(cs.image().image(), h_->images().busybox);

  // a logged on while berthd was down, and its log can still be rotated.
  const fs::path alog = LogFile(pod, ac), rotated = alog.string() + ".1";
  fs::rename(alog, rotated);
  v1::ReopenContainerLogRequest reopen;
  reopen.set_container_id(a);
  v1::ReopenContainerLogResponse reopened;
  EXPECT_OK(h_->rt().ReopenContainerLog(CriContext().get(), reopen, &reopened));
  EXPECT_TRUE(WaitFor([&] { return LineNumbers(alog).size() >= 3; }, seconds(5)))
      << "no new lines at " << alog;
  std::vector<int> numbers = LineNumbers(rotated), more = LineNumbers(alog);
  numbers.insert(numbers.end(), more.begin(), more.end());
  ASSERT_FALSE(numbers.empty());
  EXPECT_EQ(numbers.front(), 0);
  for (size_t i = 1; i < numbers.size(); ++i) {
    ASSERT_EQ(numbers[i], numbers[i - 1] + 1) << "a line lost or repeated across restarts";
  }

  // New containers still work, and the pod goes away cleanly.
  v1::ContainerConfig cc = h_->NewContainer(pod, "c", {"echo", "after restart"});
  std::string c = RunContainer(pod_id, pod, cc);
  ASSERT_FALSE(c.empty());
  ASSERT_TRUE(h_->WaitForState(c, v1::CONTAINER_EXITED, seconds(20), &cs));
  EXPECT_EQ(cs.exit_code(), 0);
  ASSERT_OK(h_->StopPod(pod_id));
  ASSERT_OK(h_->RemovePod(pod_id));
  EXPECT_THAT(Pods(), IsEmpty());
  EXPECT_THAT(Containers(), IsEmpty());
  ExpectNothingLeft("after the pod was removed");
}

// 10 -----------------------------------------------------------------------------------------
TEST_F(PodsTest, FiftyPodsComeAndGoWithoutLeavingAnythingBehind) {
  constexpr int kPods = 50, kWorkers = 4;
  // Warm-up: one pod of each kind, so that what berthd sets up once (the netns pin
  // directory, ...) is in the baseline.
  for (Network net : {Network::kPod, Network::kHost}) {
    v1::PodSandboxConfig pod = h_->NewPod(net == Network::kPod ? "warm-pod" : "warm-host", net);
    std::string id = RunPod(pod);
    ASSERT_FALSE(id.empty());
    ASSERT_FALSE(RunRunning(id, pod, h_->NewContainer(pod, "c", {"sleep", "1000"})).empty());
    ASSERT_OK(h_->StopPod(id));
    ASSERT_OK(h_->RemovePod(id));
  }
  const pid_t berthd = h_->daemon().pid();
  WaitFor(
      [&] {
        auto p = ProcessesOf(h_->root(), h_->cgroup_parent());
        return p.size() == 1 && p[0] == berthd;
      },
      seconds(10));
  const Footprint before = h_->TakeFootprint();

  struct Pod {
    v1::PodSandboxConfig config;
    std::string id, container;
  };
  std::vector<Pod> pods(kPods);
  std::mutex mu;
  std::vector<std::string> errors;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    errors.push_back(what);
  };
  auto in_parallel = [&](const std::function<void(int)>& work) {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&] {
        for (int i = next++; i < kPods; i = next++) work(i);
      });
    }
    for (auto& t : threads) t.join();
  };
  auto t0 = std::chrono::steady_clock::now();
  in_parallel([&](int i) {
    Pod& p = pods[i];
    p.config = h_->NewPod("many-" + std::to_string(i), i % 2 == 0 ? Network::kPod : Network::kHost);
    if (i % 2 == 0) {  // a hostPort: portmap's iptables rules must go with the pod too
      v1::PortMapping* pm = p.config.add_port_mappings();
      pm->set_container_port(80);
      pm->set_host_port(20000 + static_cast<int>(::getpid() % 20000) + i);
    }
    grpc::Status s = h_->RunPod(p.config, &p.id);
    if (!s.ok()) return fail("RunPodSandbox " + std::to_string(i) + ": " + Describe(s));
    s = h_->RunContainer(p.id, p.config, h_->NewContainer(p.config, "c", {"sleep", "1000"}),
                         &p.container);
    if (!s.ok()) return fail("container of pod " + std::to_string(i) + ": " + Describe(s));
  });
  const double create_s = SecondsSince(t0);
  EXPECT_THAT(errors, IsEmpty());
  v1::PodSandboxFilter ready;
  ready.mutable_state()->set_state(v1::SANDBOX_READY);
  EXPECT_EQ(Pods(&ready).size(), static_cast<size_t>(kPods));
  v1::ContainerFilter running;
  running.mutable_state()->set_state(v1::CONTAINER_RUNNING);
  EXPECT_TRUE(WaitFor([&] { return Containers(&running).size() == kPods; }, seconds(10)))
      << Containers(&running).size() << " running";
  const Footprint during = h_->TakeFootprint();
  EXPECT_EQ(during.netns_pins, before.netns_pins + kPods / 2);
  EXPECT_EQ(during.veths.size(), before.veths.size() + kPods / 2);
  EXPECT_EQ(during.ips.size(), before.ips.size() + kPods / 2);
  EXPECT_GT(during.nat_rules.size(), before.nat_rules.size());

  // Removed as the kubelet removes pods: half with StopContainer and RemoveContainer first,
  // half by StopPodSandbox and RemovePodSandbox alone.
  t0 = std::chrono::steady_clock::now();
  in_parallel([&](int i) {
    const Pod& p = pods[i];
    if (p.id.empty()) return;
    grpc::Status s;
    if (i % 4 < 2 && !p.container.empty()) {
      if (!(s = h_->StopContainer(p.container, 0)).ok()) fail("StopContainer: " + Describe(s));
      if (!(s = h_->RemoveContainer(p.container)).ok()) fail("RemoveContainer: " + Describe(s));
    }
    if (!(s = h_->StopPod(p.id)).ok()) fail("StopPodSandbox: " + Describe(s));
    if (!(s = h_->RemovePod(p.id)).ok()) fail("RemovePodSandbox: " + Describe(s));
  });
  const double remove_s = SecondsSince(t0);
  EXPECT_THAT(errors, IsEmpty());
  EXPECT_THAT(Pods(), IsEmpty());
  EXPECT_THAT(Containers(), IsEmpty());
  Footprint after = h_->WaitForFootprint(before, seconds(20));
  EXPECT_TRUE(after == before) << "left behind (+) or lost (-) after " << kPods << " pods:\n"
                               << FootprintDiff(before, after);
  std::cerr << kPods << " pods: created and started in " << create_s << " s, removed in "
            << remove_s << " s (" << kWorkers << " at a time)\n";
}

// 11 -----------------------------------------------------------------------------------------
TEST_F(PodsTest, BadRequestsGetTheCodesTheKubeletActsUponAndLeaveNothing) {
  v1::ContainerStatus cst;
  v1::PodSandboxStatusResponse pst;
  v1::ExecSyncResponse er;
  EXPECT_CODE(h_->ContainerStatus(kMissingId, &cst), NOT_FOUND);
  EXPECT_CODE(h_->PodStatus(kMissingId, &pst), NOT_FOUND);
  EXPECT_CODE(h_->StartContainer(kMissingId), NOT_FOUND);
  EXPECT_CODE(h_->ExecSync(kMissingId, {"true"}, 5, &er), NOT_FOUND);
  {
    v1::ContainerStatsRequest r;
    r.set_container_id(kMissingId);
    v1::ContainerStatsResponse resp;
    EXPECT_CODE(h_->rt().ContainerStats(CriContext().get(), r, &resp), NOT_FOUND);
  }
  {
    v1::PodSandboxStatsRequest r;
    r.set_pod_sandbox_id(kMissingId);
    v1::PodSandboxStatsResponse resp;
    EXPECT_CODE(h_->rt().PodSandboxStats(CriContext().get(), r, &resp), NOT_FOUND);
  }
  {
    v1::ReopenContainerLogRequest r;
    r.set_container_id(kMissingId);
    v1::ReopenContainerLogResponse resp;
    EXPECT_CODE(h_->rt().ReopenContainerLog(CriContext().get(), r, &resp), NOT_FOUND);
  }
  {
    v1::UpdateContainerResourcesRequest r;
    r.set_container_id(kMissingId);
    r.mutable_linux()->set_cpu_shares(512);
    v1::UpdateContainerResourcesResponse resp;
    EXPECT_CODE(h_->rt().UpdateContainerResources(CriContext().get(), r, &resp), NOT_FOUND);
  }
  // Stopping and removing what does not exist is not an error.
  EXPECT_OK(h_->StopContainer(kMissingId, 0));
  EXPECT_OK(h_->RemoveContainer(kMissingId));
  EXPECT_OK(h_->StopPod(kMissingId));
  EXPECT_OK(h_->RemovePod(kMissingId));

  v1::PodSandboxConfig pod = h_->NewPod("bad");
  EXPECT_CODE(h_->CreateContainer(kMissingId, pod, h_->NewContainer(pod, "c", {"true"}), nullptr),
              NOT_FOUND);
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  const Footprint before = h_->WaitForFootprint(h_->TakeFootprint(), seconds(1));

  // An image that was not pulled.
  v1::ContainerConfig c = h_->NewContainer(pod, "c", {"true"});
  c.mutable_image()->set_image(registry_->host() + "/test/busybox:absent");
  grpc::Status s = h_->CreateContainer(pod_id, pod, c, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("test/busybox:absent"));
  // Log paths out of the pod's log directory.
  for (const std::string path : {"../escape.log", "c/../../escape.log", "/tmp/escape.log"}) {
    c = h_->NewContainer(pod, "c", {"true"});
    c.set_log_path(path);
    s = h_->CreateContainer(pod_id, pod, c, nullptr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path << ": " << Describe(s);
    EXPECT_THAT(s.error_message(), HasSubstr("log_path")) << path;
  }
  EXPECT_FALSE(fs::exists(h_->log_root() / "escape.log"));
  EXPECT_THAT(Containers(), IsEmpty());
  Footprint after = h_->WaitForFootprint(before, seconds(5));
  EXPECT_TRUE(after == before) << "failed CreateContainer calls left:\n"
                               << FootprintDiff(before, after);

  // The same pod again: refused, naming the pod that holds the name.
  s = h_->RunPod(pod, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr(pod_id));
  EXPECT_THAT(Ids(Pods()), ElementsAre(pod_id));

  // No containers in a stopped pod.
  ASSERT_OK(h_->StopPod(pod_id));
  s = h_->CreateContainer(pod_id, pod, h_->NewContainer(pod, "late", {"true"}), nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(Containers(), IsEmpty());
  ASSERT_OK(h_->RemovePod(pod_id));
  EXPECT_THAT(Pods(), IsEmpty());
  ExpectNothingLeft("after the pod was removed");
}

// 13 -----------------------------------------------------------------------------------------
TEST_F(PodsTest, AContainerOverItsMemoryLimitIsReportedOomKilled) {
  v1::PodSandboxConfig pod = h_->NewPod("oom");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  // busybox tail keeps a line in memory until its newline: /dev/zero has none.
  v1::ContainerConfig c = h_->NewContainer(pod, "hog", {"tail", "/dev/zero"});
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(32 << 20);
  std::string id = RunContainer(pod_id, pod, c);
  ASSERT_FALSE(id.empty());
  v1::ContainerStatus st;
  ASSERT_TRUE(h_->WaitForState(id, v1::CONTAINER_EXITED, seconds(30), &st))
      << v1::ContainerState_Name(st.state());
  EXPECT_EQ(st.reason(), "OOMKilled");
  EXPECT_EQ(st.exit_code(), 128 + SIGKILL);
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 32 << 20);
}

// 12 -----------------------------------------------------------------------------------------
TEST_F(PodsTest, UpdateContainerResourcesChangesTheRunningContainersCgroup) {
  v1::PodSandboxConfig pod = h_->NewPod("resize");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = RunRunning(pod_id, pod, h_->NewContainer(pod, "main", {"sleep", "1000"}));
  ASSERT_FALSE(id.empty());
  v1::UpdateContainerResourcesRequest req;
  req.set_container_id(id);
  req.mutable_linux()->set_cpu_shares(512);
  req.mutable_linux()->set_memory_limit_in_bytes(256 << 20);
  v1::UpdateContainerResourcesResponse resp;
  ASSERT_OK(h_->rt().UpdateContainerResources(CriContext().get(), req, &resp));
  ExpectContainerCgroupLimits(id, 256 << 20, 512);
  v1::ContainerStatus st;
  ASSERT_OK(h_->ContainerStatus(id, &st));
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 256 << 20);
  EXPECT_EQ(st.resources().linux().cpu_shares(), 512);
}

// 13 -----------------------------------------------------------------------------------------
// The shim of a pod (berth-shim, and another shim v2 binary) leaves berthd's cgroup for one of
// its own beside the pod's containers: accounted to the pod, and not killed with berthd's
// service. It goes with the pod.
TEST_F(PodsTest, TheShimOfAPodRunsInACgroupOfItsOwnUnderThePodsParent) {
  for (const std::string handler : {"runc", "shimv2-test"}) {
    SCOPED_TRACE(handler);
    v1::PodSandboxConfig pod = h_->NewPod("shim-cgroup-" + handler);
    std::string pod_id = RunPod(pod, handler);
    ASSERT_FALSE(pod_id.empty());
    std::optional<std::vector<pid_t>> pause = h_->CgroupProcs(pod_id);
    ASSERT_TRUE(pause.has_value() && pause->size() == 1) << "the pause container's cgroup";
    // The pause's parent is the shim (a subreaper).
    pid_t shim = 0;
    std::istringstream status(ReadFile("/proc/" + std::to_string(pause->front()) + "/status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("PPid:", 0) == 0) shim = std::stoi(line.substr(5));
    }
    ASSERT_GT(shim, 1);
    EXPECT_NE(shim, h_->daemon().pid());
    const std::string want = h_->cgroup_parent() + "/shim-" + pod_id;
    const std::string cgroups = ReadFile("/proc/" + std::to_string(shim) + "/cgroup");
    std::istringstream lines(cgroups);
    int checked = 0;
    for (std::string line; std::getline(lines, line);) {
      // "N:controllers:/path"; the empty v1 hierarchies (net_cls, rdma...) as well.
      std::string path = line.substr(line.find(':', line.find(':') + 1) + 1);
      EXPECT_EQ(path, want) << "shim " << shim << ": " << line;
      ++checked;
    }
    EXPECT_GT(checked, 0) << cgroups;
    std::string daemon_cgroups = ReadFile("/proc/" + std::to_string(h_->daemon().pid()) + "/cgroup");
    EXPECT_EQ(daemon_cgroups.find("/shim-"), std::string::npos) << daemon_cgroups;

    ASSERT_OK(h_->StopPod(pod_id));
    if (handler == "runc") {
      // What a kubelet does to a terminated pod's cgroup before RemovePodSandbox: kill what
      // is left in it, the shim included.
      ASSERT_EQ(::kill(shim, SIGKILL), 0);
    }
    ASSERT_OK(h_->RemovePod(pod_id));
    EXPECT_TRUE(WaitFor([&] { return IsZombieOrGone(shim); }, seconds(10))) << "shim " << shim;
    for (const fs::path& hierarchy : CgroupHierarchies()) {
      EXPECT_FALSE(fs::exists(hierarchy / want.substr(1))) << hierarchy / want.substr(1);
    }
  }
  ExpectNothingLeft("after the pods");
}

}  // namespace
}  // namespace berth::testing
