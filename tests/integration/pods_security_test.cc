// SPDX-License-Identifier: Apache-2.0
// Security profiles end to end: a real berthd and runc driven through the CRI socket. Seccomp
// RuntimeDefault, Unconfined and Localhost profiles are seen from inside the container
// (/proc/self/status, syscalls that fail or succeed), bad profiles are refused at
// CreateContainer and leave nothing, and AppArmor profiles on a node without AppArmor are
// FAILED_PRECONDITION.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "cri/v1/api.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

// The tests set the deprecated seccomp_profile_path and apparmor_profile on purpose.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

using ::testing::HasSubstr;

bool HostHasAppArmor() {
  std::ifstream f("/sys/module/apparmor/parameters/enabled");
  std::string v;
  return f && (f >> v) && v == "Y" && fs::exists("/sys/kernel/security/apparmor");
}

class PodSecurityTest : public PodFixture<> {
 protected:
  void SetUp() override { StartHarness("security"); }

  // A pod (private network and UTS namespaces) with its sandbox id.
  std::string RunPod(const v1::PodSandboxConfig& pod) {
    std::string id;
    grpc::Status s = h_->RunPod(pod, &id);
    EXPECT_TRUE(s.ok()) << "RunPodSandbox " << pod.metadata().name() << ": " << Describe(s);
    return s.ok() ? id : "";
  }

  // A sleeping busybox container with `profile` as its seccomp profile, running.
  std::string RunSleeper(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                         const std::string& name, v1::ContainerConfig c) {
    std::string id;
    grpc::Status s = h_->RunContainer(pod_id, pod, c, &id);
    EXPECT_TRUE(s.ok()) << "CreateContainer/StartContainer " << name << ": " << Describe(s);
    if (!s.ok()) return "";
    v1::ContainerStatus st;
    bool running = h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10), &st);
    EXPECT_TRUE(running) << name << " is " << v1::ContainerState_Name(st.state()) << " (exit "
                         << st.exit_code() << ", " << st.reason() << ")";
    return running ? id : "";
  }

  v1::ContainerConfig Sleeper(const v1::PodSandboxConfig& pod, const std::string& name,
                              v1::SecurityProfile::ProfileType type, const std::string& ref = "") {
    v1::ContainerConfig c = h_->NewContainer(pod, name, {"sleep", "3600"});
    auto* p = c.mutable_linux()->mutable_security_context()->mutable_seccomp();
    p->set_profile_type(type);
    p->set_localhost_ref(ref);
    return c;
  }

  // ExecSync; the response (exit code, output). A failed call is a test failure.
  v1::ExecSyncResponse Exec(const std::string& id, std::vector<std::string> cmd) {
    v1::ExecSyncResponse r;
    grpc::Status s = h_->ExecSync(id, std::move(cmd), 10, &r);
    EXPECT_TRUE(s.ok()) << "ExecSync: " << Describe(s);
    return r;
  }

  // "Seccomp:" of /proc/self/status in the container: "0" none, "2" filter.
  std::string SeccompMode(const std::string& id) {
    v1::ExecSyncResponse r = Exec(id, {"cat", "/proc/self/status"});
    std::smatch m;
    static const std::regex kLine(R"(\nSeccomp:\s*(\d+))");
    if (!std::regex_search(r.stdout(), m, kLine)) return "(no Seccomp line)";
    return m[1];
  }

  std::vector<v1::Container> Containers() {
    std::vector<v1::Container> out;
    grpc::Status s = h_->ListContainers(nullptr, &out);
    EXPECT_TRUE(s.ok()) << "ListContainers: " << Describe(s);
    return out;
  }
};

TEST_F(PodSecurityTest, RuntimeDefaultFiltersAndFollowsCapabilities) {
  v1::PodSandboxConfig pod = h_->NewPod("rd");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());

  std::string plain =
      RunSleeper(pod_id, pod, "plain", Sleeper(pod, "plain", v1::SecurityProfile::RuntimeDefault));
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(SeccompMode(plain), "2");
  v1::ExecSyncResponse r = Exec(plain, {"hostname", "foo"});
  EXPECT_NE(r.exit_code(), 0) << "hostname foo succeeded without CAP_SYS_ADMIN";
  EXPECT_EQ(Exec(plain, {"sh", "-c", "mkdir /tmp/ok && echo made"}).stdout(), "made\n");

  v1::ContainerConfig admin_config = Sleeper(pod, "admin", v1::SecurityProfile::RuntimeDefault);
  admin_config.mutable_linux()
      ->mutable_security_context()
      ->mutable_capabilities()
      ->add_add_capabilities("SYS_ADMIN");
  std::string admin = RunSleeper(pod_id, pod, "admin", admin_config);
  ASSERT_FALSE(admin.empty());
  EXPECT_EQ(SeccompMode(admin), "2");
  r = Exec(admin, {"hostname", "foo"});
  EXPECT_EQ(r.exit_code(), 0) << "hostname foo with CAP_SYS_ADMIN: " << r.stderr();
  EXPECT_EQ(Exec(admin, {"hostname"}).stdout(), "foo\n");
}

TEST_F(PodSecurityTest, UnconfinedAndUnsetRunWithoutAFilter) {
  v1::PodSandboxConfig pod = h_->NewPod("unconfined");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = RunSleeper(pod_id, pod, "u", Sleeper(pod, "u", v1::SecurityProfile::Unconfined));
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(SeccompMode(id), "0");
  std::string unset =
      RunSleeper(pod_id, pod, "unset", h_->NewContainer(pod, "unset", {"sleep", "3600"}));
  ASSERT_FALSE(unset.empty());
  EXPECT_EQ(SeccompMode(unset), "0");
}

TEST_F(PodSecurityTest, SandboxWithRuntimeDefaultStartsFiltered) {
  v1::PodSandboxConfig pod = h_->NewPod("sbrd");
  pod.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      v1::SecurityProfile::RuntimeDefault);
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::PodSandboxStatusResponse ps;
  ASSERT_OK(h_->PodStatus(pod_id, &ps));
  EXPECT_EQ(ps.status().state(), v1::SANDBOX_READY);
  // The pause process (busybox `sleep 2147483647`) runs under a filter.
  int pauses = 0;
  for (pid_t pid : ProcessesOf(h_->root(), h_->cgroup_parent())) {
    if (pid == h_->daemon().pid()) continue;
    if (ProcText(pid, "cmdline").find("2147483647") == std::string::npos) continue;
    ++pauses;
    std::smatch m;
    const std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
    ASSERT_TRUE(std::regex_search(status, m, std::regex(R"(\nSeccomp:\s*(\d+))")));
    EXPECT_EQ(m[1], "2") << "pause process " << pid;
  }
  EXPECT_EQ(pauses, 1);
}

TEST_F(PodSecurityTest, LocalhostProfileIsApplied) {
  const fs::path profile = h_->root() / "profiles" / "deny-mkdir.json";
  fs::create_directories(profile.parent_path());
  WriteFile(profile, R"({
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
})");
  v1::PodSandboxConfig pod = h_->NewPod("local");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id =
      RunSleeper(pod_id, pod, "nomkdir",
                 Sleeper(pod, "nomkdir", v1::SecurityProfile::Localhost, profile.string()));
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(SeccompMode(id), "2");
  v1::ExecSyncResponse r = Exec(id, {"mkdir", "/tmp/x"});
  EXPECT_NE(r.exit_code(), 0) << "mkdir succeeded under a profile that denies it";
  EXPECT_THAT(r.stderr(), HasSubstr("Operation not permitted"));
  EXPECT_EQ(Exec(id, {"sh", "-c", "touch /tmp/file && echo ok"}).stdout(), "ok\n");
}

TEST_F(PodSecurityTest, MissingLocalhostProfileIsInvalidAndLeavesNothing) {
  v1::PodSandboxConfig pod = h_->NewPod("missing");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  const std::string path = (h_->root() / "profiles" / "nope.json").string();
  std::string id;
  grpc::Status s = h_->CreateContainer(
      pod_id, pod, Sleeper(pod, "c", v1::SecurityProfile::Localhost, path), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr(path));
  EXPECT_THAT(s.error_message(), HasSubstr("seccomp.localhost_ref"));
  EXPECT_TRUE(Containers().empty());

  // Legacy path form, and a malformed profile.
  const fs::path bad = h_->root() / "profiles" / "bad.json";
  fs::create_directories(bad.parent_path());
  WriteFile(bad, R"({"defaultAction": "SCMP_ACT_SOMETIMES"})");
  v1::ContainerConfig c = h_->NewContainer(pod, "legacy", {"sleep", "3600"});
  c.mutable_linux()->mutable_security_context()->set_seccomp_profile_path("localhost/" +
                                                                          bad.string());
  s = h_->CreateContainer(pod_id, pod, c, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("SCMP_ACT_SOMETIMES"));
  EXPECT_TRUE(Containers().empty());
}

TEST_F(PodSecurityTest, AppArmorLocalhostWithoutAppArmorIsFailedPrecondition) {
  if (HostHasAppArmor()) GTEST_SKIP() << "this node has AppArmor";
  v1::PodSandboxConfig pod = h_->NewPod("aa");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig c = h_->NewContainer(pod, "aa", {"sleep", "3600"});
  auto* aa = c.mutable_linux()->mutable_security_context()->mutable_apparmor();
  aa->set_profile_type(v1::SecurityProfile::Localhost);
  aa->set_localhost_ref("k8s-apparmor-example-deny-write");
  std::string id;
  grpc::Status s = h_->CreateContainer(pod_id, pod, c, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("AppArmor is not enabled on this node"));
  EXPECT_TRUE(Containers().empty());

  // RuntimeDefault is the node's default: it runs (unconfined).
  aa->set_profile_type(v1::SecurityProfile::RuntimeDefault);
  aa->clear_localhost_ref();
  EXPECT_FALSE(RunSleeper(pod_id, pod, "aa", c).empty());

  // A pod asking for it fails the same way.
  v1::PodSandboxConfig bad_pod = h_->NewPod("aapod");
  auto* pa = bad_pod.mutable_linux()->mutable_security_context()->mutable_apparmor();
  pa->set_profile_type(v1::SecurityProfile::Localhost);
  pa->set_localhost_ref("nope");
  std::string bad_id;
  EXPECT_CODE(h_->RunPod(bad_pod, &bad_id), FAILED_PRECONDITION);
}

}  // namespace
}  // namespace berth::testing
