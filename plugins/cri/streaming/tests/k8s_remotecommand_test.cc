// SPDX-License-Identifier: Apache-2.0
// The Kubernetes helpers: negotiation (kubernetes-streaming.md §4.2-4.3, §10.1, §10.6), the
// metav1.Status payloads (§6.6), resize decoding (§6.5) and port-forward headers (§7.3).
#include "plugins/cri/streaming/k8s_remotecommand.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace berth::cri::streaming {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

// §10.1, the captured exec upgrade request.
spdy::Headers Trace101Request() {
  return {{"Host", "127.0.0.1:39531"},
          {"User-Agent", "Go-http-client/1.1"},
          {"Content-Length", "0"},
          {"Connection", "Upgrade"},
          {"Upgrade", "SPDY/3.1"},
          {"X-Stream-Protocol-Version", "v4.channel.k8s.io"},
          {"X-Stream-Protocol-Version", "v3.channel.k8s.io"},
          {"X-Stream-Protocol-Version", "v2.channel.k8s.io"},
          {"X-Stream-Protocol-Version", "channel.k8s.io"}};
}

TEST(StreamTypes, NamesAndParsing) {
  for (StreamType t : {StreamType::kError, StreamType::kStdin, StreamType::kStdout,
                       StreamType::kStderr, StreamType::kResize, StreamType::kData}) {
    EXPECT_EQ(ParseStreamType(StreamTypeName(t)), t);
  }
  EXPECT_FALSE(ParseStreamType("Error").has_value());
  EXPECT_FALSE(ParseStreamType("").has_value());
  EXPECT_EQ(GetStreamType({{"streamtype", "stdout"}}), StreamType::kStdout);
  EXPECT_EQ(GetStreamType({{"streamType", "resize"}}), StreamType::kResize);
  EXPECT_FALSE(GetStreamType({{"port", "80"}}).has_value());
  EXPECT_FALSE(GetStreamType({{"streamtype", "weird"}}).has_value());
}

TEST(Protocols, ParsingAndExpectedStreams) {
  EXPECT_EQ(ParseRemoteCommandProtocol("v4.channel.k8s.io"), RemoteCommandProtocol::kV4);
  EXPECT_EQ(ParseRemoteCommandProtocol("channel.k8s.io"), RemoteCommandProtocol::kV1);
  EXPECT_FALSE(ParseRemoteCommandProtocol("v5.channel.k8s.io").has_value());
  EXPECT_EQ(RemoteCommandProtocolName(RemoteCommandProtocol::kV2), "v2.channel.k8s.io");
  // §10.2: error, stdout, stderr. §10.3: error, stdin, stdout, resize.
  EXPECT_EQ(ExpectedRemoteCommandStreams(RemoteCommandProtocol::kV4, false, true, true, false), 3);
  EXPECT_EQ(ExpectedRemoteCommandStreams(RemoteCommandProtocol::kV4, true, true, false, true), 4);
  EXPECT_EQ(ExpectedRemoteCommandStreams(RemoteCommandProtocol::kV2, true, true, false, true), 3);
  EXPECT_EQ(ExpectedRemoteCommandStreams(RemoteCommandProtocol::kV3, true, true, false, true), 4);
}

TEST(Negotiation, SplitsTrimsAndDropsEmptyItems) {
  EXPECT_EQ(
      SplitProtocolHeaderValues({"v4.channel.k8s.io, v3.channel.k8s.io", " , channel.k8s.io ", ""}),
      (std::vector<std::string>{"v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"}));
}

TEST(Negotiation, TheClientsOrderWins) {
  EXPECT_EQ(NegotiateProtocol({"v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"},
                              kRemoteCommandProtocols),
            "v4.channel.k8s.io");
  // Upstream walks the client's list, so a client preferring v2 gets v2.
  EXPECT_EQ(NegotiateProtocol({"v2.channel.k8s.io", "v4.channel.k8s.io"}, kRemoteCommandProtocols),
            "v2.channel.k8s.io");
  EXPECT_FALSE(NegotiateProtocol({"v5.channel.k8s.io"}, kRemoteCommandProtocols).has_value());
  EXPECT_EQ(NegotiateProtocol({"portforward.k8s.io"}, kPortForwardProtocols), "portforward.k8s.io");
  EXPECT_FALSE(NegotiateProtocol({"V4.channel.k8s.io"}, kRemoteCommandProtocols).has_value());
}

TEST(Negotiation, Trace101UpgradesToV4) {
  UpgradeDecision d = DecideSpdyUpgrade(Trace101Request(), kRemoteCommandProtocols);
  EXPECT_EQ(d.status_code, 101);
  EXPECT_EQ(d.reason_phrase, "Switching Protocols");
  EXPECT_EQ(d.protocol, "v4.channel.k8s.io");
  EXPECT_EQ(d.headers, (Pairs{{"Connection", "Upgrade"},
                              {"Upgrade", "SPDY/3.1"},
                              {"X-Stream-Protocol-Version", "v4.channel.k8s.io"}}));
  EXPECT_TRUE(d.body.empty());
  // §4.3, byte for byte.
  EXPECT_EQ(SwitchingProtocolsResponse(d.protocol),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
            "\r\n");
}

TEST(Negotiation, PortForward) {
  spdy::Headers request = {{"connection", "Upgrade"},
                           {"upgrade", "SPDY/3.1"},
                           {"x-stream-protocol-version", "portforward.k8s.io"}};
  UpgradeDecision d = DecideSpdyUpgrade(request, kPortForwardProtocols);
  EXPECT_EQ(d.status_code, 101);
  EXPECT_EQ(d.protocol, "portforward.k8s.io");
}

// §10.6: no common protocol.
TEST(Negotiation, NoCommonProtocolIs403WithTheAcceptedList) {
  spdy::Headers request = {{"Connection", "Upgrade"},
                           {"Upgrade", "SPDY/3.1"},
                           {"X-Stream-Protocol-Version", "v5.channel.k8s.io, v9.channel.k8s.io"}};
  UpgradeDecision d = DecideSpdyUpgrade(request, kRemoteCommandProtocols);
  EXPECT_EQ(d.status_code, 403);
  EXPECT_EQ(d.reason_phrase, "Forbidden");
  EXPECT_TRUE(d.protocol.empty());
  EXPECT_EQ(d.headers, (Pairs{{"Content-Type", "text/plain; charset=utf-8"},
                              {"X-Accepted-Stream-Protocol-Versions", "v4.channel.k8s.io"},
                              {"X-Accepted-Stream-Protocol-Versions", "v3.channel.k8s.io"},
                              {"X-Accepted-Stream-Protocol-Versions", "v2.channel.k8s.io"},
                              {"X-Accepted-Stream-Protocol-Versions", "channel.k8s.io"},
                              {"X-Content-Type-Options", "nosniff"}}));
  EXPECT_EQ(d.body,
            "unable to upgrade: unable to negotiate protocol: client supports "
            "[v5.channel.k8s.io v9.channel.k8s.io], server accepts [v4.channel.k8s.io "
            "v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]\n");
}

TEST(Negotiation, MissingHeaderIs400) {
  for (const spdy::Headers& request :
       {spdy::Headers{{"Connection", "Upgrade"}, {"Upgrade", "SPDY/3.1"}},
        spdy::Headers{{"X-Stream-Protocol-Version", " , "}}}) {
    UpgradeDecision d = DecideSpdyUpgrade(request, kRemoteCommandProtocols);
    EXPECT_EQ(d.status_code, 400);
    EXPECT_EQ(d.reason_phrase, "Bad Request");
    EXPECT_EQ(d.headers, (Pairs{{"Content-Type", "text/plain; charset=utf-8"},
                                {"X-Content-Type-Options", "nosniff"}}));
    EXPECT_EQ(d.body, "unable to upgrade: X-Stream-Protocol-Version is required\n");
  }
}

TEST(Negotiation, MissingUpgradeHeadersIs400AfterNegotiation) {
  spdy::Headers request = {{"Connection", "keep-alive"},
                           {"Upgrade", "SPDY/3.1"},
                           {"X-Stream-Protocol-Version", "v4.channel.k8s.io"}};
  UpgradeDecision d = DecideSpdyUpgrade(request, kRemoteCommandProtocols);
  EXPECT_EQ(d.status_code, 400);
  // Upstream's 400 still carries the protocol header added by the negotiation.
  EXPECT_EQ(d.headers, (Pairs{{"Content-Type", "text/plain; charset=utf-8"},
                              {"X-Content-Type-Options", "nosniff"},
                              {"X-Stream-Protocol-Version", "v4.channel.k8s.io"}}));
  EXPECT_EQ(d.body,
            "unable to upgrade: missing upgrade headers in request: http.Header{"
            "\"Connection\":[]string{\"keep-alive\"}, \"Upgrade\":[]string{\"SPDY/3.1\"}, "
            "\"X-Stream-Protocol-Version\":[]string{\"v4.channel.k8s.io\"}}\n");
  // Substring and case-insensitive checks, first line of each header only.
  request[0].second = "keep-alive, UPGRADE";
  request[1].second = "spdy/3.1, websocket";
  EXPECT_EQ(DecideSpdyUpgrade(request, kRemoteCommandProtocols).status_code, 101);
  request[1].second = "websocket";
  request.emplace_back("Upgrade", "SPDY/3.1");
  EXPECT_EQ(DecideSpdyUpgrade(request, kRemoteCommandProtocols).status_code, 400);
}

// §6.6, the exact upstream payloads.
TEST(ExitStatus, V4JsonOfBothLibraries) {
  EXPECT_EQ(*V4StatusJson(ExecStatus::Success(), StatusFlavor::kMetav1),
            R"({"metadata":{},"status":"Success"})");
  EXPECT_EQ(*V4StatusJson(ExecStatus::Success(), StatusFlavor::kCriStreaming),
            R"({"status":"Success"})");

  const ExecStatus exit3 = ExecStatus::NonZeroExit(3, ExecExitErrorText({"fail"}, 3));
  const std::string captured =
      R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit )"
      R"(code: error executing command [fail], exit code 3","reason":"NonZeroExitCode",)"
      R"("details":{"causes":[{"reason":"ExitCode","message":"3"}]}})";
  EXPECT_EQ(*V4StatusJson(exit3, StatusFlavor::kMetav1), captured);
  EXPECT_EQ(captured.size(), 0xdcu);  // §10.2: DATA id=1 of 220 bytes
  EXPECT_EQ(*V4StatusJson(exit3, StatusFlavor::kCriStreaming),
            R"({"status":"Failure","message":"command terminated with non-zero exit code: )"
            R"(error executing command [fail], exit code 3","reason":"NonZeroExitCode",)"
            R"("details":{"causes":[{"reason":"ExitCode","message":"3"}]}})");

  const ExecStatus internal =
      ExecStatus::InternalError("error executing command in container: boom");
  EXPECT_EQ(*V4StatusJson(internal, StatusFlavor::kMetav1),
            R"({"metadata":{},"status":"Failure","message":"Internal error occurred: error )"
            R"(executing command in container: boom","reason":"InternalError","details":)"
            R"({"causes":[{"message":"error executing command in container: boom"}]},)"
            R"("code":500})");
  EXPECT_EQ(*V4StatusJson(internal, StatusFlavor::kCriStreaming),
            R"({"status":"Failure","message":"Internal error occurred: error executing )"
            R"(command in container: boom","reason":"InternalError","code":500})");
  EXPECT_EQ(*V4StatusJson(ExecStatus::InternalError(""), StatusFlavor::kMetav1),
            R"({"metadata":{},"status":"Failure","message":"Internal error occurred: ",)"
            R"("reason":"InternalError","details":{"causes":[{}]},"code":500})");
}

TEST(ExitStatus, ExitCodeRange) {
  EXPECT_TRUE(V4StatusJson(ExecStatus::NonZeroExit(255, "x"), StatusFlavor::kMetav1).ok());
  EXPECT_TRUE(V4StatusJson(ExecStatus::NonZeroExit(1, "x"), StatusFlavor::kMetav1).ok());
  EXPECT_EQ(V4StatusJson(ExecStatus::NonZeroExit(0, "x"), StatusFlavor::kMetav1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(V4StatusJson(ExecStatus::NonZeroExit(256, "x"), StatusFlavor::kMetav1).ok());
  EXPECT_FALSE(V4StatusJson(ExecStatus::NonZeroExit(-1, "x"), StatusFlavor::kMetav1).ok());
}

TEST(ExitStatus, LegacyProtocolsWriteTextOnFailureOnly) {
  const ExecStatus exit3 =
      ExecStatus::NonZeroExit(3, "error executing command [fail], exit code 3");
  for (RemoteCommandProtocol p :
       {RemoteCommandProtocol::kV1, RemoteCommandProtocol::kV2, RemoteCommandProtocol::kV3}) {
    EXPECT_EQ(*ErrorStreamPayload(ExecStatus::Success(), p, StatusFlavor::kMetav1), "");
    EXPECT_EQ(*ErrorStreamPayload(exit3, p, StatusFlavor::kMetav1),
              "command terminated with non-zero exit code: error executing command [fail], "
              "exit code 3");
    EXPECT_EQ(*ErrorStreamPayload(ExecStatus::InternalError("e"), p, StatusFlavor::kMetav1),
              "Internal error occurred: e");
  }
  EXPECT_EQ(
      *ErrorStreamPayload(ExecStatus::Success(), RemoteCommandProtocol::kV4, StatusFlavor::kMetav1),
      R"({"metadata":{},"status":"Success"})");
}

TEST(ExitStatus, ExecExitErrorTextFormatsArgvLikeGo) {
  EXPECT_EQ(ExecExitErrorText({"sh", "-c", "exit 3"}, 3),
            "error executing command [sh -c exit 3], exit code 3");
  EXPECT_EQ(ExecExitErrorText({}, 1), "error executing command [], exit code 1");
}

TEST(ExitStatus, GoJsonQuoteEscapesLikeEncodingJson) {
  EXPECT_EQ(GoJsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(GoJsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(GoJsonQuote("l1\nl2\r\t"), R"("l1\nl2\r\t")");
  EXPECT_EQ(GoJsonQuote(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(GoJsonQuote("<a&b>"), R"("\u003ca\u0026b\u003e")");
  EXPECT_EQ(GoJsonQuote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(GoJsonQuote("\xe2\x80\xa8\xe2\x80\xa9"), R"("\u2028\u2029")");
  // Invalid UTF-8, byte by byte: a lone continuation, an overlong, a surrogate, a cut one.
  EXPECT_EQ(GoJsonQuote("\x80"), R"("\ufffd")");
  EXPECT_EQ(GoJsonQuote("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(GoJsonQuote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  EXPECT_EQ(GoJsonQuote("x\xe2\x82"), R"("x\ufffd\ufffd")");
  EXPECT_EQ(GoJsonQuote("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");
}

// §6.5.
std::vector<TerminalSize> DecodeAll(ResizeDecoder& d, absl::Status* error = nullptr) {
  std::vector<TerminalSize> out;
  for (;;) {
    absl::StatusOr<std::optional<TerminalSize>> next = d.Next();
    if (!next.ok()) {
      if (error != nullptr) *error = next.status();
      return out;
    }
    if (!next->has_value()) return out;
    out.push_back(**next);
  }
}

TEST(Resize, DecodesClientGoOutputInAnySplit) {
  const std::string stream = "{\"Width\":100,\"Height\":40}\n{\"Width\":80,\"Height\":24}\n";
  ResizeDecoder whole;
  whole.Append(stream);
  EXPECT_EQ(DecodeAll(whole), (std::vector<TerminalSize>{{100, 40}, {80, 24}}));
  ResizeDecoder bytewise;
  std::vector<TerminalSize> got;
  for (char c : stream) {
    bytewise.Append(absl::string_view(&c, 1));
    std::vector<TerminalSize> more = DecodeAll(bytewise);
    got.insert(got.end(), more.begin(), more.end());
  }
  EXPECT_EQ(got, (std::vector<TerminalSize>{{100, 40}, {80, 24}}));
}

TEST(Resize, GoDecoderLeniency) {
  ResizeDecoder d;
  d.Append(
      R"({"width":1,"height":2}{"WIDTH":3,"HEIGHT":4}  {"Height":6,"Width":5,"x":[1,{"Width":9}],)"
      R"("s":"}{\"","Width":7} null {"Width":0,"Height":5} {"Width":8} {"Width":9,"Height":1})");
  // Zero dimensions (and null) are skipped, as containerd ignores them.
  EXPECT_EQ(DecodeAll(d), (std::vector<TerminalSize>{{1, 2}, {3, 4}, {7, 6}, {9, 1}}));
}

TEST(Resize, ErrorsStopTheStream) {
  for (const char* bad :
       {R"({"Width":1.0,"Height":2})", R"({"Width":-1,"Height":2})",
        R"({"Width":65536,"Height":2})", R"({"Width":"80","Height":2})",
        R"({"Width":true,"Height":2})", R"({"Width":{},"Height":2})", R"({"Width":[1],"Height":2})",
        R"([{"Width":1,"Height":2}])", R"("text")", "42", R"({"Width":1,,"Height":2})", "nul!"}) {
    ResizeDecoder d;
    d.Append(bad);
    d.Append(R"({"Width":10,"Height":10})");
    absl::Status error;
    EXPECT_TRUE(DecodeAll(d, &error).empty()) << bad;
    EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(d.Next().ok()) << "errors are final: " << bad;
  }
  ResizeDecoder max;
  max.Append(R"({"Width":65535,"Height":65535})");
  EXPECT_EQ(DecodeAll(max), (std::vector<TerminalSize>{{65535, 65535}}));
  ResizeDecoder endless;
  endless.Append("{\"Width\":" + std::string(70000, ' '));
  absl::Status error;
  DecodeAll(endless, &error);
  EXPECT_FALSE(error.ok());
}

// §7.3 and §10.5.
TEST(PortForward, ParsesTheTraceHeaders) {
  absl::StatusOr<PortForwardStream> s =
      ParsePortForwardStream({{"port", "80"}, {"requestid", "0"}, {"streamtype", "error"}}, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->type, StreamType::kError);
  EXPECT_EQ(s->port, 80);
  EXPECT_EQ(s->request_id, "0");
  s = ParsePortForwardStream({{"streamtype", "data"}, {"port", "65535"}, {"requestid", "7"}}, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->type, StreamType::kData);
  EXPECT_EQ(s->port, 65535);
  EXPECT_EQ(s->request_id, "7");
}

TEST(PortForward, RequestIdDerivedFromTheStreamIdForOldClients) {
  EXPECT_EQ(ParsePortForwardStream({{"port", "80"}, {"streamtype", "error"}}, 5)->request_id, "5");
  EXPECT_EQ(ParsePortForwardStream({{"port", "80"}, {"streamtype", "data"}}, 7)->request_id, "5");
}

TEST(PortForward, AcceptanceRules) {
  for (const spdy::Headers& bad : std::vector<spdy::Headers>{
           {{"streamtype", "data"}},
           {{"port", "0"}, {"streamtype", "data"}},
           {{"port", "65536"}, {"streamtype", "data"}},
           {{"port", "+80"}, {"streamtype", "data"}},
           {{"port", " 80"}, {"streamtype", "data"}},
           {{"port", "0x50"}, {"streamtype", "data"}},
           {{"port", ""}, {"streamtype", "data"}},
           {{"port", "99999999999999999999999"}, {"streamtype", "data"}},
           {{"port", "80"}},
           {{"port", "80"}, {"streamtype", "stdin"}},
       }) {
    absl::StatusOr<PortForwardStream> s = ParsePortForwardStream(bad, 1);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
        << (bad.empty() ? "" : bad[0].first + "=" + bad[0].second);
  }
  EXPECT_TRUE(ParsePortForwardStream({{"port", "080"}, {"streamtype", "data"}}, 1).ok());
}

}  // namespace
}  // namespace berth::cri::streaming
