// SPDX-License-Identifier: Apache-2.0
// Security context and isolation end to end: a real berthd and runc driven through the CRI
// socket, every effect checked from inside the container (or from the node) the way a user
// would notice it: seccomp profiles (/proc/self/status, syscalls that fail or succeed),
// AppArmor and SELinux on a node without them, users and groups (`id`), capabilities
// (CapEff, CapAmb), privileged containers, NoNewPrivs, read-only rootfs, masked and read-only
// /proc paths, /dev and devices, CDI devices, PID/IPC/network namespaces, user namespaces
// (refused), bind mounts and their propagation both ways, sysctls, and cgroup limits. Bad
// requests are refused at CreateContainer or RunPodSandbox and leave nothing.
#include <grpcpp/grpcpp.h>
#include <sys/mount.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
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
  std::vector<v1::PodSandbox> Pods() {
    std::vector<v1::PodSandbox> out;
    grpc::Status s = h_->ListPods(nullptr, &out);
    EXPECT_TRUE(s.ok()) << "ListPodSandbox: " << Describe(s);
    return out;
  }

  // A running `sleep 3600` busybox container of the pod with `edit` applied to its config.
  template <typename Edit>
  std::string Run(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                  const std::string& name, Edit edit) {
    v1::ContainerConfig c = h_->NewContainer(pod, name, {"sleep", "3600"});
    edit(&c);
    return RunSleeper(pod_id, pod, name, c);
  }
  std::string Run(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                  const std::string& name) {
    return Run(pod_id, pod, name, [](v1::ContainerConfig*) {});
  }

  // `sh -c script` in the container: stdout, with stderr after it when the exit code is not 0
  // (so a failed expectation shows why).
  std::string Sh(const std::string& id, const std::string& script) {
    v1::ExecSyncResponse r = Exec(id, {"sh", "-c", script});
    if (r.exit_code() == 0) return r.stdout();
    return r.stdout() + "[exit " + std::to_string(r.exit_code()) + "] " + r.stderr();
  }

  // A field of /proc/self/status of a process in the container ("CapEff" -> "00000000a80425fb").
  std::string Status(const std::string& id, const std::string& field) {
    return StatusField(Exec(id, {"cat", "/proc/self/status"}).stdout(), field);
  }
  static std::string StatusField(const std::string& status, const std::string& field) {
    std::smatch m;
    if (!std::regex_search(status, m, std::regex("(^|\\n)" + field + ":\\s*(\\S+)"))) {
      return "(no " + field + " line)";
    }
    return m[2];
  }
  // berthd's bounding set: what privileged containers and "ALL" get.
  std::string BerthdCapBnd() {
    return StatusField(ReadFile("/proc/" + std::to_string(h_->daemon().pid()) + "/status"),
                       "CapBnd");
  }

  // CreateContainer that must fail with `code`, leaving no container behind; the message.
  std::string CreateFails(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                          const v1::ContainerConfig& c, grpc::StatusCode code) {
    std::string id;
    grpc::Status s = h_->CreateContainer(pod_id, pod, c, &id);
    EXPECT_EQ(s.error_code(), code) << Describe(s);
    EXPECT_TRUE(Containers().empty()) << "a refused container was left behind";
    return s.error_message();
  }
};

// The capability bits of names, as CapEff prints them.
std::string CapMask(const std::vector<int>& bits) {
  uint64_t mask = 0;
  for (int b : bits) mask |= uint64_t{1} << b;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(mask));
  return buf;
}
// The default set (CAP_CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7,
// SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18, MKNOD 27, AUDIT_WRITE 29,
// SETFCAP 31): Docker's and containerd's a80425fb.
const std::vector<int> kDefaultCapBits = {0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31};

// Lines of text, sorted (for `id -G` and the like).
std::vector<std::string> SortedWords(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  std::sort(out.begin(), out.end());
  return out;
}

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
  // The pause process (busybox `sleep 2147483647`) runs under a filter. It may still be
  // `runc init` for a moment after RunPodSandbox returns (the exec follows runc start).
  std::vector<pid_t> pauses;
  auto deadline = std::chrono::steady_clock::now() + seconds(5);
  while (pauses.empty() && std::chrono::steady_clock::now() < deadline) {
    for (pid_t pid : ProcessesOf(h_->root(), h_->cgroup_parent())) {
      if (pid == h_->daemon().pid()) continue;
      if (ProcText(pid, "cmdline").find("2147483647") != std::string::npos) pauses.push_back(pid);
    }
    if (pauses.empty()) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(pauses.size(), 1u);
  const std::string status = ReadFile("/proc/" + std::to_string(pauses[0]) + "/status");
  EXPECT_EQ(StatusField(status, "Seccomp"), "2") << "pause process " << pauses[0];
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

// ---- users and groups ---------------------------------------------------------------------

TEST_F(PodSecurityTest, UsersAndGroupsComeFromTheSecurityContextAndTheImage) {
  // An image whose User is a name from its own /etc/passwd, a member of "staff" in /etc/group.
  const fs::path layer = h_->root() / "users-layer.json";
  WriteFile(layer, R"([
    {"path": "etc/passwd", "type": "file", "mode": 420, "content":
     "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
    {"path": "etc/group", "type": "file", "mode": 420, "content":
     "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"}])");
  std::string log;
  ASSERT_FALSE(registry_->registry()
                   .Push({"--repo", "test/users", "--tag", "1", "--busybox", "--layer-spec",
                          layer.string(), "--user", "app", "--cmd", R"(["sh"])"},
                         &log)
                   .empty())
      << log;
  const std::string image = registry_->host() + "/test/users:1";
  ASSERT_OK(h_->Pull(image, nullptr));

  v1::PodSandboxConfig pod = h_->NewPod("users");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  auto in_image = [&](auto edit) {
    return [&, edit](v1::ContainerConfig* c) {
      c->mutable_image()->set_image(image);
      edit(c->mutable_linux()->mutable_security_context());
    };
  };
  const std::string id = "id -u; id -g; id -G";

  // The image's User, with the groups it belongs to (SupplementalGroupsPolicy Merge).
  std::string img = Run(pod_id, pod, "img", in_image([](v1::LinuxContainerSecurityContext*) {}));
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(Sh(img, "id -u; id -g"), "1000\n1000\n");
  EXPECT_EQ(SortedWords(Sh(img, "id -G")), (std::vector<std::string>{"1000", "50"}));
  EXPECT_EQ(Sh(img, "echo $HOME"), "/home/app\n");

  // run_as_user and run_as_group win; supplemental groups are added.
  std::string nums = Run(pod_id, pod, "nums", in_image([](v1::LinuxContainerSecurityContext* sc) {
                           sc->mutable_run_as_user()->set_value(2000);
                           sc->mutable_run_as_group()->set_value(3000);
                           sc->add_supplemental_groups(4000);
                         }));
  ASSERT_FALSE(nums.empty());
  EXPECT_EQ(Sh(nums, "id -u; id -g"), "2000\n3000\n");
  EXPECT_EQ(SortedWords(Sh(nums, "id -G")), (std::vector<std::string>{"3000", "4000"}));
  v1::ContainerStatus st;
  ASSERT_OK(h_->ContainerStatus(nums, &st));
  EXPECT_EQ(st.user().linux().uid(), 2000);
  EXPECT_EQ(st.user().linux().gid(), 3000);
  EXPECT_THAT(std::vector<int64_t>(st.user().linux().supplemental_groups().begin(),
                                   st.user().linux().supplemental_groups().end()),
              ::testing::UnorderedElementsAre(3000, 4000));

  // run_as_username; Strict leaves out the image's group memberships.
  std::string strict =
      Run(pod_id, pod, "strict", in_image([](v1::LinuxContainerSecurityContext* sc) {
            sc->set_run_as_username("app");
            sc->add_supplemental_groups(4000);
            sc->set_supplemental_groups_policy(v1::Strict);
          }));
  ASSERT_FALSE(strict.empty());
  EXPECT_EQ(Sh(strict, "id -u"), "1000\n");
  EXPECT_EQ(SortedWords(Sh(strict, "id -G")), (std::vector<std::string>{"1000", "4000"}));

  // root in a busybox image: uid 0, and the root user can write the rootfs.
  std::string root = Run(pod_id, pod, "root");
  ASSERT_FALSE(root.empty());
  EXPECT_EQ(Sh(root, id), "0\n0\n0\n");

  // Refused: a group without a user, an unknown user name.
  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  bad.mutable_linux()->mutable_security_context()->mutable_run_as_group()->set_value(3000);
  for (const std::string& c : {img, nums, strict, root}) {
    ASSERT_OK(h_->StopContainer(c, 0));
    ASSERT_OK(h_->RemoveContainer(c));
  }
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("linux.security_context.run_as_group is set without"));
  bad.mutable_linux()->mutable_security_context()->set_run_as_username("nosuchuser");
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("run_as_username \"nosuchuser\""));
}

// ---- capabilities ----------------------------------------------------------------------------

TEST_F(PodSecurityTest, CapabilitiesAreTheDefaultsPlusAddsMinusDrops) {
  v1::PodSandboxConfig pod = h_->NewPod("caps");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  auto caps = [](std::vector<std::string> add, std::vector<std::string> drop) {
    return [add, drop](v1::ContainerConfig* c) {
      auto* cap = c->mutable_linux()->mutable_security_context()->mutable_capabilities();
      for (const std::string& a : add) cap->add_add_capabilities(a);
      for (const std::string& d : drop) cap->add_drop_capabilities(d);
    };
  };
  std::string plain = Run(pod_id, pod, "plain");
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(Status(plain, "CapEff"), CapMask(kDefaultCapBits));
  EXPECT_EQ(Status(plain, "CapBnd"), CapMask(kDefaultCapBits));
  EXPECT_EQ(Status(plain, "CapEff"), "00000000a80425fb");

  // With and without the CAP_ prefix, any case: + NET_ADMIN (12), - CHOWN (0).
  std::string edited = Run(pod_id, pod, "edited", caps({"net_admin"}, {"CAP_CHOWN"}));
  ASSERT_FALSE(edited.empty());
  std::vector<int> bits = kDefaultCapBits;
  bits.erase(bits.begin());
  bits.push_back(12);
  EXPECT_EQ(Status(edited, "CapEff"), CapMask(bits));
  EXPECT_EQ(Sh(edited, "ip link set lo mtu 60000 && echo set"), "set\n");
  EXPECT_THAT(Sh(plain, "ip link set lo mtu 60000 && echo set"),
              HasSubstr("Operation not permitted"));

  // ALL: nothing after drop ALL; berthd's own bounding set after add ALL.
  std::string none = Run(pod_id, pod, "none", caps({}, {"ALL"}));
  ASSERT_FALSE(none.empty());
  EXPECT_EQ(Status(none, "CapEff"), "0000000000000000");
  EXPECT_EQ(Status(none, "CapBnd"), "0000000000000000");
  EXPECT_THAT(Sh(none, "chown 1:1 /tmp && echo chowned"), HasSubstr("Operation not permitted"));
  std::string all = Run(pod_id, pod, "all", caps({"ALL"}, {}));
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(Status(all, "CapEff"), BerthdCapBnd());

  // A non-root user has no capabilities, except the ambient ones it is given.
  std::string user = Run(pod_id, pod, "user", [](v1::ContainerConfig* c) {
    c->mutable_linux()->mutable_security_context()->mutable_run_as_user()->set_value(1000);
  });
  ASSERT_FALSE(user.empty());
  EXPECT_EQ(Status(user, "CapEff"), "0000000000000000");
  std::string ambient = Run(pod_id, pod, "ambient", [](v1::ContainerConfig* c) {
    auto* sc = c->mutable_linux()->mutable_security_context();
    sc->mutable_run_as_user()->set_value(1000);
    sc->mutable_capabilities()->add_add_ambient_capabilities("NET_BIND_SERVICE");
  });
  ASSERT_FALSE(ambient.empty());
  EXPECT_EQ(Status(ambient, "CapAmb"), CapMask({10}));
  EXPECT_EQ(Status(ambient, "CapEff"), CapMask({10}));
  // Binding port 80 needs CAP_NET_BIND_SERVICE.
  const std::string bind80 = "nc -l -p 80 2>&1 & p=$!; sleep 1; kill $p 2>/dev/null && echo bound";
  EXPECT_EQ(Sh(ambient, bind80), "bound\n");
  EXPECT_THAT(Sh(user, bind80), HasSubstr("Permission denied"));

  // An unknown capability is refused, naming it.
  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  caps({"CAP_FLY"}, {})(&bad);
  for (const std::string& c : {plain, edited, none, all, user, ambient}) {
    ASSERT_OK(h_->StopContainer(c, 0));
    ASSERT_OK(h_->RemoveContainer(c));
  }
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("capabilities.add_capabilities[0] \"CAP_FLY\": unknown capability"));
}

// ---- privileged ------------------------------------------------------------------------------

// The first character or block device of the node's /dev that is not in a container's default
// set (e.g. /dev/kmsg, /dev/loop0); "" when there is none.
std::string SomeHostDevice() {
  static const std::set<std::string> kDefault = {"null",    "zero", "full",    "random",
                                                 "urandom", "tty",  "console", "ptmx"};
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev", ec)) {
    std::error_code sec;
    fs::file_status st = e.symlink_status(sec);
    if (sec) continue;
    if (st.type() != fs::file_type::character && st.type() != fs::file_type::block) continue;
    std::string n = e.path().filename();
    if (kDefault.count(n) == 0) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names.empty() ? "" : "/dev/" + names.front();
}

TEST_F(PodSecurityTest, PrivilegedGetsTheNodesCapabilitiesDevicesAndNoConfinement) {
  v1::PodSandboxConfig pod = h_->NewPod("priv");
  pod.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string priv = Run(pod_id, pod, "priv", [](v1::ContainerConfig* c) {
    auto* sc = c->mutable_linux()->mutable_security_context();
    sc->set_privileged(true);
    sc->mutable_seccomp()->set_profile_type(v1::SecurityProfile::RuntimeDefault);  // ignored
  });
  ASSERT_FALSE(priv.empty());
  // An unprivileged container of the same (privileged) pod, for contrast.
  std::string plain = Run(pod_id, pod, "plain");
  ASSERT_FALSE(plain.empty());

  EXPECT_EQ(Status(priv, "CapEff"), BerthdCapBnd());
  EXPECT_EQ(Status(priv, "Seccomp"), "0");
  // No masked or read-only /proc paths, /sys writable.
  const std::string mounts = "awk '{print $5, substr($6, 1, 2)}' /proc/self/mountinfo";
  std::string pm = Sh(priv, mounts), um = Sh(plain, mounts);
  EXPECT_THAT(um, HasSubstr("/proc/timer_list rw"));  // /dev/null bound over it
  EXPECT_THAT(um, HasSubstr("/proc/sys ro"));
  EXPECT_THAT(um, HasSubstr("/sys ro"));
  EXPECT_THAT(pm, ::testing::Not(HasSubstr("/proc/timer_list")));
  EXPECT_THAT(pm, ::testing::Not(HasSubstr("/proc/sys ")));
  EXPECT_THAT(pm, HasSubstr("/sys rw"));
  // The node's devices.
  const std::string dev = SomeHostDevice();
  if (!dev.empty()) {
    EXPECT_EQ(Sh(priv, "test -c " + dev + " || test -b " + dev + " && echo there"), "there\n")
        << dev;
    EXPECT_EQ(Sh(plain, "test -e " + dev + " || echo absent"), "absent\n") << dev;
  }

  // A privileged container needs a privileged pod.
  v1::PodSandboxConfig small = h_->NewPod("unpriv");
  std::string small_id = RunPod(small);
  ASSERT_FALSE(small_id.empty());
  v1::ContainerConfig c = h_->NewContainer(small, "p", {"sleep", "3600"});
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string id;
  grpc::Status s = h_->CreateContainer(small_id, small, c, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("linux.security_context.privileged"));
  EXPECT_EQ(Containers().size(), 2u);
}

// ---- NoNewPrivs, read-only rootfs, masked and read-only paths, /dev ----------------------------

TEST_F(PodSecurityTest, NoNewPrivsReadonlyRootfsMaskedPathsAndDev) {
  v1::PodSandboxConfig pod = h_->NewPod("paths");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string plain = Run(pod_id, pod, "plain");
  ASSERT_FALSE(plain.empty());
  std::string locked = Run(pod_id, pod, "locked", [](v1::ContainerConfig* c) {
    auto* sc = c->mutable_linux()->mutable_security_context();
    sc->set_no_new_privs(true);
    sc->set_readonly_rootfs(true);
  });
  ASSERT_FALSE(locked.empty());

  EXPECT_EQ(Status(plain, "NoNewPrivs"), "0");
  EXPECT_EQ(Status(locked, "NoNewPrivs"), "1");
  EXPECT_EQ(Sh(plain, "touch /written && echo ok"), "ok\n");
  EXPECT_THAT(Sh(locked, "touch /written && echo ok"), HasSubstr("Read-only file system"));
  EXPECT_THAT(Sh(locked, "touch /etc/hosts && echo ok"), HasSubstr("Read-only file system"));
  EXPECT_EQ(Sh(locked, "touch /dev/shm/x && echo ok"), "ok\n");

  // Masked: /proc/timer_list reads as empty, /sys/firmware is an empty directory; read-only:
  // /proc/sys, /proc/sysrq-trigger.
  EXPECT_EQ(Sh(plain, "wc -c < /proc/timer_list"), "0\n");
  EXPECT_EQ(Sh(plain, "ls -A /sys/firmware | wc -l"), "0\n");
  EXPECT_THAT(Sh(plain, "echo 1 > /proc/sys/kernel/shm_rmid_forced && echo wrote"),
              HasSubstr("Read-only file system"));
  // /proc and /sys themselves.
  EXPECT_EQ(Sh(plain,
               "awk '$5==\"/proc\"{print $9} $5==\"/sys\"{print $9, substr($6,1,2)}' "
               "/proc/self/mountinfo"),
            "proc\nsysfs ro\n");

  // Lists of the request replace the defaults.
  std::string custom = Run(pod_id, pod, "custom", [](v1::ContainerConfig* c) {
    auto* sc = c->mutable_linux()->mutable_security_context();
    sc->add_masked_paths("/proc/version");
    sc->add_readonly_paths("/proc/bus");
  });
  ASSERT_FALSE(custom.empty());
  EXPECT_EQ(Sh(custom, "wc -c < /proc/version"), "0\n");
  EXPECT_EQ(Sh(custom, "head -c 5 /proc/timer_list | wc -c"), "5\n");
  EXPECT_EQ(Sh(custom, "awk '$5==\"/proc/sys\"' /proc/self/mountinfo | wc -l"), "0\n");

  // /dev: the default devices, and nothing else may be used even when made with mknod.
  EXPECT_EQ(Sh(plain,
               "for d in null zero full random urandom tty ptmx; do test -e /dev/$d || "
               "echo missing $d; done; test -d /dev/pts && test -d /dev/shm && "
               "test -d /dev/mqueue && echo dev-ok"),
            "dev-ok\n");
  EXPECT_EQ(Sh(plain, "mknod /tmp/null2 c 1 3 && echo x > /tmp/null2 && echo null-ok"),
            "null-ok\n");
  EXPECT_THAT(Sh(plain, "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null && echo read"),
              HasSubstr("Operation not permitted"));
}

// A character device of the node that no container may use by default and that anyone may
// open for reading and writing (its ioctls need privileges, opening does not); "" if none.
std::string UnlistedDevice() {
  for (const char* d : {"/dev/fuse", "/dev/loop-control"}) {
    std::error_code ec;
    if (fs::symlink_status(d, ec).type() == fs::file_type::character) return d;
  }
  return "";
}

// Shell lines that open `dev` for reading, then for writing, printing what worked.
std::string OpenReadThenWrite(const std::string& dev) {
  return "exec 3<" + dev + " && echo opened-r; exec 4>" + dev + " && echo opened-w";
}

TEST_F(PodSecurityTest, DevicesOfTheRequestWithTheirPermissions) {
  const std::string dev = UnlistedDevice();
  if (dev.empty()) GTEST_SKIP() << "no /dev/fuse or /dev/loop-control on this node";
  v1::PodSandboxConfig pod = h_->NewPod("devices");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = Run(pod_id, pod, "dev", [&](v1::ContainerConfig* c) {
    v1::Device* rw = c->add_devices();
    rw->set_host_path(dev);
    rw->set_container_path("/dev/test-rw");
    rw->set_permissions("rw");
    v1::Device* ro = c->add_devices();
    ro->set_host_path(dev);
    ro->set_container_path("/dev/test-r");
    ro->set_permissions("r");
  });
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, OpenReadThenWrite("/dev/test-rw")), "opened-r\nopened-w\n");
  // Both nodes have the same numbers: the cgroup allows what the union allows.
  std::string solo = Run(pod_id, pod, "solo", [&](v1::ContainerConfig* c) {
    v1::Device* ro = c->add_devices();
    ro->set_host_path(dev);
    ro->set_container_path("/dev/test-r");
    ro->set_permissions("r");
  });
  ASSERT_FALSE(solo.empty());
  std::string out = Sh(solo, OpenReadThenWrite("/dev/test-r"));
  EXPECT_THAT(out, HasSubstr("opened-r\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("opened-w")));
  EXPECT_THAT(out, HasSubstr("Operation not permitted"));
  ASSERT_OK(h_->StopContainer(solo, 0));
  ASSERT_OK(h_->RemoveContainer(solo));

  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  v1::Device* d = bad.add_devices();
  d->set_host_path("/dev/no-such-device");
  d->set_container_path("/dev/x");
  ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->RemoveContainer(id));
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("devices[0].host_path \"/dev/no-such-device\""));
}

// ---- CDI ---------------------------------------------------------------------------------------

// A CDI spec in /var/run/cdi (the node's directory for generated specs) for the test's own
// vendor kind, removed again (with the directory, when the test made it).
class CdiSpecFile {
 public:
  CdiSpecFile(const std::string& kind, const std::string& text) {
    made_dir_ = !fs::exists(kDir);
    fs::create_directories(kDir);
    path_ = fs::path(kDir) / (kind.substr(0, kind.find('/')) + ".json");
    WriteFile(path_, text);
  }
  ~CdiSpecFile() {
    std::error_code ec;
    fs::remove(path_, ec);
    if (made_dir_) fs::remove(kDir, ec);
  }

 private:
  static constexpr const char* kDir = "/var/run/cdi";
  fs::path path_;
  bool made_dir_ = false;
};

TEST_F(PodSecurityTest, CdiDevicesAreInjectedFromTheNodesSpecs) {
  const std::string dev = UnlistedDevice();
  if (dev.empty()) GTEST_SKIP() << "no /dev/fuse or /dev/loop-control on this node";
  const std::string vendor = "berth-test-" + RandomHex(8) + ".example.com";
  const std::string kind = vendor + "/card";
  const fs::path lib = h_->root() / "vendor-lib";
  WriteFile(lib / "libvendor.so", "not really a library\n");
  CdiSpecFile spec(kind, R"({
    "cdiVersion": "0.6.0", "kind": ")" +
                             kind + R"(",
    "containerEdits": {"env": ["VENDOR_DRIVER=1.2"],
      "mounts": [{"hostPath": ")" +
                             lib.string() + R"(", "containerPath": "/usr/lib/vendor",
                  "options": ["ro", "nosuid", "nodev", "rbind"], "type": "bind"}]},
    "devices": [
      {"name": "card0", "containerEdits": {
        "deviceNodes": [{"path": "/dev/card0", "hostPath": "/dev/null"}],
        "env": ["VENDOR_CARDS=card0"]}},
      {"name": "card1", "containerEdits": {
        "deviceNodes": [{"path": "/dev/card1", "hostPath": ")" +
                             dev + R"(", "permissions": "r"}]}}
    ]})");
  v1::PodSandboxConfig pod = h_->NewPod("cdi");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());

  // By the CDI_devices field...
  std::string by_field = Run(pod_id, pod, "field", [&](v1::ContainerConfig* c) {
    c->add_cdi_devices()->set_name(kind + "=card0");
  });
  ASSERT_FALSE(by_field.empty());
  EXPECT_EQ(Sh(by_field, "test -c /dev/card0 && echo x > /dev/card0 && echo card0-ok"),
            "card0-ok\n");
  EXPECT_EQ(Sh(by_field, "echo $VENDOR_DRIVER $VENDOR_CARDS"), "1.2 card0\n");
  EXPECT_EQ(Sh(by_field, "cat /usr/lib/vendor/libvendor.so"), "not really a library\n");
  EXPECT_THAT(Sh(by_field, "touch /usr/lib/vendor/x && echo wrote"),
              HasSubstr("Read-only file system"));
  EXPECT_EQ(Sh(by_field, "test -e /dev/card1 || echo no-card1"), "no-card1\n");

  // ...and by the annotation, with the device's permissions.
  std::string by_annotation = Run(pod_id, pod, "annotation", [&](v1::ContainerConfig* c) {
    (*c->mutable_annotations())["cdi.k8s.io/test-plugin"] = kind + "=card1";
  });
  ASSERT_FALSE(by_annotation.empty());
  std::string out = Sh(by_annotation, OpenReadThenWrite("/dev/card1"));
  EXPECT_THAT(out, HasSubstr("opened-r\n"));
  EXPECT_THAT(out, HasSubstr("Operation not permitted"));
  EXPECT_EQ(Sh(by_annotation, "echo $VENDOR_DRIVER; test -e /dev/card0 || echo no-card0"),
            "1.2\nno-card0\n");

  // An unknown device is refused, naming it and what the kind has.
  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  bad.add_cdi_devices()->set_name(kind + "=card7");
  ASSERT_OK(h_->StopContainer(by_field, 0));
  ASSERT_OK(h_->RemoveContainer(by_field));
  ASSERT_OK(h_->StopContainer(by_annotation, 0));
  ASSERT_OK(h_->RemoveContainer(by_annotation));
  std::string msg = CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(msg, HasSubstr("CDI_devices[0].name \"" + kind + "=card7\": unknown CDI device"));
  EXPECT_THAT(msg, HasSubstr("(" + kind + " has card0, card1)"));
}

// ---- namespaces --------------------------------------------------------------------------------

TEST_F(PodSecurityTest, PidIpcAndNetworkNamespacesFollowTheModes) {
  auto link = [](const std::string& p) { return fs::read_symlink(p).string() + "\n"; };
  // Per container (the kubelet's default): the container's command is pid 1.
  v1::PodSandboxConfig pod = h_->NewPod("ns");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string a = Run(pod_id, pod, "a", [](v1::ContainerConfig* c) { c->set_command(1, "3601"); });
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(Sh(a, "tr '\\0' ' ' < /proc/1/cmdline"), "sleep 3601 ");
  // TARGET: in a's pid namespace.
  std::string b = Run(pod_id, pod, "b", [&](v1::ContainerConfig* c) {
    auto* ns = c->mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_pid(v1::TARGET);
    ns->set_target_id(a);
  });
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(Sh(b, "tr '\\0' ' ' < /proc/1/cmdline"), "sleep 3601 ");
  // The pod's ipc and network namespaces, not the node's.
  EXPECT_NE(Sh(a, "readlink /proc/self/ns/ipc"), link("/proc/self/ns/ipc"));
  EXPECT_NE(Sh(a, "readlink /proc/self/ns/net"), link("/proc/self/ns/net"));

  // POD: the pause process is pid 1 and every container sees the others.
  v1::PodSandboxConfig shared = h_->NewPod("podpid");
  shared.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  std::string shared_id = RunPod(shared);
  ASSERT_FALSE(shared_id.empty());
  std::string s1 = Run(shared_id, shared, "s1");
  ASSERT_FALSE(s1.empty());
  EXPECT_THAT(Sh(s1, "tr '\\0' ' ' < /proc/1/cmdline"), HasSubstr("2147483647"));

  // NODE for pid, ipc and network: the node's namespaces.
  v1::PodSandboxConfig host = h_->NewPod("hostns", Network::kHost);
  auto* hns = host.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  hns->set_pid(v1::NODE);
  hns->set_ipc(v1::NODE);
  std::string host_id = RunPod(host);
  ASSERT_FALSE(host_id.empty());
  std::string h1 = Run(host_id, host, "h1");
  ASSERT_FALSE(h1.empty());
  for (const char* ns : {"pid", "ipc", "net"}) {
    EXPECT_EQ(Sh(h1, std::string("readlink /proc/self/ns/") + ns),
              link(std::string("/proc/self/ns/") + ns))
        << ns;
  }
  EXPECT_EQ(Sh(h1, "test -d /proc/" + std::to_string(h_->daemon().pid()) + " && echo sees-berthd"),
            "sees-berthd\n");
}

TEST_F(PodSecurityTest, UserNamespacesAreRefusedSayingWhyAndStatusSaysSo) {
  v1::StatusRequest req;
  v1::StatusResponse resp;
  ASSERT_OK(h_->rt().Status(CriContext().get(), req, &resp));
  ASSERT_GT(resp.runtime_handlers_size(), 0);
  for (const v1::RuntimeHandler& rh : resp.runtime_handlers()) {
    EXPECT_FALSE(rh.features().user_namespaces()) << rh.name();
  }

  v1::PodSandboxConfig pod = h_->NewPod("userns");
  auto* u = pod.mutable_linux()
                ->mutable_security_context()
                ->mutable_namespace_options()
                ->mutable_userns_options();
  u->set_mode(v1::POD);
  for (auto* list : {u->mutable_uids(), u->mutable_gids()}) {
    v1::IDMapping* m = list->Add();
    m->set_host_id(65536 * 8);
    m->set_container_id(0);
    m->set_length(65536);
  }
  std::string id;
  grpc::Status s = h_->RunPod(pod, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("namespace_options.userns_options"));
  EXPECT_THAT(s.error_message(), HasSubstr("hostUsers: true"));
  EXPECT_TRUE(Pods().empty());
  // Malformed mappings are INVALID_ARGUMENT.
  u->mutable_uids(0)->set_length(0);
  EXPECT_CODE(h_->RunPod(pod, &id), INVALID_ARGUMENT);
  EXPECT_TRUE(Pods().empty());
}

// ---- mounts ------------------------------------------------------------------------------------

TEST_F(PodSecurityTest, BindMountsOfFilesDirectoriesAndSymlinks) {
  const fs::path dir = h_->root() / "vol";
  WriteFile(dir / "in-dir", "from the dir\n");
  WriteFile(h_->root() / "single-file", "from the file\n");
  fs::create_symlink(dir, h_->root() / "vol-link");
  v1::PodSandboxConfig pod = h_->NewPod("mounts");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = Run(pod_id, pod, "m", [&](v1::ContainerConfig* c) {
    auto add = [c](const fs::path& host, const std::string& ctr, bool ro) {
      v1::Mount* m = c->add_mounts();
      m->set_host_path(host.string());
      m->set_container_path(ctr);
      m->set_readonly(ro);
    };
    add(dir, "/rw", false);
    add(dir, "/ro", true);
    add(h_->root() / "single-file", "/etc/single", true);
    add(h_->root() / "vol-link", "/via-link", false);
  });
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, "cat /rw/in-dir /etc/single /via-link/in-dir"),
            "from the dir\nfrom the file\nfrom the dir\n");
  EXPECT_EQ(Sh(id, "echo written > /rw/out && echo ok"), "ok\n");
  EXPECT_EQ(ReadFile(dir / "out"), "written\n");
  EXPECT_THAT(Sh(id, "echo x > /ro/nope && echo ok"), HasSubstr("Read-only file system"));
  EXPECT_THAT(Sh(id, "echo x > /etc/single && echo ok"), HasSubstr("Read-only file system"));

  // Not there yet, and said so: recursive read-only on runc 1.1.
  ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->RemoveContainer(id));
  v1::ContainerConfig rro = h_->NewContainer(pod, "rro", {"sleep", "3600"});
  v1::Mount* m = rro.add_mounts();
  m->set_host_path(dir.string());
  m->set_container_path("/rro");
  m->set_readonly(true);
  m->set_recursive_read_only(true);
  EXPECT_THAT(CreateFails(pod_id, pod, rro, grpc::StatusCode::UNIMPLEMENTED),
              HasSubstr("mounts[0].recursive_read_only"));
}

// Image volumes (Mount.image): a pulled image's content, read-only, whole or a subdirectory.
TEST_F(PodSecurityTest, ImageVolumesAreTheImagesContentReadOnly) {
  v1::PodSandboxConfig pod = h_->NewPod("image-volumes");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  auto image_mount = [&](v1::ContainerConfig* c, const std::string& path, const std::string& sub,
                         const std::string& image) {
    v1::Mount* m = c->add_mounts();
    m->set_container_path(path);
    m->mutable_image()->set_image(image);
    m->set_image_sub_path(sub);
  };
  std::string id = Run(pod_id, pod, "vol", [&](v1::ContainerConfig* c) {
    image_mount(c, "/image", "", h_->images().busybox);
    image_mount(c, "/image-bin", "bin", h_->images().busybox);
  });
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, "test -x /image/bin/busybox && test -x /image-bin/busybox && echo both"),
            "both\n");
  EXPECT_THAT(Sh(id, "touch /image/new && echo ok"), HasSubstr("Read-only file system"));
  EXPECT_THAT(Sh(id, "touch /image-bin/new && echo ok"), HasSubstr("Read-only file system"));
  ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->RemoveContainer(id));
  // Nothing of the image volumes is mounted any more.
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    EXPECT_EQ(line.find(id + "/image-mounts"), std::string::npos) << line;
  }

  // Bad requests: a sub path leaving the image, a missing one, an image not on the node.
  v1::ContainerConfig up = h_->NewContainer(pod, "up", {"sleep", "3600"});
  image_mount(&up, "/up", "../etc", h_->images().busybox);
  EXPECT_THAT(CreateFails(pod_id, pod, up, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("mounts[0].image_sub_path"));
  v1::ContainerConfig missing = h_->NewContainer(pod, "missing", {"sleep", "3600"});
  image_mount(&missing, "/m", "no/such/dir", h_->images().busybox);
  EXPECT_THAT(CreateFails(pod_id, pod, missing, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("not found in the image"));
  v1::ContainerConfig absent = h_->NewContainer(pod, "absent", {"sleep", "3600"});
  image_mount(&absent, "/a", "", "127.0.0.1:1/never/pulled:1");
  EXPECT_THAT(CreateFails(pod_id, pod, absent, grpc::StatusCode::NOT_FOUND),
              HasSubstr("mounts[0].image"));
}

TEST_F(PodSecurityTest, MountPropagationHostToContainerAndBothWays) {
  // A shared mount of the test's own (the node's / may well be private).
  const fs::path shared = h_->root() / "shared";
  fs::create_directories(shared / "from-host");
  ASSERT_EQ(::mount(shared.c_str(), shared.c_str(), nullptr, MS_BIND, nullptr), 0);
  ASSERT_EQ(::mount(nullptr, shared.c_str(), nullptr, MS_SHARED | MS_REC, nullptr), 0);
  const fs::path priv = h_->root() / "private";
  fs::create_directories(priv);

  v1::PodSandboxConfig pod = h_->NewPod("propagation");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  auto with_mount = [](const fs::path& host, const std::string& ctr, v1::MountPropagation p,
                       bool sys_admin) {
    return [=](v1::ContainerConfig* c) {
      v1::Mount* m = c->add_mounts();
      m->set_host_path(host.string());
      m->set_container_path(ctr);
      m->set_propagation(p);
      if (sys_admin) {
        c->mutable_linux()
            ->mutable_security_context()
            ->mutable_capabilities()
            ->add_add_capabilities("SYS_ADMIN");
      }
    };
  };
  std::string slave = Run(pod_id, pod, "slave",
                          with_mount(shared, "/mnt/s", v1::PROPAGATION_HOST_TO_CONTAINER, false));
  ASSERT_FALSE(slave.empty());
  std::string bidi =
      Run(pod_id, pod, "bidi", with_mount(shared, "/mnt/b", v1::PROPAGATION_BIDIRECTIONAL, true));
  ASSERT_FALSE(bidi.empty());
  std::string closed =
      Run(pod_id, pod, "private", with_mount(shared, "/mnt/p", v1::PROPAGATION_PRIVATE, false));
  ASSERT_FALSE(closed.empty());

  // Node -> containers: a tmpfs mounted on the node after the containers started.
  ASSERT_EQ(::mount("tmpfs", (shared / "from-host").c_str(), "tmpfs", 0, "size=1m"), 0);
  WriteFile(shared / "from-host" / "note", "mounted on the node\n");
  EXPECT_EQ(Sh(slave, "cat /mnt/s/from-host/note"), "mounted on the node\n");
  EXPECT_EQ(Sh(bidi, "cat /mnt/b/from-host/note"), "mounted on the node\n");
  EXPECT_THAT(Sh(closed, "cat /mnt/p/from-host/note"), HasSubstr("No such file"));

  // Container -> node (BIDIRECTIONAL only).
  EXPECT_EQ(Sh(bidi,
               "mkdir -p /mnt/b/from-ctr && mount -t tmpfs -o size=1m tmpfs "
               "/mnt/b/from-ctr && echo mounted in the container > /mnt/b/from-ctr/note "
               "&& echo ok"),
            "ok\n");
  EXPECT_EQ(ReadFile(shared / "from-ctr" / "note"), "mounted in the container\n");
  EXPECT_EQ(Sh(slave, "cat /mnt/s/from-ctr/note"), "mounted in the container\n");

  // A source on a private mount cannot propagate: said so, nothing created.
  for (const std::string& c : {slave, bidi, closed}) {
    ASSERT_OK(h_->StopContainer(c, 0));
    ASSERT_OK(h_->RemoveContainer(c));
  }
  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  with_mount(priv, "/mnt/x", v1::PROPAGATION_BIDIRECTIONAL, true)(&bad);
  std::string msg = CreateFails(pod_id, pod, bad, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(msg, HasSubstr("mounts[0].host_path \"" + priv.string() + "\""));
  EXPECT_THAT(msg, HasSubstr("not shared: PROPAGATION_BIDIRECTIONAL needs a shared mount"));
}

// ---- sysctls -----------------------------------------------------------------------------------

TEST_F(PodSecurityTest, NamespacedSysctlsReachThePodOthersAreRefused) {
  const std::string host_port_start = ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  v1::PodSandboxConfig pod = h_->NewPod("sysctl");
  (*pod.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "80";
  (*pod.mutable_linux()->mutable_sysctls())["kernel.shm_rmid_forced"] = "1";
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = Run(pod_id, pod, "c");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id,
               "cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
               "/proc/sys/kernel/shm_rmid_forced"),
            "80\n1\n");
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"), host_port_start);

  auto refused = [&](const std::string& name, Network net, const std::string& key,
                     const std::string& why) {
    v1::PodSandboxConfig bad = h_->NewPod(name, net);
    (*bad.mutable_linux()->mutable_sysctls())[key] = "1";
    std::string bad_id;
    grpc::Status s = h_->RunPod(bad, &bad_id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);
    EXPECT_THAT(s.error_message(), HasSubstr("linux.sysctls[\"" + key + "\"]"));
    EXPECT_THAT(s.error_message(), HasSubstr(why));
  };
  refused("nonns", Network::kPod, "kernel.panic", "not an allowed namespaced sysctl");
  refused("hostnet", Network::kHost, "net.ipv4.ip_forward", "host's network namespace");
  EXPECT_EQ(Pods().size(), 1u);
}

// ---- resources ---------------------------------------------------------------------------------

TEST_F(PodSecurityTest, ResourcesAreTheContainersCgroupLimitsAndOomScoreAdj) {
  const bool v2 = fs::exists("/sys/fs/cgroup/cgroup.controllers");
  v1::PodSandboxConfig pod = h_->NewPod("resources");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = Run(pod_id, pod, "limited", [](v1::ContainerConfig* c) {
    auto* r = c->mutable_linux()->mutable_resources();
    r->set_cpu_period(100000);
    r->set_cpu_quota(50000);
    r->set_cpu_shares(512);
    r->set_cpuset_cpus("0");
    r->set_memory_limit_in_bytes(64 << 20);
    r->set_memory_swap_limit_in_bytes(96 << 20);
    r->set_oom_score_adj(500);
  });
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, "cat /proc/self/oom_score_adj"), "500\n");
  // As the container sees its cgroup.
  if (v2) {
    EXPECT_EQ(Sh(id,
                 "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max "
                 "/sys/fs/cgroup/memory.swap.max /sys/fs/cgroup/cpuset.cpus"),
              "50000 100000\n67108864\n33554432\n0\n");
  } else {
    EXPECT_EQ(Sh(id,
                 "cat /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                 "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus "
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes "
                 "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
              "100000\n50000\n512\n0\n67108864\n100663296\n");
  }
  // Memory over the limit is not there to have: the allocating process is OOM-killed.
  v1::ExecSyncResponse r = Exec(id, {"sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"});
  EXPECT_NE(r.exit_code(), 0) << "200 MiB through tail in a 64 MiB (+32 MiB swap) container";

  // Changed live, seen from inside, reported.
  v1::UpdateContainerResourcesRequest req;
  req.set_container_id(id);
  *req.mutable_linux() = v1::LinuxContainerResources();
  req.mutable_linux()->set_cpu_period(100000);
  req.mutable_linux()->set_cpu_quota(20000);
  req.mutable_linux()->set_memory_limit_in_bytes(48 << 20);
  req.mutable_linux()->set_memory_swap_limit_in_bytes(96 << 20);
  v1::UpdateContainerResourcesResponse resp;
  ASSERT_OK(h_->rt().UpdateContainerResources(CriContext().get(), req, &resp));
  EXPECT_EQ(Sh(id, v2 ? "cat /sys/fs/cgroup/memory.max; cut -d' ' -f1 /sys/fs/cgroup/cpu.max"
                      : "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            "50331648\n20000\n");
  v1::ContainerStatus st;
  ASSERT_OK(h_->ContainerStatus(id, &st));
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 48 << 20);
  EXPECT_EQ(st.resources().linux().cpu_quota(), 20000);

  // A quota below the kernel's minimum is refused, naming it.
  ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->RemoveContainer(id));
  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  bad.mutable_linux()->mutable_resources()->set_cpu_quota(500);
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("linux.resources.cpu_quota"));
}

// ---- seccomp and LSM odds and ends -------------------------------------------------------------

TEST_F(PodSecurityTest, LegacySeccompStringsAndUnknownProfileTypes) {
  v1::PodSandboxConfig pod = h_->NewPod("legacy");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  std::string id = Run(pod_id, pod, "rd", [](v1::ContainerConfig* c) {
    c->mutable_linux()->mutable_security_context()->set_seccomp_profile_path("runtime/default");
  });
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(SeccompMode(id), "2");
  EXPECT_THAT(Sh(id, "hostname foo && echo renamed"), ::testing::Not(HasSubstr("renamed")));
  ASSERT_OK(h_->StopContainer(id, 0));
  ASSERT_OK(h_->RemoveContainer(id));

  v1::ContainerConfig bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  bad.mutable_linux()->mutable_security_context()->set_seccomp_profile_path("docker/strict");
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("docker/strict"));
  bad = h_->NewContainer(pod, "bad", {"sleep", "3600"});
  bad.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      static_cast<v1::SecurityProfile::ProfileType>(7));
  EXPECT_THAT(CreateFails(pod_id, pod, bad, grpc::StatusCode::INVALID_ARGUMENT),
              HasSubstr("seccomp"));
}

TEST_F(PodSecurityTest, SelinuxOptionsOnANodeWithoutSelinuxFailAndStatusSaysWhatIsThere) {
  const bool selinux = fs::exists("/sys/fs/selinux/enforce");
  v1::StatusRequest req;
  req.set_verbose(true);
  v1::StatusResponse resp;
  ASSERT_OK(h_->rt().Status(CriContext().get(), req, &resp));
  ASSERT_EQ(resp.info().count("securityProfiles"), 1u);
  const std::string profiles = resp.info().at("securityProfiles");
  EXPECT_THAT(profiles, HasSubstr(std::string("\"selinux\":") + (selinux ? "true" : "false")));
  EXPECT_THAT(profiles,
              HasSubstr(std::string("\"apparmor\":") + (HostHasAppArmor() ? "true" : "false")));
  if (selinux) GTEST_SKIP() << "this node has SELinux";

  v1::PodSandboxConfig pod = h_->NewPod("selinux");
  std::string pod_id = RunPod(pod);
  ASSERT_FALSE(pod_id.empty());
  v1::ContainerConfig c = h_->NewContainer(pod, "c", {"sleep", "3600"});
  c.mutable_linux()->mutable_security_context()->mutable_selinux_options()->set_level("s0:c1,c2");
  EXPECT_THAT(CreateFails(pod_id, pod, c, grpc::StatusCode::FAILED_PRECONDITION),
              HasSubstr("SELinux is not enabled on this node"));
}

}  // namespace
}  // namespace berth::testing
