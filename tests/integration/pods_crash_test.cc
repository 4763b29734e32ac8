// SPDX-License-Identifier: Apache-2.0
// Crash consistency: berthd is killed (SIGKILL, by itself at a named step: the
// BERTH_TEST_CRASH_AT fault-injection point of plugins/cri/runtime_service.cc) in the middle of
// RunPodSandbox, CreateContainer, StartContainer, RemoveContainer and RemovePodSandbox, then
// started again on the same root and state. The node must be consistent: an interrupted
// creation is rolled back, an interrupted removal completed, a started container adopted, and
// once the pods are removed no mount, netns pin, cgroup or process (shims, containers) is left.
#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

struct CrashCase {
  const char* point;
  const char* call;  // which call berthd dies in
};

std::string CaseName(const ::testing::TestParamInfo<CrashCase>& info) {
  std::string n = info.param.point;
  for (char& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}

class CrashTest : public PodFixture<::testing::TestWithParam<CrashCase>> {
 protected:
  void SetUp() override { StartHarness("crash"); }

  // Waits for berthd to have killed itself and starts it again (no crash point now).
  void Restart() {
    auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (std::chrono::steady_clock::now() < deadline && !IsZombieOrGone(h_->daemon().pid())) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    std::optional<int> st = h_->StopDaemon(SIGKILL);
    ASSERT_TRUE(st.has_value());
    EXPECT_TRUE(WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL)
        << "berthd did not die at " << GetParam().point;
    std::string error;
    ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  }
  std::vector<v1::PodSandbox> Pods() {
    std::vector<v1::PodSandbox> out;
    EXPECT_TRUE(h_->ListPods(nullptr, &out).ok());
    return out;
  }
  std::vector<v1::Container> Containers() {
    std::vector<v1::Container> out;
    EXPECT_TRUE(h_->ListContainers(nullptr, &out).ok());
    return out;
  }
};

TEST_P(CrashTest, TheNodeIsConsistentAfterARestart) {
  const std::string call = GetParam().call;
  // A first pod pulls the sandbox image and makes the netns pin directory: the baseline is
  // the node with those and nothing else.
  {
    v1::PodSandboxConfig warm = h_->NewPod("warm");
    std::string id;
    ASSERT_TRUE(h_->RunPod(warm, &id).ok());
    ASSERT_TRUE(h_->RemovePod(id).ok());
  }
  const Footprint before = FootprintWithoutBerthd();
  // berthd again, armed: it inherits the variable, which is cleared at once.
  ASSERT_TRUE(h_->StopDaemon(SIGTERM).has_value());
  ::setenv("BERTH_TEST_CRASH_AT", GetParam().point, 1);
  std::string error;
  bool armed = h_->StartDaemon(&error);
  ::unsetenv("BERTH_TEST_CRASH_AT");
  ASSERT_TRUE(armed) << error;

  v1::PodSandboxConfig pod = h_->NewPod("victim");
  v1::ContainerConfig c = h_->NewContainer(pod, "app", {"sleep", "1000"});
  std::string pod_id, cid;
  grpc::Status s = h_->RunPod(pod, &pod_id);
  if (call == "RunPodSandbox") {
    ASSERT_FALSE(s.ok()) << "berthd did not die in RunPodSandbox";
  } else {
    ASSERT_TRUE(s.ok()) << Describe(s);
    s = h_->CreateContainer(pod_id, pod, c, &cid);
    if (call == "CreateContainer") {
      ASSERT_FALSE(s.ok()) << "berthd did not die in CreateContainer";
    } else {
      ASSERT_TRUE(s.ok()) << Describe(s);
      s = h_->StartContainer(cid);
      if (call == "StartContainer") {
        ASSERT_FALSE(s.ok()) << "berthd did not die in StartContainer";
      } else {
        ASSERT_TRUE(s.ok()) << Describe(s);
        s = call == "RemoveContainer" ? h_->RemoveContainer(cid) : h_->RemovePod(pod_id);
        ASSERT_FALSE(s.ok()) << "berthd did not die in " << call;
      }
    }
  }
  Restart();
  if (HasFatalFailure()) return;

  if (call == "RunPodSandbox") {
    // Rolled back: not listed, and the name is free again.
    EXPECT_TRUE(Pods().empty());
    std::string again;
    EXPECT_TRUE(h_->RunPod(pod, &again).ok()) << "the pod's name is still reserved";
    pod_id = again;
  } else if (call == "CreateContainer") {
    EXPECT_TRUE(Containers().empty());
    ASSERT_EQ(Pods().size(), 1u);
    EXPECT_EQ(Pods()[0].state(), v1::SANDBOX_READY);
    std::string again;
    EXPECT_TRUE(h_->CreateContainer(pod_id, pod, c, &again).ok());
  } else if (call == "StartContainer") {
    // The task was started before berthd died: it is adopted as running.
    v1::ContainerStatus st;
    EXPECT_TRUE(h_->WaitForState(cid, v1::CONTAINER_RUNNING, seconds(5), &st))
        << v1::ContainerState_Name(st.state());
    v1::ExecSyncResponse r;
    EXPECT_TRUE(h_->ExecSync(cid, {"true"}, 10, &r).ok());
  } else if (call == "RemoveContainer") {
    EXPECT_TRUE(Containers().empty()) << "the interrupted removal was not completed";
    ASSERT_EQ(Pods().size(), 1u);
  } else {
    EXPECT_TRUE(Pods().empty()) << "the interrupted removal was not completed";
    EXPECT_TRUE(Containers().empty());
  }
  // Whatever is left goes away through the CRI, and leaves nothing.
  for (const v1::PodSandbox& p : Pods()) {
    ASSERT_TRUE(h_->StopPod(p.id()).ok());
    ASSERT_TRUE(h_->RemovePod(p.id()).ok());
  }
  ExpectBackTo(before);
}

INSTANTIATE_TEST_SUITE_P(
    Points, CrashTest,
    ::testing::Values(CrashCase{"run-sandbox:after-record", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-infra", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-network", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-rootfs", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-task-create", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-shim-cgroup", "RunPodSandbox"},
                      CrashCase{"run-sandbox:after-task-start", "RunPodSandbox"},
                      CrashCase{"create-container:after-record", "CreateContainer"},
                      CrashCase{"create-container:after-rootfs", "CreateContainer"},
                      CrashCase{"create-container:after-task-create", "CreateContainer"},
                      CrashCase{"start-container:after-task-start", "StartContainer"},
                      CrashCase{"remove-container:after-mark", "RemoveContainer"},
                      CrashCase{"remove-container:after-teardown", "RemoveContainer"},
                      CrashCase{"remove-sandbox:after-mark", "RemovePodSandbox"},
                      CrashCase{"remove-sandbox:after-teardown", "RemovePodSandbox"}),
    CaseName);

}  // namespace
}  // namespace berth::testing
