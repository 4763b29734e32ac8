// SPDX-License-Identifier: Apache-2.0
#include "gtest/gtest.h"
#include "plugins/cri/records.h"
#include "plugins/cri/validate.h"

namespace berth::cri {
namespace {

TEST(RecordsTest, SandboxRoundTripsThroughJson) {
  SandboxRecord r;
  r.id = std::string(64, 'a');
  r.name = "web_default_uid-1_2";
  r.handler = "runc";
  r.config.mutable_metadata()->set_name("web");
  r.config.mutable_metadata()->set_attempt(2);
  (*r.config.mutable_labels())["app"] = "web";
  r.phase = SandboxPhase::kNotReady;
  r.created_at = 1764278400123456789;
  r.cgroups_path = "/kubepods/pod1/" + r.id;
  r.net_ns_path = "/run/berth/netns/" + r.id;
  r.pid = 4242;
  r.infra_stopped = true;
  r.pod_ips = {"10.99.0.5"};
  r.net_conf_dir = "/etc/cni/net.d/kata";
  r.network = "kata-net";
  r.snapshotter = "io.berth.snapshotter.native";
  absl::StatusOr<SandboxRecord> back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->name, r.name);
  EXPECT_EQ(back->phase, SandboxPhase::kNotReady);
  EXPECT_EQ(back->created_at, r.created_at);
  EXPECT_EQ(back->config.metadata().attempt(), 2u);
  EXPECT_EQ(back->config.labels().at("app"), "web");
  EXPECT_EQ(back->cgroups_path, r.cgroups_path);
  EXPECT_EQ(back->net_ns_path, r.net_ns_path);
  EXPECT_EQ(back->pid, 4242u);
  EXPECT_TRUE(back->infra_stopped);
  EXPECT_EQ(back->pod_ips, r.pod_ips);
  EXPECT_EQ(back->net_conf_dir, r.net_conf_dir);
  EXPECT_EQ(back->network, r.network);
  EXPECT_EQ(back->snapshotter, r.snapshotter);
}

TEST(RecordsTest, ContainerRoundTripsThroughJson) {
  ContainerRecord r;
  r.id = std::string(64, 'b');
  r.sandbox_id = std::string(64, 'a');
  r.name = "app_1";
  r.config.mutable_metadata()->set_name("app");
  r.config.add_command("sleep");
  r.config.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(64 << 20);
  r.phase = ContainerPhase::kExited;
  r.exit_code = 137;
  r.reason = "OOMKilled";
  r.started_at = 10;
  r.finished_at = 20;
  r.log_path = "/var/log/pods/x/app/1.log";
  r.stop_signal = 3;
  absl::StatusOr<ContainerRecord> back = ContainerRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->phase, ContainerPhase::kExited);
  EXPECT_EQ(back->exit_code, 137);
  EXPECT_EQ(back->reason, "OOMKilled");
  EXPECT_EQ(back->finished_at, 20);
  EXPECT_EQ(back->config.command(0), "sleep");
  EXPECT_EQ(back->config.linux().resources().memory_limit_in_bytes(), 64 << 20);
  EXPECT_EQ(back->stop_signal, 3);
}

TEST(RecordsTest, DamagedRecordsAreRefusedNotGuessed) {
  SandboxRecord r;
  r.id = "x";
  nlohmann::json j = r.ToJson();
  j["phase"] = "flying";
  EXPECT_EQ(SandboxRecord::FromJson(j).status().code(), absl::StatusCode::kDataLoss);
  j = r.ToJson();
  j["config"] = "not base64 !!";
  EXPECT_EQ(SandboxRecord::FromJson(j).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ContainerRecord::FromJson(nlohmann::json::object()).ok());
}

TEST(RecordsTest, NamesKeepMetadataApart) {
  runtime::v1::PodSandboxMetadata a, b;
  a.set_name("web");
  a.set_namespace_("prod");
  a.set_uid("u1");
  a.set_attempt(0);
  b = a;
  b.set_attempt(1);
  EXPECT_NE(SandboxName(a), SandboxName(b));
  EXPECT_EQ(SandboxName(a), "web_prod_u1_0");
  runtime::v1::ContainerMetadata c;
  c.set_name("app");
  c.set_attempt(3);
  EXPECT_EQ(ContainerName(c), "app_3");
}

TEST(RecordsTest, ExitTimesParseAsTheRuntimeWritesThem) {
  EXPECT_EQ(ParseTimeNanos("2026-11-27T10:00:00.123456789Z"), 1795773600123456789);
  EXPECT_EQ(ParseTimeNanos("2026-11-27T11:00:00+01:00"), 1795773600000000000);
  EXPECT_EQ(ParseTimeNanos(""), 0);
  EXPECT_EQ(ParseTimeNanos("yesterday"), 0);
}

TEST(ValidateTest, MetadataNames) {
  EXPECT_TRUE(ValidateName("nginx-7c9d", "config.metadata.name").ok());
  absl::Status s = ValidateName("", "config.metadata.name");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("config.metadata.name"), std::string::npos);
  EXPECT_FALSE(ValidateName("a/b", "f").ok());
  EXPECT_FALSE(ValidateName("a b", "f").ok());
  EXPECT_FALSE(ValidateName("a\nb", "f").ok());
  EXPECT_FALSE(ValidateName(std::string(254, 'a'), "f").ok());
}

TEST(ValidateTest, LabelKeysAreQualifiedNames) {
  for (const char* ok : {"app", "io.kubernetes.pod.name", "example.com/tier", "a_b-c.d", "A1"}) {
    EXPECT_TRUE(ValidateLabelKey(ok, "config.labels").ok()) << ok;
  }
  for (const char* bad : {"", "-app", "app-", "Example.com/x", "/x", "a/", "a b", "x/y/z",
                          "é"}) {
    absl::Status s = ValidateLabelKey(bad, "config.labels");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("config.labels"), std::string::npos);
  }
  EXPECT_FALSE(ValidateLabelKey(std::string(64, 'a'), "f").ok());
}

TEST(ValidateTest, AnnotationsHaveAByteBudget) {
  google::protobuf::Map<std::string, std::string> a;
  a["k"] = std::string(200 << 10, 'x');
  EXPECT_TRUE(ValidateAnnotations(a, "config.annotations").ok());
  a["k2"] = std::string(100 << 10, 'x');
  EXPECT_EQ(ValidateAnnotations(a, "config.annotations").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateTest, LabelSelectorMatchesSubsets) {
  google::protobuf::Map<std::string, std::string> labels, sel;
  labels["app"] = "web";
  labels["tier"] = "front";
  EXPECT_TRUE(MatchLabels(sel, labels));
  sel["app"] = "web";
  EXPECT_TRUE(MatchLabels(sel, labels));
  sel["tier"] = "back";
  EXPECT_FALSE(MatchLabels(sel, labels));
  sel.erase("tier");
  sel["zone"] = "a";
  EXPECT_FALSE(MatchLabels(sel, labels));
}

}  // namespace
}  // namespace berth::cri
