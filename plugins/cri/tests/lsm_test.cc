// SPDX-License-Identifier: Apache-2.0
// AppArmor and SELinux: detection from /sys, and what profiles and labels the spec gets on
// nodes with and without each module.
#include "plugins/cri/lsm.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "plugins/cri/oci_spec.h"
#include "plugins/cri/tests/spec_fixtures.h"
#include "tests/support/test_support.h"

namespace berth::cri {
namespace {

// The tests set the deprecated seccomp_profile_path and apparmor_profile on purpose.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace fs = std::filesystem;
using ::berth::testing::TempDir;
using ::berth::testing::WriteFile;
using nlohmann::json;
using runtime::v1::SecurityProfile;

constexpr LsmState kNone{false, false};
constexpr LsmState kBoth{true, true, true};
constexpr LsmState kNoDefault{true, false, false};

SecurityProfile Profile(SecurityProfile::ProfileType type, const std::string& ref = "") {
  SecurityProfile p;
  p.set_profile_type(type);
  p.set_localhost_ref(ref);
  return p;
}

TEST(DetectLsm, ReadsSysfs) {
  TempDir root("lsm");
  EXPECT_FALSE(DetectLsm(root.path().string()).apparmor);
  EXPECT_FALSE(DetectLsm(root.path().string()).selinux);
  WriteFile(root.path().string() + "/sys/module/apparmor/parameters/enabled", "Y\n");
  EXPECT_FALSE(DetectLsm(root.path().string()).apparmor);  // securityfs does not show it
  fs::create_directories(root.path().string() + "/sys/kernel/security/apparmor");
  EXPECT_TRUE(DetectLsm(root.path().string()).apparmor);
  WriteFile(root.path().string() + "/sys/module/apparmor/parameters/enabled", "N\n");
  EXPECT_FALSE(DetectLsm(root.path().string()).apparmor);
  EXPECT_FALSE(DetectLsm(root.path().string()).apparmor_default_loaded);
  WriteFile(root.path().string() + "/sys/module/apparmor/parameters/enabled", "Y\n");
  WriteFile(root.path().string() + "/sys/kernel/security/apparmor/profiles",
            "docker-default (enforce)\nberth-default (enforce)\n");
  EXPECT_TRUE(DetectLsm(root.path().string()).apparmor_default_loaded);
  WriteFile(root.path().string() + "/sys/kernel/security/apparmor/profiles",
            "berth-default-old (enforce)\n");
  EXPECT_FALSE(DetectLsm(root.path().string()).apparmor_default_loaded);
  WriteFile(root.path().string() + "/sys/fs/selinux/enforce", "0");
  EXPECT_TRUE(DetectLsm(root.path().string()).selinux);
}

TEST(DetectLsm, LsmSupportIsTheHostAndStable) {
  LsmState a = LsmSupport(), b = DetectLsm();
  EXPECT_EQ(a.apparmor, b.apparmor);
  EXPECT_EQ(a.selinux, b.selinux);
}

TEST(AppArmor, WithoutAppArmorTheDefaultsRunUnconfinedAndLocalhostFails) {
  SecurityProfile rd = Profile(SecurityProfile::RuntimeDefault);
  SecurityProfile un = Profile(SecurityProfile::Unconfined);
  SecurityProfile lh = Profile(SecurityProfile::Localhost, "my-profile");
  EXPECT_EQ(*ResolveAppArmorProfile(&rd, "", "sc", kNone), "");
  EXPECT_EQ(*ResolveAppArmorProfile(&un, "", "sc", kNone), "");
  EXPECT_EQ(*ResolveAppArmorProfile(nullptr, "", "sc", kNone), "");
  EXPECT_EQ(*ResolveAppArmorProfile(nullptr, "runtime/default", "sc", kNone), "");
  EXPECT_EQ(*ResolveAppArmorProfile(nullptr, "unconfined", "sc", kNone), "");
  absl::StatusOr<std::string> p = ResolveAppArmorProfile(&lh, "", "sc", kNone);
  ASSERT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(p.status().message().find("AppArmor is not enabled on this node; profile my-profile"),
            std::string::npos)
      << p.status();
  p = ResolveAppArmorProfile(nullptr, "localhost/legacy-prof", "sc", kNone);
  ASSERT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(p.status().message().find("profile legacy-prof cannot be applied"), std::string::npos)
      << p.status();
  p = ResolveAppArmorProfile(nullptr, "weird", "sc", kNone);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  SecurityProfile empty = Profile(SecurityProfile::Localhost, "");
  EXPECT_EQ(ResolveAppArmorProfile(&empty, "", "sc", kNone).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AppArmor, WithAppArmorProfilesAreNamed) {
  SecurityProfile rd = Profile(SecurityProfile::RuntimeDefault);
  SecurityProfile un = Profile(SecurityProfile::Unconfined);
  SecurityProfile lh = Profile(SecurityProfile::Localhost, "my-profile");
  EXPECT_EQ(*ResolveAppArmorProfile(&rd, "", "sc", kBoth), "berth-default");
  EXPECT_EQ(*ResolveAppArmorProfile(&un, "", "sc", kBoth), "unconfined");
  EXPECT_EQ(*ResolveAppArmorProfile(&lh, "", "sc", kBoth), "my-profile");
  EXPECT_EQ(*ResolveAppArmorProfile(nullptr, "localhost/x", "sc", kBoth), "x");
  EXPECT_EQ(*ResolveAppArmorProfile(nullptr, "", "sc", kBoth), "berth-default");
  // berth-default not loaded: RuntimeDefault runs without a profile rather than fail to start.
  EXPECT_EQ(*ResolveAppArmorProfile(&rd, "", "sc", kNoDefault), "");
  EXPECT_EQ(*ResolveAppArmorProfile(&lh, "", "sc", kNoDefault), "my-profile");
}

TEST(Selinux, OptionsWithoutSelinuxFailAndEmptyOptionsAreNoOps) {
  runtime::v1::SELinuxOption o;
  absl::StatusOr<SelinuxLabels> l = ResolveSelinuxLabels(&o, "sc", kNone);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE(l->process.empty() && l->mount.empty());
  EXPECT_TRUE(ResolveSelinuxLabels(nullptr, "sc", kNone).ok());
  o.set_level("s0:c1,c2");
  l = ResolveSelinuxLabels(&o, "sc", kNone);
  ASSERT_EQ(l.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(l.status().message().find("SELinux is not enabled on this node"), std::string::npos);
}

TEST(Selinux, LabelsWithSelinux) {
  runtime::v1::SELinuxOption o;
  o.set_level("s0:c1,c2");
  absl::StatusOr<SelinuxLabels> l = ResolveSelinuxLabels(&o, "sc", kBoth);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->process, "system_u:system_r:container_t:s0:c1,c2");
  EXPECT_EQ(l->mount, "system_u:object_r:container_file_t:s0:c1,c2");
  o.set_type("spc_t:x");
  EXPECT_EQ(ResolveSelinuxLabels(&o, "sc", kBoth).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ----------------------------------------------------------------------------------------
// The spec builder

runtime::v1::PodSandboxConfig Pod() { return ::berth::cri::testing::MinimalPod(); }
runtime::v1::ContainerConfig App() { return ::berth::cri::testing::MinimalContainer(); }
const json& kImage = ::berth::cri::testing::ShImage();

SpecInputs In(LsmState lsm) {
  SpecInputs in;
  in.rootfs_path = "/nonexistent-rootfs";
  in.security.lsm = lsm;
  return in;
}

TEST(SpecLsm, NodeWithoutLsms) {
  runtime::v1::ContainerConfig c = App();
  auto* sc = c.mutable_linux()->mutable_security_context();
  *sc->mutable_apparmor() = Profile(SecurityProfile::RuntimeDefault);
  absl::StatusOr<json> spec = BuildContainerSpec(Pod(), c, kImage, In(kNone));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE((*spec)["process"].contains("apparmorProfile"));
  EXPECT_FALSE((*spec)["process"].contains("selinuxLabel"));
  EXPECT_FALSE((*spec)["linux"].contains("mountLabel"));

  *sc->mutable_apparmor() = Profile(SecurityProfile::Localhost, "k8s-nginx");
  spec = BuildContainerSpec(Pod(), c, kImage, In(kNone));
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(spec.status().message().find(
                "AppArmor is not enabled on this node; profile k8s-nginx cannot be applied"),
            std::string::npos)
      << spec.status();

  sc->clear_apparmor();
  sc->set_apparmor_profile("localhost/k8s-nginx");
  spec = BuildContainerSpec(Pod(), c, kImage, In(kNone));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kFailedPrecondition);

  sc->clear_apparmor_profile();
  sc->mutable_selinux_options()->set_type("container_t");
  spec = BuildContainerSpec(Pod(), c, kImage, In(kNone));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kFailedPrecondition);

  runtime::v1::PodSandboxConfig pod = Pod();
  pod.mutable_linux()->mutable_security_context()->mutable_selinux_options()->set_level("s0");
  absl::StatusOr<json> sb = BuildSandboxSpec(pod, kImage, In(kNone));
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kFailedPrecondition);
  *pod.mutable_linux()->mutable_security_context()->mutable_apparmor() =
      Profile(SecurityProfile::Localhost, "x");
  pod.mutable_linux()->mutable_security_context()->clear_selinux_options();
  sb = BuildSandboxSpec(pod, kImage, In(kNone));
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SpecLsm, NodeWithLsms) {
  runtime::v1::ContainerConfig c = App();
  auto* sc = c.mutable_linux()->mutable_security_context();
  *sc->mutable_apparmor() = Profile(SecurityProfile::Localhost, "k8s-nginx");
  sc->mutable_selinux_options()->set_level("s0:c5,c6");
  absl::StatusOr<json> spec = BuildContainerSpec(Pod(), c, kImage, In(kBoth));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["process"]["apparmorProfile"], "k8s-nginx");
  EXPECT_EQ((*spec)["process"]["selinuxLabel"], "system_u:system_r:container_t:s0:c5,c6");
  EXPECT_EQ((*spec)["linux"]["mountLabel"], "system_u:object_r:container_file_t:s0:c5,c6");

  absl::StatusOr<json> sb = BuildSandboxSpec(Pod(), kImage, In(kBoth));
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ((*sb)["process"]["apparmorProfile"], "berth-default");
}

}  // namespace
}  // namespace berth::cri
