// SPDX-License-Identifier: Apache-2.0
// Attachment requests, CNI_ARGS, capability arguments and Kubernetes bandwidth quantities.
#include "plugins/cni/cni_request.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cni {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ParseBandwidthTest, Quantities) {
  struct Case {
    const char* text;
    uint64_t bits;
  };
  const Case cases[] = {
      {"1k", 1000},
      {"500k", 500000},
      {"10M", 10000000},
      {"1G", 1000000000},
      {"1Gi", 1073741824},
      {"1Ki", 1024},
      {"2Mi", 2097152},
      {"1.5M", 1500000},
      {"0.5Gi", 536870912},
      {"+2k", 2000},
      {"1e6", 1000000},
      {"1E6", 1000000},
      {"25e+3", 25000},
      {"1000", 1000},
      {"123456", 123456},
      {"1.0001k", 1001},  // rounded up, as Quantity.Value() does
      {"1000500m", 1001},
      {"1000000000001n", 1001},
      {"1T", 1000000000000ULL},
      {"1P", 1000000000000000ULL},
      {".5M", 500000},
      {"5.M", 5000000},
  };
  for (const Case& c : cases) {
    absl::StatusOr<uint64_t> v = ParseBandwidth(c.text);
    ASSERT_TRUE(v.ok()) << c.text << ": " << v.status();
    EXPECT_EQ(*v, c.bits) << c.text;
  }
}

TEST(ParseBandwidthTest, Refused) {
  for (const char* text :
       {"", "M", "10X", "10 M", "1.2.3M", "10Mb", "ten", "1e", "1e+", "0x10", "10mi", "1e99999"}) {
    absl::StatusOr<uint64_t> v = ParseBandwidth(text);
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  EXPECT_THAT(Message(ParseBandwidth("10X").status()),
              HasSubstr("\"10X\" is not a Kubernetes quantity"));
  EXPECT_THAT(Message(ParseBandwidth("-10M").status()), HasSubstr("negative"));
  EXPECT_THAT(Message(ParseBandwidth("999").status()), HasSubstr("unreasonably small"));
  EXPECT_THAT(Message(ParseBandwidth("100m").status()), HasSubstr("unreasonably small"));
  EXPECT_THAT(Message(ParseBandwidth("2P").status()), HasSubstr("unreasonably large"));
  EXPECT_THAT(Message(ParseBandwidth("1Ei").status()), HasSubstr("unreasonably large"));
  EXPECT_THAT(Message(ParseBandwidth("99999999999999999999999999999999999").status()),
              HasSubstr("unreasonably large"));
}

TEST(ValidateSandboxIdTest, PlainNames) {
  EXPECT_TRUE(ValidateSandboxId("abc123").ok());
  EXPECT_TRUE(ValidateSandboxId("a_b.c-d").ok());
  EXPECT_TRUE(ValidateSandboxId(std::string(250, 'a')).ok());
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("../x"), std::string("a/b"),
        std::string("-a"), std::string(".hidden"), std::string("a b"), std::string(251, 'a')}) {
    absl::Status s = ValidateSandboxId(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseAttachRequestTest, Full) {
  auto r = ParseAttachRequest(R"({"sandbox_id":"sb1","netns":"/run/netns/x","pod_name":"web",
      "pod_namespace":"default","pod_uid":"u-1","pod_cidr":"10.1.0.0/24",
      "port_mappings":[{"protocol":"TCP","container_port":80,"host_port":8080,
                        "host_ip":"127.0.0.1"},{"protocol":"udp","container_port":53}],
      "annotations":{"a":"b"},"unknown":1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sandbox_id, "sb1");
  EXPECT_EQ(r->netns, "/run/netns/x");
  EXPECT_EQ(r->pod_cidr, "10.1.0.0/24");
  ASSERT_EQ(r->port_mappings.size(), 2u);
  EXPECT_EQ(r->port_mappings[0].protocol, "tcp");
  EXPECT_EQ(r->port_mappings[0].host_port, 8080);
  EXPECT_EQ(r->port_mappings[1].host_port, 0);
  EXPECT_EQ(r->annotations.at("a"), "b");
  EXPECT_EQ(CniArgs(*r),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
            "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1");
}

TEST(ParseAttachRequestTest, Refused) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {"nope", "not a JSON object"},
      {R"({"netns":"/x"})", "\"sandbox_id\" is empty"},
      {R"({"sandbox_id":"../etc"})", "is not a plain name"},
      {R"({"sandbox_id":7})", "\"sandbox_id\" must be a string"},
      {R"({"sandbox_id":"a","pod_name":"x;y"})", "CNI_ARGS cannot carry"},
      {R"({"sandbox_id":"a","port_mappings":{}})", "\"port_mappings\" must be a list"},
      {R"({"sandbox_id":"a","port_mappings":[{"protocol":"icmp","container_port":1}]})",
       "protocol \"icmp\" is not tcp, udp or sctp"},
      {R"({"sandbox_id":"a","port_mappings":[{"protocol":"tcp","container_port":0}]})",
       "port_mappings[0]: \"container_port\" must be a port number (1 to 65535)"},
      {R"({"sandbox_id":"a","port_mappings":[{"container_port":1,"host_port":70000}]})",
       "\"host_port\" must be a port number"},
      {R"({"sandbox_id":"a","annotations":{"x":1}})", "annotation \"x\" must be a string"},
      {R"({"sandbox_id":"a","conf_dir":"net.d"})",
       "\"conf_dir\" must be an absolute directory without \".\" or \"..\" components, got "
       "\"net.d\""},
      {R"({"sandbox_id":"a","conf_dir":"/etc/cni/../x"})", "\"conf_dir\" must be an absolute"},
      {R"({"sandbox_id":"a","conf_dir":"/etc/./x"})", "\"conf_dir\" must be an absolute"},
      {R"({"sandbox_id":"a","conf_dir":3})", "\"conf_dir\" must be a string"},
  };
  for (const Case& c : cases) {
    auto r = ParseAttachRequest(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(Message(r.status()), HasSubstr(c.message)) << c.json;
  }
}

TEST(ParseAttachRequestTest, ConfDir) {
  auto r = ParseAttachRequest(R"({"sandbox_id":"sb1","conf_dir":"/etc/cni/net.d/kata"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->conf_dir, "/etc/cni/net.d/kata");
  r = ParseAttachRequest(R"({"sandbox_id":"sb1"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->conf_dir, "");
}

TEST(CapabilityArgsTest, Everything) {
  auto r = ParseAttachRequest(R"({"sandbox_id":"sb1","pod_cidr":"10.1.0.0/24",
      "port_mappings":[{"protocol":"tcp","container_port":80,"host_port":8080},
                       {"protocol":"udp","container_port":53,"host_port":5353,
                        "host_ip":"10.0.0.1"},
                       {"protocol":"tcp","container_port":9000,"host_port":0}],
      "annotations":{"kubernetes.io/ingress-bandwidth":"10M",
                     "kubernetes.io/egress-bandwidth":"1Gi",
                     "cni.berth.io/ips":"10.1.0.5, fd00::5 ,",
                     "cni.berth.io/mac":"c2:11:22:33:44:55"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  auto caps = CapabilityArgs(*r);
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_EQ(*caps, json::parse(R"({
      "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                      {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"10.0.0.1"}],
      "bandwidth":{"ingressRate":10000000,"ingressBurst":10000000,
                   "egressRate":1073741824,"egressBurst":1073741824},
      "ipRanges":[[{"subnet":"10.1.0.0/24"}]],
      "ips":["10.1.0.5","fd00::5"],
      "mac":"c2:11:22:33:44:55"})"));
}

TEST(CapabilityArgsTest, NothingWhenTheRequestHasNothing) {
  auto r = ParseAttachRequest(R"({"sandbox_id":"sb1",
      "port_mappings":[{"protocol":"tcp","container_port":80,"host_port":0}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  auto caps = CapabilityArgs(*r);
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_EQ(*caps, json::object());
}

TEST(CapabilityArgsTest, BadBandwidthNamesTheAnnotation) {
  auto r = ParseAttachRequest(
      R"({"sandbox_id":"sb1","annotations":{"kubernetes.io/egress-bandwidth":"fast"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  auto caps = CapabilityArgs(*r);
  ASSERT_FALSE(caps.ok());
  EXPECT_EQ(caps.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(caps.status()),
              HasSubstr("annotation kubernetes.io/egress-bandwidth: \"fast\" is not a Kubernetes "
                        "quantity"));
}

}  // namespace
}  // namespace berth::cni
