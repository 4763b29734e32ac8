// SPDX-License-Identifier: Apache-2.0
// Seccomp profiles: berth's RuntimeDefault profile, Localhost profiles (OCI and Docker
// formats), the deprecated seccomp_profile_path, and what the spec builder puts in
// linux.seccomp for containers and sandboxes.
#include "plugins/cri/seccomp_profile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "plugins/cri/oci_spec.h"
#include "plugins/cri/tests/spec_fixtures.h"

namespace berth::cri {
namespace {

// The tests set the deprecated seccomp_profile_path and apparmor_profile on purpose.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

using nlohmann::json;
using runtime::v1::SecurityProfile;

// Names allowed unconditionally (no args) by a profile.
std::set<std::string> PlainAllowed(const json& profile) {
  std::set<std::string> out;
  for (const json& r : profile["syscalls"]) {
    if (r["action"] != "SCMP_ACT_ALLOW" || r.contains("args")) continue;
    for (const json& n : r["names"]) out.insert(n.get<std::string>());
  }
  return out;
}

std::vector<json> RulesFor(const json& profile, const std::string& name) {
  std::vector<json> out;
  for (const json& r : profile["syscalls"]) {
    for (const json& n : r["names"]) {
      if (n == name) out.push_back(r);
    }
  }
  return out;
}

std::vector<std::string> WithCaps(std::vector<std::string> extra) {
  std::vector<std::string> caps = DefaultCapabilities();
  caps.insert(caps.end(), extra.begin(), extra.end());
  return caps;
}

TEST(DefaultSeccompProfile, DeniesWithEpermOnTheNativeArchitectures) {
  json p = DefaultSeccompProfile(DefaultCapabilities(), "x86_64");
  EXPECT_EQ(p["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(p["defaultErrnoRet"], 1);
  EXPECT_EQ(p["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  json arm = DefaultSeccompProfile(DefaultCapabilities(), "aarch64");
  EXPECT_EQ(arm["architectures"], json({"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
}

TEST(DefaultSeccompProfile, AllowsWhatOrdinaryProgramsUse) {
  std::set<std::string> allowed = PlainAllowed(DefaultSeccompProfile(DefaultCapabilities()));
  for (const char* name :
       {"read",       "write",   "openat",    "close",        "mmap",       "execve",
        "exit_group", "futex",   "mkdir",     "rt_sigaction", "epoll_wait", "accept4",
        "getrandom",  "statx",   "chroot",    "setuid",       "wait4",      "clock_gettime",
        "prctl",      "seccomp", "io_submit", "pidfd_open"}) {
    EXPECT_TRUE(allowed.count(name)) << name;
  }
  EXPECT_GT(allowed.size(), 300u);
}

TEST(DefaultSeccompProfile, CapabilityGatedSyscallsNeedTheCapability) {
  const std::map<std::string, std::vector<std::string>> gated = {
      {"CAP_SYS_ADMIN",
       {"sethostname", "setdomainname", "mount", "umount2", "unshare", "setns", "bpf",
        "perf_event_open", "clone", "clone3"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}},
      {"CAP_SYS_TIME", {"settimeofday", "clock_settime"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd"}},
      {"CAP_SYS_NICE", {"mbind", "set_mempolicy"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_BPF", {"bpf"}},
      {"CAP_PERFMON", {"perf_event_open"}},
  };
  std::set<std::string> base = PlainAllowed(DefaultSeccompProfile(DefaultCapabilities()));
  for (const auto& [cap, names] : gated) {
    std::set<std::string> with = PlainAllowed(DefaultSeccompProfile(WithCaps({cap})));
    for (const std::string& n : names) {
      EXPECT_FALSE(base.count(n)) << n << " allowed without " << cap;
      EXPECT_TRUE(with.count(n)) << n << " not allowed with " << cap;
    }
  }
}

TEST(DefaultSeccompProfile, CloneWithoutSysAdminMayNotCreateNamespaces) {
  json p = DefaultSeccompProfile(DefaultCapabilities());
  std::vector<json> clone = RulesFor(p, "clone");
  ASSERT_EQ(clone.size(), 1u);
  EXPECT_EQ(clone[0]["action"], "SCMP_ACT_ALLOW");
  ASSERT_EQ(clone[0]["args"].size(), 1u);
  EXPECT_EQ(clone[0]["args"][0]["index"], 0);
  EXPECT_EQ(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(clone[0]["args"][0]["value"], 0x7E020000u);
  EXPECT_EQ(clone[0]["args"][0]["valueTwo"], 0u);
  std::vector<json> clone3 = RulesFor(p, "clone3");
  ASSERT_EQ(clone3.size(), 1u);
  EXPECT_EQ(clone3[0]["action"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(clone3[0]["errnoRet"], 38);  // ENOSYS: libc falls back to clone

  json admin = DefaultSeccompProfile(WithCaps({"CAP_SYS_ADMIN"}));
  std::vector<json> admin_clone = RulesFor(admin, "clone");
  ASSERT_EQ(admin_clone.size(), 1u);
  EXPECT_FALSE(admin_clone[0].contains("args"));
}

TEST(DefaultSeccompProfile, PersonalityOnlyForKnownDomains) {
  json p = DefaultSeccompProfile(DefaultCapabilities());
  std::set<uint64_t> values;
  for (const json& r : RulesFor(p, "personality")) {
    ASSERT_EQ(r["args"].size(), 1u);
    EXPECT_EQ(r["args"][0]["op"], "SCMP_CMP_EQ");
    values.insert(r["args"][0]["value"].get<uint64_t>());
  }
  EXPECT_EQ(values, (std::set<uint64_t>{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}));
  EXPECT_FALSE(PlainAllowed(p).count("personality"));
}

TEST(DefaultSeccompProfile, IsDeterministic) {
  EXPECT_EQ(DefaultSeccompProfile(DefaultCapabilities()).dump(),
            DefaultSeccompProfile(DefaultCapabilities()).dump());
}

// ----------------------------------------------------------------------------------------
// Localhost profiles

TEST(ParseSeccompProfile, AcceptsTheOciForm) {
  absl::StatusOr<json> p = ParseSeccompProfile(R"({
    "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                 {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})",
                                               DefaultCapabilities(), "x86_64");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_EQ((*p)["architectures"], json({"SCMP_ARCH_X86_64"}));
  ASSERT_EQ((*p)["syscalls"].size(), 2u);
  EXPECT_EQ((*p)["syscalls"][0]["names"], json({"mkdir", "mkdirat"}));
  EXPECT_EQ((*p)["syscalls"][0]["errnoRet"], 1);
  EXPECT_EQ((*p)["syscalls"][1]["args"][0],
            json({{"index", 0}, {"value", 8}, {"valueTwo", 0}, {"op", "SCMP_CMP_EQ"}}));
}

TEST(ParseSeccompProfile, ConvertsDockerFormat) {
  absl::StatusOr<json> p = ParseSeccompProfile(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
      {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basic"},
      {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": []},
      {"names": ["sethostname"], "action": "SCMP_ACT_ALLOW",
       "includes": {"caps": ["CAP_SYS_ADMIN"]}},
      {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
       "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
      {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
       "includes": {"arches": ["amd64", "x32"]}},
      {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}}
    ]})",
                                               DefaultCapabilities(), "x86_64");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["defaultErrnoRet"], 1);
  EXPECT_EQ((*p)["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  std::set<std::string> allowed = PlainAllowed(*p);
  EXPECT_EQ(allowed, (std::set<std::string>{"read", "write", "getpid", "clone", "arch_prctl"}));
  for (const json& r : (*p)["syscalls"]) {
    EXPECT_FALSE(r.contains("comment") || r.contains("includes") || r.contains("name")) << r;
  }
}

TEST(ParseSeccompProfile, RejectsMalformedProfilesSayingWhy) {
  const std::map<std::string, std::string> bad = {
      {"{not json", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"syscalls": []})", "defaultAction: missing"},
      {R"({"defaultAction": "SCMP_ACT_MAYBE"})", "unknown action \"SCMP_ACT_MAYBE\""},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]})",
       "unknown architecture"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "NOPE"}]})",
       "syscalls[0].action: unknown action"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]})",
       "syscalls[0]: no syscall names"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"],
          "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]})",
       "syscalls[0].args[0].op: unknown operator"},
  };
  for (const auto& [text, want] : bad) {
    absl::StatusOr<json> p = ParseSeccompProfile(text, DefaultCapabilities(), "x86_64");
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(p.status().message().find(want), std::string::npos) << text << " -> " << p.status();
  }
}

// ----------------------------------------------------------------------------------------
// ResolveSeccomp: the CRI fields

SecurityEnv FakeFiles(std::map<std::string, std::string> files) {
  SecurityEnv env;
  env.lsm = LsmState{};
  env.read_file = [files](const std::string& path) -> absl::StatusOr<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return absl::NotFoundError("open " + path + ": no such file");
    return it->second;
  };
  return env;
}

constexpr char kDenyMkdir[] =
    R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]})";

SecurityProfile Profile(SecurityProfile::ProfileType type, const std::string& ref = "") {
  SecurityProfile p;
  p.set_profile_type(type);
  p.set_localhost_ref(ref);
  return p;
}

TEST(ResolveSeccomp, ProfileTypes) {
  SecurityEnv env = FakeFiles({{"/etc/seccomp/deny-mkdir.json", kDenyMkdir}});
  SecurityProfile rd = Profile(SecurityProfile::RuntimeDefault);
  absl::StatusOr<json> p = ResolveSeccomp({&rd, "", "sc"}, DefaultCapabilities(), env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, DefaultSeccompProfile(DefaultCapabilities()));

  SecurityProfile un = Profile(SecurityProfile::Unconfined);
  p = ResolveSeccomp({&un, "runtime/default", "sc"}, DefaultCapabilities(), env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->is_null());  // the field wins over the deprecated string

  SecurityProfile lh = Profile(SecurityProfile::Localhost, "/etc/seccomp/deny-mkdir.json");
  p = ResolveSeccomp({&lh, "", "sc"}, DefaultCapabilities(), env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_EQ((*p)["syscalls"][0]["names"], json({"mkdir", "mkdirat"}));
}

TEST(ResolveSeccomp, LocalhostErrorsNameTheFieldAndPath) {
  SecurityEnv env = FakeFiles({{"/bad.json", "{\"defaultAction\": "}});
  SecurityProfile missing = Profile(SecurityProfile::Localhost, "/no/such.json");
  absl::StatusOr<json> p = ResolveSeccomp({&missing, "", "sc"}, DefaultCapabilities(), env);
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("sc.seccomp.localhost_ref \"/no/such.json\": no such file"),
            std::string::npos)
      << p.status();

  SecurityProfile bad = Profile(SecurityProfile::Localhost, "/bad.json");
  p = ResolveSeccomp({&bad, "", "sc"}, DefaultCapabilities(), env);
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("\"/bad.json\": bad seccomp profile: not valid JSON"),
            std::string::npos)
      << p.status();

  SecurityProfile relative = Profile(SecurityProfile::Localhost, "profiles/x.json");
  p = ResolveSeccomp({&relative, "", "sc"}, DefaultCapabilities(), env);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  SecurityProfile empty = Profile(SecurityProfile::Localhost, "");
  p = ResolveSeccomp({&empty, "", "sc"}, DefaultCapabilities(), env);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ResolveSeccomp, LocalhostReadsTheRealFileByDefault) {
  SecurityEnv env;  // the host
  SecurityProfile lh = Profile(SecurityProfile::Localhost, "/no/such/berth/profile.json");
  absl::StatusOr<json> p = ResolveSeccomp({&lh, "", "sc"}, DefaultCapabilities(), env);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ResolveSeccomp, DeprecatedProfilePath) {
  SecurityEnv env = FakeFiles({{"/p.json", kDenyMkdir}});
  const json rd = DefaultSeccompProfile(DefaultCapabilities());
  const std::map<std::string, json> ok = {
      {"", nullptr},  // the kubelet's default: unconfined
      {"unconfined", nullptr},
      {"runtime/default", rd},
      {"docker/default", rd},
  };
  for (const auto& [path, want] : ok) {
    absl::StatusOr<json> p = ResolveSeccomp({nullptr, path, "sc"}, DefaultCapabilities(), env);
    ASSERT_TRUE(p.ok()) << path << ": " << p.status();
    EXPECT_EQ(*p, want) << path;
  }
  absl::StatusOr<json> p =
      ResolveSeccomp({nullptr, "localhost//p.json", "sc"}, DefaultCapabilities(), env);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["defaultAction"], "SCMP_ACT_ALLOW");
  p = ResolveSeccomp({nullptr, "localhost//q.json", "sc"}, DefaultCapabilities(), env);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("sc.seccomp_profile_path \"/q.json\""), std::string::npos)
      << p.status();
  for (const char* bad : {"default", "localhost/relative.json", "runtime/other"}) {
    p = ResolveSeccomp({nullptr, bad, "sc"}, DefaultCapabilities(), env);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// ----------------------------------------------------------------------------------------
// The spec builder

runtime::v1::PodSandboxConfig Pod() { return ::berth::cri::testing::MinimalPod(); }
runtime::v1::ContainerConfig App() { return ::berth::cri::testing::MinimalContainer(); }
const json& kImage = ::berth::cri::testing::ShImage();

SpecInputs In(SecurityEnv env = FakeFiles({{"/p.json", kDenyMkdir}})) {
  SpecInputs in;
  in.sandbox_id = "sb";
  in.container_id = "c";
  in.rootfs_path = "/nonexistent-rootfs";
  in.security = std::move(env);
  return in;
}

TEST(SpecSeccomp, ContainerGetsTheProfileOfItsCapabilities) {
  runtime::v1::ContainerConfig c = App();
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->mutable_seccomp()->set_profile_type(SecurityProfile::RuntimeDefault);
  absl::StatusOr<json> spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE((*spec)["linux"].contains("seccomp"));
  EXPECT_FALSE(PlainAllowed((*spec)["linux"]["seccomp"]).count("sethostname"));

  sc->mutable_capabilities()->add_add_capabilities("SYS_ADMIN");
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(PlainAllowed((*spec)["linux"]["seccomp"]).count("sethostname"));

  sc->mutable_capabilities()->add_drop_capabilities("SYS_CHROOT");
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(PlainAllowed((*spec)["linux"]["seccomp"]).count("chroot"));
}

TEST(SpecSeccomp, UnsetAndUnconfinedGetNoFilter) {
  runtime::v1::ContainerConfig c = App();
  absl::StatusOr<json> spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE((*spec)["linux"].contains("seccomp"));
  c.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      SecurityProfile::Unconfined);
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE((*spec)["linux"].contains("seccomp"));
}

TEST(SpecSeccomp, PrivilegedGetsNoFilterAndNoLsmWhateverIsAsked) {
  runtime::v1::PodSandboxConfig pod = Pod();
  pod.mutable_linux()->mutable_security_context()->set_privileged(true);
  pod.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      SecurityProfile::RuntimeDefault);
  runtime::v1::ContainerConfig c = App();
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->set_privileged(true);
  *sc->mutable_seccomp() = Profile(SecurityProfile::Localhost, "/missing.json");
  *sc->mutable_apparmor() = Profile(SecurityProfile::Localhost, "my-profile");
  sc->mutable_selinux_options()->set_level("s0:c1,c2");
  absl::StatusOr<json> spec = BuildContainerSpec(pod, c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE((*spec)["linux"].contains("seccomp"));
  EXPECT_FALSE((*spec)["process"].contains("apparmorProfile"));
  EXPECT_FALSE((*spec)["process"].contains("selinuxLabel"));

  absl::StatusOr<json> sb = BuildSandboxSpec(pod, kImage, In());
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_FALSE((*sb)["linux"].contains("seccomp"));
}

TEST(SpecSeccomp, LocalhostAndItsErrors) {
  runtime::v1::ContainerConfig c = App();
  auto* sc = c.mutable_linux()->mutable_security_context();
  *sc->mutable_seccomp() = Profile(SecurityProfile::Localhost, "/p.json");
  absl::StatusOr<json> spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");

  *sc->mutable_seccomp() = Profile(SecurityProfile::Localhost, "/missing.json");
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find(
                "linux.security_context.seccomp.localhost_ref \"/missing.json\""),
            std::string::npos)
      << spec.status();

  sc->clear_seccomp();
  sc->set_seccomp_profile_path("runtime/default");
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
  sc->set_seccomp_profile_path("bogus");
  spec = BuildContainerSpec(Pod(), c, kImage, In());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpecSeccomp, SandboxGetsItToo) {
  runtime::v1::PodSandboxConfig pod = Pod();
  absl::StatusOr<json> sb = BuildSandboxSpec(pod, kImage, In());
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_FALSE((*sb)["linux"].contains("seccomp"));

  pod.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      SecurityProfile::RuntimeDefault);
  sb = BuildSandboxSpec(pod, kImage, In());
  ASSERT_TRUE(sb.ok()) << sb.status();
  ASSERT_TRUE((*sb)["linux"].contains("seccomp"));
  EXPECT_EQ((*sb)["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_FALSE(PlainAllowed((*sb)["linux"]["seccomp"]).count("mount"));

  pod.mutable_linux()->mutable_security_context()->clear_seccomp();
  pod.mutable_linux()->mutable_security_context()->set_seccomp_profile_path("localhost//nope");
  sb = BuildSandboxSpec(pod, kImage, In());
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cri
