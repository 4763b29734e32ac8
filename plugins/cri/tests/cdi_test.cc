// SPDX-License-Identifier: Apache-2.0
// CDI device requests: names, spec files (parsing, validation, priorities, conflicts) and the
// edits applied to an OCI spec, alone and through BuildContainerSpec.
#include "plugins/cri/cdi.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <string>
#include <vector>

#include "plugins/cri/oci_spec.h"
#include "plugins/cri/tests/spec_fixtures.h"
#include "tests/support/test_support.h"

namespace berth::cri {
namespace {

using ::berth::testing::TempDir;
using ::berth::testing::WriteFile;
using nlohmann::json;
namespace fs = std::filesystem;

// The message contains the text.
#define EXPECT_HAS(haystack, needle) \
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, std::string(needle), std::string(haystack))

// A GPU vendor's spec: a spec-wide env and hook, two devices with nodes (the host's
// /dev/null and /dev/zero stand in for the GPUs), a mount and a gid.
constexpr char kVendorSpec[] = R"({
  "cdiVersion": "0.6.0",
  "kind": "vendor.example.com/gpu",
  "containerEdits": {
    "env": ["VENDOR_DRIVER=1.2"],
    "hooks": [{"hookName": "createContainer", "path": "/usr/bin/vendor-hook",
               "args": ["vendor-hook", "update-ldcache"]}]
  },
  "devices": [
    {"name": "0", "containerEdits": {
      "deviceNodes": [{"path": "/dev/gpu0", "hostPath": "/dev/null", "permissions": "rw"}],
      "env": ["VENDOR_VISIBLE_DEVICES=0"]}},
    {"name": "1", "containerEdits": {
      "deviceNodes": [{"path": "/dev/gpu1", "hostPath": "/dev/zero"}],
      "env": ["VENDOR_VISIBLE_DEVICES=1"],
      "mounts": [{"hostPath": "/usr/lib/vendor", "containerPath": "/usr/lib/vendor",
                  "options": ["ro", "nosuid", "nodev", "bind"]}],
      "additionalGids": [44, 0]}}
  ]
})";

json BaseSpec() {
  return {{"process",
           {{"env", {"PATH=/bin", "VENDOR_VISIBLE_DEVICES=none"}},
            {"user", {{"uid", 1000}, {"gid", 1000}, {"additionalGids", {1000}}}}}},
          {"mounts",
           {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
            {{"destination", "/usr/lib/vendor/extra"}, {"type", "bind"}, {"source", "/x"}}}},
          {"linux", {{"resources", {{"devices", {{{"allow", false}, {"access", "rwm"}}}}}}}}};
}

runtime::v1::ContainerConfig WithDevices(std::vector<std::string> names) {
  runtime::v1::ContainerConfig c = testing::MinimalContainer();
  for (const std::string& n : names) c.add_cdi_devices()->set_name(n);
  return c;
}

class CdiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    fs::create_directories(etc());
    fs::create_directories(run());
  }
  std::string etc() const { return (dir_.path() / "etc-cdi").string(); }
  std::string run() const { return (dir_.path() / "run-cdi").string(); }
  std::vector<std::string> Dirs() const { return {etc(), run()}; }

  TempDir dir_{"cdi-test"};
};

TEST(CdiNames, QualifiedNamesFollowTheCdiRules) {
  CdiQualifiedName q;
  ASSERT_TRUE(ParseCdiQualifiedName("nvidia.com/gpu=0", &q));
  EXPECT_EQ(q.kind, "nvidia.com/gpu");
  EXPECT_EQ(q.name, "0");
  EXPECT_TRUE(ParseCdiQualifiedName("vendor.example.com/net-card=eth_1:a", &q));
  for (const char* bad :
       {"nvidia.com/gpu", "gpu=0", "nvidia.com/=0", "/gpu=0", "1vendor/gpu=0",
        "vendor/gpu=", "vendor/gpu=-0", "vendor/g.pu=0", "vendor/gpu=a b", "vendor./gpu=0"}) {
    EXPECT_FALSE(ParseCdiQualifiedName(bad, &q)) << bad;
  }
}

TEST(CdiNames, RequestsComeFromTheFieldThenTheAnnotationsEachOnce) {
  runtime::v1::ContainerConfig c = WithDevices({"vendor.example.com/gpu=1"});
  (*c.mutable_annotations())["cdi.k8s.io/vendor-plugin_devs"] =
      "vendor.example.com/gpu=0, vendor.example.com/gpu=1";
  (*c.mutable_annotations())["other.io/x"] = "not a device";
  absl::StatusOr<std::vector<CdiDeviceRequest>> r = CdiDeviceRequests(c);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "vendor.example.com/gpu=1");
  EXPECT_EQ((*r)[0].field, "CDI_devices[0].name");
  EXPECT_EQ((*r)[1].name, "vendor.example.com/gpu=0");
  EXPECT_EQ((*r)[1].field, "annotations[\"cdi.k8s.io/vendor-plugin_devs\"]");

  c = WithDevices({"gpu0"});
  EXPECT_EQ(CdiDeviceRequests(c).status().message(),
            "CDI_devices[0].name \"gpu0\": not a qualified CDI device name "
            "(vendor.com/class=name, e.g. nvidia.com/gpu=0)");
  c = testing::MinimalContainer();
  (*c.mutable_annotations())["cdi.k8s.io/x"] = "vendor.example.com/gpu=0,";
  EXPECT_EQ(CdiDeviceRequests(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CdiSpecParse, AcceptsAValidSpec) {
  absl::StatusOr<CdiSpec> s = ParseCdiSpec(kVendorSpec, "/etc/cdi/vendor.json");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kind, "vendor.example.com/gpu");
  EXPECT_EQ(s->devices.size(), 2u);
  EXPECT_EQ(s->edits["env"][0], "VENDOR_DRIVER=1.2");
}

TEST(CdiSpecParse, RejectsBadSpecsSayingWhereAndWhy) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"{", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"kind": "a.com/b", "devices": []})", "spec.cdiVersion: missing"},
      {R"({"cdiVersion": "9.9.9", "kind": "a.com/b"})",
       "cdiVersion: \"9.9.9\" is not a CDI version berth knows"},
      {R"({"cdiVersion": "0.6.0", "kind": "gpu"})", "kind: \"gpu\" is not vendor.com/class"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": []})", "devices: missing or empty"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "-x",
          "containerEdits": {"env": ["A=1"]}}]})",
       "devices[0].name: \"-x\" is not a device name"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x"}]})",
       "devices[0].containerEdits: missing or empty"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"env": ["NOVALUE"]}}]})",
       "devices[0].containerEdits.env[0]: \"NOVALUE\" is not KEY=VALUE"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"deviceNodes": [{"path": "dev/x"}]}}]})",
       "devices[0].containerEdits.deviceNodes[0].path: must be an absolute path"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"deviceNodes": [{"path": "/dev/x", "permissions": "rx"}]}}]})",
       "deviceNodes[0].permissions: \"rx\" must be made of r, w and m"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"mounts": [{"hostPath": "/a"}]}}]})",
       "devices[0].containerEdits.mounts[0].containerPath: missing"},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"hooks": [{"hookName": "preStart", "path": "/h"}]}}]})",
       "hooks[0].hookName: unknown hook \"preStart\""},
      {R"({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x",
          "containerEdits": {"env": ["A=1"]}}, {"name": "x", "containerEdits": {"env": ["A=2"]}}]})",
       "devices[1].name: \"x\" is defined twice"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<CdiSpec> s = ParseCdiSpec(c.text, "/etc/cdi/bad.json");
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_HAS(std::string(s.status().message()), "/etc/cdi/bad.json: ");
    EXPECT_HAS(std::string(s.status().message()), c.message) << c.text;
  }
  absl::StatusOr<CdiSpec> yaml =
      ParseCdiSpec("cdiVersion: 0.6.0\nkind: a.com/b\n", "/etc/cdi/vendor.yaml");
  EXPECT_HAS(std::string(yaml.status().message()), "YAML CDI specs are read only in JSON syntax");
  // JSON is YAML: a .yaml file written as JSON is read.
  EXPECT_TRUE(ParseCdiSpec(kVendorSpec, "/etc/cdi/vendor.yaml").ok());
}

TEST_F(CdiTest, EditsOfTheSpecOnceAndOfEachDeviceInOrder) {
  WriteFile(fs::path(etc()) / "vendor.json", kVendorSpec);
  json spec = BaseSpec();
  ASSERT_TRUE(ApplyCdiDevices(WithDevices({"vendor.example.com/gpu=0", "vendor.example.com/gpu=1"}),
                              Dirs(), &spec)
                  .ok());
  // env: the spec's, then each device's (the later replaces the value in place).
  EXPECT_EQ(spec["process"]["env"],
            json({"PATH=/bin", "VENDOR_VISIBLE_DEVICES=1", "VENDOR_DRIVER=1.2"}));
  // The hook once, although two devices of the spec are injected.
  ASSERT_EQ(spec["hooks"]["createContainer"].size(), 1u);
  EXPECT_EQ(spec["hooks"]["createContainer"][0],
            json({{"path", "/usr/bin/vendor-hook"}, {"args", {"vendor-hook", "update-ldcache"}}}));
  // Device nodes with the host's numbers, owned by the container's user.
  ASSERT_EQ(spec["linux"]["devices"].size(), 2u);
  EXPECT_EQ(spec["linux"]["devices"][0], json({{"path", "/dev/gpu0"},
                                               {"type", "c"},
                                               {"major", 1},
                                               {"minor", 3},
                                               {"uid", 1000},
                                               {"gid", 1000}}));
  EXPECT_EQ(spec["linux"]["devices"][1]["minor"], 5);
  const json& rules = spec["linux"]["resources"]["devices"];
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[1],
            json({{"allow", true}, {"type", "c"}, {"major", 1}, {"minor", 3}, {"access", "rw"}}));
  EXPECT_EQ(rules[2]["access"], "rwm");
  // The mount, parents before children; gid 0 is not added.
  ASSERT_EQ(spec["mounts"].size(), 3u);
  EXPECT_EQ(spec["mounts"][1]["destination"], "/usr/lib/vendor");
  EXPECT_EQ(spec["mounts"][1]["source"], "/usr/lib/vendor");
  EXPECT_FALSE(spec["mounts"][1].contains("type"));
  EXPECT_EQ(spec["mounts"][2]["destination"], "/usr/lib/vendor/extra");
  EXPECT_EQ(spec["process"]["user"]["additionalGids"], json({1000, 44}));
}

TEST_F(CdiTest, NoRequestReadsNothingAndChangesNothing) {
  WriteFile(fs::path(etc()) / "broken.json", "{");
  json spec = BaseSpec();
  EXPECT_TRUE(ApplyCdiDevices(testing::MinimalContainer(), Dirs(), &spec).ok());
  EXPECT_EQ(spec, BaseSpec());
}

TEST_F(CdiTest, UnknownDevicesAreInvalidAndNameTheDeviceTheKindAndBrokenFiles) {
  WriteFile(fs::path(etc()) / "vendor.json", kVendorSpec);
  WriteFile(fs::path(run()) / "broken.json", R"({"cdiVersion": "0.6.0"})");
  json spec = BaseSpec();
  absl::Status s = ApplyCdiDevices(WithDevices({"vendor.example.com/gpu=7"}), Dirs(), &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_HAS(std::string(s.message()),
             "CDI_devices[0].name \"vendor.example.com/gpu=7\": unknown CDI device: "
             "no spec file in " +
                 etc() + ", " + run() + " defines it (vendor.example.com/gpu has 0, 1)");
  EXPECT_HAS(std::string(s.message()),
             "spec files skipped: " + run() + "/broken.json: spec.kind: missing");
  EXPECT_EQ(spec, BaseSpec()) << "nothing is applied when a device is unknown";

  runtime::v1::ContainerConfig c = testing::MinimalContainer();
  (*c.mutable_annotations())["cdi.k8s.io/plugin"] = "other.example.com/nic=eth0";
  s = ApplyCdiDevices(c, Dirs(), &spec);
  EXPECT_HAS(std::string(s.message()),
             "annotations[\"cdi.k8s.io/plugin\"] \"other.example.com/nic=eth0\"");
}

TEST_F(CdiTest, ALaterDirectoryWinsAndOneDirectoryMayNotDefineADeviceTwice) {
  WriteFile(fs::path(etc()) / "vendor.json", kVendorSpec);
  json dynamic = json::parse(kVendorSpec);
  dynamic["containerEdits"]["env"] = {"VENDOR_DRIVER=2.0"};
  WriteFile(fs::path(run()) / "vendor.json", dynamic.dump());
  json spec = BaseSpec();
  ASSERT_TRUE(ApplyCdiDevices(WithDevices({"vendor.example.com/gpu=0"}), Dirs(), &spec).ok());
  EXPECT_EQ(spec["process"]["env"][2], "VENDOR_DRIVER=2.0");

  WriteFile(fs::path(run()) / "vendor-copy.json", dynamic.dump());
  spec = BaseSpec();
  absl::Status s = ApplyCdiDevices(WithDevices({"vendor.example.com/gpu=0"}), Dirs(), &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_HAS(std::string(s.message()), "defined by both " + run() +
                                           "/vendor-copy.json"
                                           " and " +
                                           run() + "/vendor.json");
}

TEST_F(CdiTest, AMissingHostDeviceIsAFailedPrecondition) {
  json s = json::parse(kVendorSpec);
  s["devices"][0]["containerEdits"]["deviceNodes"][0]["hostPath"] = "/dev/no-such-gpu";
  WriteFile(fs::path(etc()) / "vendor.json", s.dump());
  json spec = BaseSpec();
  absl::Status st = ApplyCdiDevices(WithDevices({"vendor.example.com/gpu=0"}), Dirs(), &spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_HAS(std::string(st.message()), "/dev/no-such-gpu\": no such file");
}

TEST_F(CdiTest, GivenNumbersAreUsedAsTheyAreAndIntelRdtIsPassedOn) {
  WriteFile(fs::path(run()) / "fpga.json", R"({
    "cdiVersion": "0.5.0", "kind": "fpga.example.com/accel",
    "devices": [{"name": "a", "containerEdits": {
      "deviceNodes": [{"path": "/dev/accel", "type": "b", "major": 250, "minor": 9,
                       "fileMode": 432, "uid": 0, "gid": 0}],
      "intelRdt": {"closID": "accel", "l3CacheSchema": "L3:0=f"}}}]})");
  json spec = BaseSpec();
  ASSERT_TRUE(ApplyCdiDevices(WithDevices({"fpga.example.com/accel=a"}), Dirs(), &spec).ok());
  EXPECT_EQ(spec["linux"]["devices"][0], json({{"path", "/dev/accel"},
                                               {"type", "b"},
                                               {"major", 250},
                                               {"minor", 9},
                                               {"fileMode", 432},
                                               {"uid", 0},
                                               {"gid", 0}}));
  EXPECT_EQ(spec["linux"]["resources"]["devices"].back()["type"], "b");
  EXPECT_EQ(spec["linux"]["intelRdt"], json({{"closID", "accel"}, {"l3CacheSchema", "L3:0=f"}}));
}

TEST_F(CdiTest, BuildContainerSpecAppliesThemFromSpecInputs) {
  WriteFile(fs::path(etc()) / "vendor.json", kVendorSpec);
  SpecInputs in;
  in.rootfs_path = "";
  in.cdi_spec_dirs = Dirs();
  runtime::v1::ContainerConfig c = WithDevices({"vendor.example.com/gpu=0"});
  absl::StatusOr<json> spec = BuildContainerSpec(testing::MinimalPod(), c, testing::ShImage(), in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["devices"][0]["path"], "/dev/gpu0");
  const json& env = (*spec)["process"]["env"];
  EXPECT_NE(std::find(env.begin(), env.end(), "VENDOR_VISIBLE_DEVICES=0"), env.end());

  c = WithDevices({"vendor.example.com/gpu=9"});
  spec = BuildContainerSpec(testing::MinimalPod(), c, testing::ShImage(), in);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_HAS(std::string(spec.status().message()), "vendor.example.com/gpu=9");
}

}  // namespace
}  // namespace berth::cri
