// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/upgrade.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cri::streaming {
namespace {

using ::testing::HasSubstr;

HttpRequest Req(std::vector<std::pair<std::string, std::string>> headers) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/exec/AbCd1234";
  r.version = "HTTP/1.1";
  r.headers = std::move(headers);
  return r;
}

TEST(UpgradeTest, Routes) {
  EXPECT_EQ(ParseRoute("/exec/AbCd1234").kind, "exec");
  EXPECT_EQ(ParseRoute("/exec/AbCd1234").token, "AbCd1234");
  EXPECT_EQ(ParseRoute("/portforward/x-_y?foo=1").token, "x-_y");
  EXPECT_EQ(ParseRoute("/attach/").kind, "");
  EXPECT_EQ(ParseRoute("/exec/a/b").kind, "");
  EXPECT_EQ(ParseRoute("/logs/a").kind, "");
  EXPECT_EQ(ParseRoute("exec/a").kind, "");
}

TEST(UpgradeTest, The101CarriesTheClientsFirstCommonProtocol) {
  // client-go >= 1.29 lists v5 first; the server has no v5 and takes v4.
  Upgrade u = CheckSpdyUpgrade(Req({{"Connection", "Upgrade"},
                                    {"Upgrade", "SPDY/3.1"},
                                    {"X-Stream-Protocol-Version", "v5.channel.k8s.io"},
                                    {"X-Stream-Protocol-Version", "v4.channel.k8s.io"},
                                    {"X-Stream-Protocol-Version", "v3.channel.k8s.io"},
                                    {"X-Stream-Protocol-Version", "channel.k8s.io"}}),
                               false);
  ASSERT_TRUE(u.ok);
  EXPECT_EQ(u.protocol, "v4.channel.k8s.io");
  EXPECT_EQ(u.response,
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n");
  // Comma-separated values and the client's order.
  u = CheckSpdyUpgrade(Req({{"connection", "keep-alive, Upgrade"},
                            {"upgrade", "spdy/3.1"},
                            {"x-stream-protocol-version", "v2.channel.k8s.io, v4.channel.k8s.io"}}),
                       false);
  ASSERT_TRUE(u.ok);
  EXPECT_EQ(u.protocol, "v2.channel.k8s.io");
}

TEST(UpgradeTest, NegotiationFailuresAsTheLibraryAnswers) {
  Upgrade u = CheckSpdyUpgrade(Req({{"Connection", "Upgrade"}, {"Upgrade", "SPDY/3.1"}}),
                               false);
  EXPECT_FALSE(u.ok);
  EXPECT_THAT(u.response, HasSubstr("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(u.response, HasSubstr("X-Stream-Protocol-Version"));

  u = CheckSpdyUpgrade(Req({{"Connection", "Upgrade"},
                            {"Upgrade", "SPDY/3.1"},
                            {"X-Stream-Protocol-Version", "v4.channel.k8s.io"}}),
                       true);
  EXPECT_FALSE(u.ok);
  EXPECT_THAT(u.response, HasSubstr("HTTP/1.1 403 Forbidden\r\n"));
  EXPECT_THAT(u.response, HasSubstr("X-Accepted-Stream-Protocol-Versions: portforward.k8s.io\r\n"));
  EXPECT_THAT(u.response, HasSubstr("client supports [v4.channel.k8s.io], server accepts "
                                    "[portforward.k8s.io]"));

  // Negotiated, but not an upgrade: 400 that still names the protocol.
  u = CheckSpdyUpgrade(Req({{"X-Stream-Protocol-Version", "portforward.k8s.io"}}),
                       true);
  EXPECT_FALSE(u.ok);
  EXPECT_THAT(u.response, HasSubstr("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(u.response, HasSubstr("X-Stream-Protocol-Version: portforward.k8s.io\r\n"));
  EXPECT_THAT(u.response, HasSubstr("missing upgrade headers"));
}

TEST(UpgradeTest, NotFoundIsTheGoBody) {
  EXPECT_THAT(NotFoundResponse(), HasSubstr("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_THAT(NotFoundResponse(), ::testing::EndsWith("\r\n\r\n404 page not found\n"));
  EXPECT_THAT(MethodNotAllowedResponse(), HasSubstr("HTTP/1.1 405"));
}

}  // namespace
}  // namespace berth::cri::streaming
