// SPDX-License-Identifier: Apache-2.0
// Slice names, their cgroup directories, the "slice:prefix:name" cgroups paths and the
// CPU list masks: pure functions, no systemd.
#include "plugins/cgroup-systemd/unit_names.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-systemd/transient_scope.h"

namespace berth::cgroup_systemd {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(SliceCgroupPathTest, FollowsTheDashRule) {
  EXPECT_EQ(*SliceCgroupPath("kubepods.slice"), "/kubepods.slice");
  EXPECT_EQ(*SliceCgroupPath("system.slice"), "/system.slice");
  EXPECT_EQ(*SliceCgroupPath("kubepods-burstable.slice"),
            "/kubepods.slice/kubepods-burstable.slice");
  EXPECT_EQ(*SliceCgroupPath("kubepods-besteffort-pod0d8e_41f2.slice"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8e_41f2.slice");
  EXPECT_EQ(*SliceCgroupPath("a.b-c.slice"), "/a.b.slice/a.b-c.slice");
  EXPECT_EQ(*SliceCgroupPath("-.slice"), "");
}

TEST(ValidateSliceNameTest, AcceptsUnitNames) {
  for (const char* ok : {"kubepods.slice", "kubepods-burstable-pod1_2_3.slice", "-.slice",
                         "user-1000.slice", "a\\x2db.slice"}) {
    EXPECT_TRUE(ValidateSliceName(ok, "slice").ok()) << ok;
  }
}

TEST(ValidateSliceNameTest, RefusesWithTheReason) {
  struct Case {
    std::string name;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"kubepods", "must end in .slice"},
      {"kubepods.service", "must end in .slice"},
      {"/kubepods.slice", "'/' is not allowed"},
      {"a:b.slice", "':' is not allowed"},
      {"kube pods.slice", "character \" \" is not allowed"},
      {"kubepods\n.slice", "is not allowed"},
      {".slice", "empty"},
      {"-kubepods.slice", "cannot lead, trail or be doubled"},
      {"kubepods-.slice", "cannot lead, trail or be doubled"},
      {"kubepods--a.slice", "cannot lead, trail or be doubled"},
      {".hidden.slice", "must not start with '.'"},
      {std::string(250, 'a') + ".slice", "256 bytes long (255 at most)"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateSliceName(c.name, "cgroup_parent");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(s.message(), AllOf(HasSubstr("cgroup_parent"), HasSubstr(c.why))) << c.name;
  }
}

TEST(ParentSliceTest, EmptyIsSystemSlice) { EXPECT_EQ(*ParentSlice(""), "system.slice"); }

TEST(ParentSliceTest, SliceNamesAsTheKubeletSendsThem) {
  EXPECT_EQ(*ParentSlice("kubepods-burstable-pod7c1f_aa.slice"),
            "kubepods-burstable-pod7c1f_aa.slice");
  EXPECT_EQ(*ParentSlice("kubepods.slice"), "kubepods.slice");
}

TEST(ParentSliceTest, AcceptsTheExpandedPathOfASlice) {
  EXPECT_EQ(*ParentSlice("/kubepods.slice/kubepods-besteffort.slice/"
                         "kubepods-besteffort-pod1.slice"),
            "kubepods-besteffort-pod1.slice");
  absl::StatusOr<std::string> bad = ParentSlice("/kubepods.slice/other-pod1.slice");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              AllOf(HasSubstr("do not nest"), HasSubstr("/other.slice/other-pod1.slice")));
}

// The kubelet still on cgroupfs: the message says what is wrong and both ways to fix it.
TEST(ParentSliceTest, CgroupfsParentNamesTheDriverMismatch) {
  for (const char* parent : {"/kubepods/burstable/pod1", "/kubepods", "/", "kubepods"}) {
    absl::StatusOr<std::string> s = ParentSlice(parent);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << parent;
    EXPECT_THAT(
        s.status().message(),
        AllOf(HasSubstr(std::string("\"") + parent + "\""), HasSubstr("not a systemd slice name"),
              HasSubstr("the kubelet and berth disagree on the cgroup driver"),
              HasSubstr("cgroupDriver: systemd"), HasSubstr("cgroup_driver: cgroupfs"),
              HasSubstr("RuntimeConfig")))
        << parent;
  }
  EXPECT_THAT(ParentSlice("/kubepods/burstable/pod1").status().message(),
              HasSubstr("is a cgroupfs path"));
}

TEST(ScopeForTest, MakesRuncSystemdTriples) {
  absl::StatusOr<ScopePath> scope = ScopeFor("kubepods-besteffort-pod1.slice", "berth", "abc");
  ASSERT_TRUE(scope.ok()) << scope.status();
  EXPECT_EQ(scope->CgroupsPath(), "kubepods-besteffort-pod1.slice:berth:abc");
  EXPECT_EQ(scope->Unit(), "berth-abc.scope");
  EXPECT_EQ(scope->CgroupDir(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/"
            "berth-abc.scope");
  EXPECT_EQ(ScopeFor("", "cri", "x")->CgroupsPath(), "system.slice:cri:x");
  EXPECT_EQ(ScopeFor("-.slice", "berth", "x")->CgroupDir(), "/berth-x.scope");
}

TEST(ScopeForTest, RefusesBadIds) {
  for (const char* id : {"", "a/b", "a:b", "a b", "a\\b"}) {
    EXPECT_EQ(ScopeFor("kubepods.slice", "berth", id).status().code(),
              absl::StatusCode::kInvalidArgument)
        << id;
  }
  absl::StatusOr<ScopePath> long_id = ScopeFor("kubepods.slice", "berth", std::string(250, 'f'));
  EXPECT_THAT(long_id.status().message(), HasSubstr("makes the unit name 262 bytes long"));
  EXPECT_TRUE(ScopeFor("kubepods.slice", "berth", std::string(64, 'f')).ok());
}

TEST(ParseCgroupsPathTest, RoundTrips) {
  absl::StatusOr<ScopePath> scope = ParseCgroupsPath("kubepods-pod1.slice:berth:0123abc");
  ASSERT_TRUE(scope.ok()) << scope.status();
  EXPECT_EQ(scope->slice, "kubepods-pod1.slice");
  EXPECT_EQ(scope->prefix, "berth");
  EXPECT_EQ(scope->name, "0123abc");
  EXPECT_EQ(scope->Unit(), "berth-0123abc.scope");
  EXPECT_EQ(scope->CgroupsPath(), "kubepods-pod1.slice:berth:0123abc");
}

TEST(ParseCgroupsPathTest, RefusesOtherForms) {
  struct Case {
    std::string path;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"/kubepods/pod1/abc", "this is a cgroupfs path"},
      {"kubepods.slice:berth", "not in the systemd driver's form"},
      {"kubepods.slice:berth:a:b", "not in the systemd driver's form"},
      {"kubepods:berth:abc", "must end in .slice"},
      {"kubepods.slice::abc", "scope_prefix \"\""},
      {"kubepods.slice:be rth:abc", "only letters"},
      {"kubepods.slice:berth:other.slice", "names a slice, not a scope"},
      {"kubepods.slice:berth:", "empty sandbox or container id"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ScopePath> s = ParseCgroupsPath(c.path);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.path;
    EXPECT_THAT(s.status().message(), HasSubstr(c.why)) << c.path;
  }
}

TEST(ValidateScopePrefixTest, Bounds) {
  EXPECT_TRUE(ValidateScopePrefix("berth").ok());
  EXPECT_TRUE(ValidateScopePrefix("cri-containerd").ok());
  EXPECT_FALSE(ValidateScopePrefix("").ok());
  EXPECT_FALSE(ValidateScopePrefix("a:b").ok());
  EXPECT_FALSE(ValidateScopePrefix("a/b").ok());
  EXPECT_FALSE(ValidateScopePrefix(std::string(65, 'p')).ok());
}

TEST(ParseIndexListTest, BuildsSystemdMasks) {
  EXPECT_THAT(*ParseIndexList("0-3,6", "AllowedCPUs"), ElementsAre(0x4f));
  EXPECT_THAT(*ParseIndexList(" 0 , 2-2 ", "AllowedCPUs"), ElementsAre(0x05));
  EXPECT_THAT(*ParseIndexList("8", "AllowedCPUs"), ElementsAre(0x00, 0x01));
  EXPECT_THAT(*ParseIndexList("7-9", "AllowedCPUs"), ElementsAre(0x80, 0x03));
  EXPECT_THAT(*ParseIndexList("", "AllowedCPUs"), IsEmpty());
}

TEST(ParseIndexListTest, RefusesMalformedLists) {
  for (const char* bad : {"3-1", "a", "1-", "-1", "1,,2", "9000", "1-2-3"}) {
    absl::StatusOr<std::vector<uint8_t>> mask = ParseIndexList(bad, "AllowedCPUs of unit x");
    EXPECT_EQ(mask.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(mask.status().message(), HasSubstr("AllowedCPUs of unit x")) << bad;
  }
}

}  // namespace
}  // namespace berth::cgroup_systemd
