// SPDX-License-Identifier: Apache-2.0
// Pressure stall information in CRI stats with a real container: ContainerStats and
// PodSandboxStats carry cpu, memory and io PSI read from the container's and the pod's cgroup
// in the cgroup2 hierarchy (on a hybrid host, runc's directory in /sys/fs/cgroup/unified),
// and the CPU "some" total of a container that runs more spinning loops than there are CPUs
// grows. Skipped on a kernel without PSI.
#include <fstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

// Twice as many spinning loops as CPUs: some of them always wait for a CPU, which is what the
// CPU "some" figure counts.
constexpr char kSpin[] =
    "n=$(nproc 2>/dev/null || echo 4); i=0; "
    "while [ $i -lt $((2 * n)) ]; do (while :; do :; done) & i=$((i + 1)); done; wait";

bool KernelHasPsi(std::string* why) {
  std::ifstream cpu("/proc/pressure/cpu");
  std::string line;
  if (!cpu || !std::getline(cpu, line) || line.rfind("some ", 0) != 0) {
    *why = "the kernel has no PSI (/proc/pressure/cpu unreadable: CONFIG_PSI off or psi=0)";
    return false;
  }
  if (!fs::exists("/sys/fs/cgroup/cgroup.controllers") &&
      !fs::exists("/sys/fs/cgroup/unified/cgroup.controllers")) {
    *why = "cgroup v1 without a cgroup2 mount: PSI of cgroups is only in cgroup2";
    return false;
  }
  return true;
}

class PodPsiTest : public PodFixture<> {
 protected:
  void SetUp() override {
    std::string why;
    if (!KernelHasPsi(&why)) GTEST_SKIP() << why;
    StartHarness("psi");
  }
};

void ExpectPsi(const v1::PsiStats& psi, const std::string& what) {
  ASSERT_TRUE(psi.has_some()) << what;
  for (double avg : {psi.some().avg10(), psi.some().avg60(), psi.some().avg300()}) {
    EXPECT_GE(avg, 0.0) << what;
    EXPECT_LE(avg, 100.0) << what;
  }
}

TEST_F(PodPsiTest, BusyContainerAndItsPodReportPressure) {
  v1::PodSandboxConfig pod = h_->NewPod("psi");
  std::string pod_id;
  ASSERT_OK(h_->RunPod(pod, &pod_id));
  std::string busy;
  ASSERT_OK(
      h_->RunContainer(pod_id, pod, h_->NewContainer(pod, "busy", {"sh", "-c", kSpin}), &busy));
  ASSERT_TRUE(h_->WaitForState(busy, v1::CONTAINER_RUNNING, seconds(10)));

  v1::ContainerStatsRequest req;
  req.set_container_id(busy);
  v1::ContainerStatsResponse first;
  ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &first));
  const v1::ContainerStats& s = first.stats();
  ASSERT_TRUE(s.cpu().has_psi()) << s.DebugString();
  ExpectPsi(s.cpu().psi(), "cpu");
  ASSERT_TRUE(s.memory().has_psi()) << s.DebugString();
  ExpectPsi(s.memory().psi(), "memory");
  ASSERT_TRUE(s.has_io()) << s.DebugString();
  EXPECT_GT(s.io().timestamp(), 0);
  ASSERT_TRUE(s.io().has_psi());
  ExpectPsi(s.io().psi(), "io");

  // The CPU stall total grows while the loops compete for the CPUs.
  v1::ContainerStatsResponse later;
  auto deadline = std::chrono::steady_clock::now() + seconds(15);
  do {
    std::this_thread::sleep_for(milliseconds(250));
    ASSERT_OK(h_->rt().ContainerStats(CriContext().get(), req, &later));
  } while (later.stats().cpu().psi().some().total() <= s.cpu().psi().some().total() &&
           std::chrono::steady_clock::now() < deadline);
  EXPECT_GT(later.stats().cpu().psi().some().total(), s.cpu().psi().some().total())
      << "cpu psi some total of a container running 2 loops per CPU did not grow in 15 s:\n"
      << later.stats().DebugString();
  EXPECT_GT(later.stats().cpu().timestamp(), s.cpu().timestamp());

  // The pod's cgroup (the kubelet's cgroup_parent) counts its containers' stalls too.
  v1::PodSandboxStatsRequest preq;
  preq.set_pod_sandbox_id(pod_id);
  v1::PodSandboxStatsResponse presp;
  ASSERT_OK(h_->rt().PodSandboxStats(CriContext().get(), preq, &presp));
  const v1::LinuxPodSandboxStats& ps = presp.stats().linux();
  ASSERT_TRUE(ps.cpu().has_psi()) << ps.DebugString();
  ExpectPsi(ps.cpu().psi(), "pod cpu");
  EXPECT_GE(ps.cpu().psi().some().total(), s.cpu().psi().some().total());
  EXPECT_TRUE(ps.memory().has_psi());
  ASSERT_TRUE(ps.has_io()) << ps.DebugString();
  EXPECT_TRUE(ps.io().has_psi());
  ASSERT_EQ(ps.containers_size(), 1);
  EXPECT_TRUE(ps.containers(0).cpu().has_psi());
}

}  // namespace
}  // namespace berth::testing
