// SPDX-License-Identifier: Apache-2.0
// The SPDY client session (spdy_client.h): against our server session in memory, and against
// the bytes the Go server sent in the captured traces (kubernetes-streaming.md §10).
#include "plugins/cri/streaming/spdy_client.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/spdy.h"
#include "plugins/cri/streaming/tests/spdy_test_util.h"

namespace berth::cri::spdy {
namespace {

using ::testing::ElementsAre;
using testing::Hex;
using ::testing::Pair;
using ::testing::StartsWith;
using testing::Unhex;

std::vector<Frame> Frames(absl::string_view bytes) {
  FrameParser parser;
  parser.Append(bytes);
  std::vector<Frame> out;
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = parser.Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !next->has_value()) return out;
    out.push_back(**std::move(next));
  }
}

// A client and a server session wired together in memory.
struct Pipe {
  ClientSession client = *ClientSession::Create();
  ServerSession server = *ServerSession::Create();

  std::vector<SessionEvent> ToServer() {
    std::vector<SessionEvent> events;
    EXPECT_TRUE(server.Feed(client.TakeOutput(), &events).ok());
    return events;
  }
  std::vector<ClientEvent> ToClient() {
    std::vector<ClientEvent> events;
    EXPECT_TRUE(client.Feed(server.TakeOutput(), &events).ok());
    return events;
  }
};

TEST(ClientSessionTest, StreamsHaveOddIncreasingIdsAndTheServerSeesTheirHeaders) {
  Pipe p;
  ASSERT_EQ(*p.client.OpenStream({{"streamType", "error"}}), 1u);
  ASSERT_EQ(*p.client.OpenStream({{"streamtype", "stdout"}}), 3u);
  std::vector<SessionEvent> events = p.ToServer();
  ASSERT_EQ(events.size(), 2u);
  const auto& first = std::get<StreamOpened>(events[0]);
  EXPECT_EQ(first.stream_id, 1u);
  EXPECT_THAT(first.headers, ElementsAre(Pair("streamtype", "error")));  // lower-cased
  EXPECT_EQ(first.priority, 0);
  EXPECT_FALSE(first.fin);
  EXPECT_EQ(std::get<StreamOpened>(events[1]).stream_id, 3u);

  ASSERT_TRUE(p.server.SendReply(1).ok());
  ASSERT_TRUE(p.server.SendReply(3).ok());
  ASSERT_TRUE(p.server.SendData(3, "out-data\n", /*fin=*/true).ok());
  std::vector<ClientEvent> back = p.ToClient();
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(std::get<StreamReplied>(back[0]).stream_id, 1u);
  EXPECT_TRUE(std::get<StreamReplied>(back[0]).headers.empty());
  EXPECT_EQ(std::get<StreamReplied>(back[1]).stream_id, 3u);
  EXPECT_EQ(std::get<StreamData>(back[2]).data, "out-data\n");
  EXPECT_EQ(std::get<StreamHalfClosed>(back[3]).stream_id, 3u);
  EXPECT_TRUE(p.client.IsStreamReplied(1));
  EXPECT_TRUE(p.client.IsStreamOpen(3));  // our side is still open

  // Our FIN finishes stream 3; the server's RST finishes stream 1.
  ASSERT_TRUE(p.client.CloseStream(3).ok());
  EXPECT_FALSE(p.client.IsStreamOpen(3));
  std::vector<SessionEvent> fin = p.ToServer();
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(std::get<StreamHalfClosed>(fin[0]).stream_id, 3u);
  ASSERT_TRUE(p.server.ResetStream(1).ok());
  std::vector<ClientEvent> reset = p.ToClient();
  ASSERT_EQ(reset.size(), 1u);
  EXPECT_EQ(std::get<StreamReset>(reset[0]).stream_id, 1u);
  EXPECT_TRUE(std::get<StreamReset>(reset[0]).by_peer);
  EXPECT_EQ(std::get<StreamReset>(reset[0]).status, static_cast<uint32_t>(RstStatus::kCancel));
  EXPECT_EQ(p.client.open_stream_count(), 0u);
}

TEST(ClientSessionTest, OnlyTheFirstHeaderBlockCarriesTheZlibHeaderAndDictionaryId) {
  ClientSession client = *ClientSession::Create();
  ASSERT_TRUE(client.OpenStream({{"streamtype", "error"}}).ok());
  ASSERT_TRUE(client.OpenStream({{"streamtype", "stdout"}}).ok());
  std::vector<Frame> frames = Frames(client.TakeOutput());
  ASSERT_EQ(frames.size(), 2u);
  const std::string& first = std::get<SynStreamFrame>(frames[0]).header_block;
  const std::string& second = std::get<SynStreamFrame>(frames[1]).header_block;
  // 78 xx E3 C6 A7 C2 (kubernetes-streaming.md §5.2), ending in a sync flush.
  EXPECT_THAT(Hex(first), StartsWith("78f9e3c6a7c2"));
  EXPECT_EQ(Hex(first.substr(first.size() - 4)), "0000ffff");
  EXPECT_NE(Hex(second).substr(0, 2), "78");
  // An independent inflater (zlib directly) reads both.
  testing::RawInflater inflater;
  bool ok = false;
  EXPECT_EQ(inflater.Inflate(first, &ok), testing::PlainBlock({{"streamtype", "error"}}));
  EXPECT_TRUE(ok);
  EXPECT_EQ(inflater.Inflate(second, &ok), testing::PlainBlock({{"streamtype", "stdout"}}));
  EXPECT_TRUE(ok);
}

// §10.2: what the Go server sent for "exec, no tty, stdout and stderr, exit code 3".
TEST(ClientSessionTest, ReadsTheCapturedGoServerTrace) {
  ClientSession client = *ClientSession::Create();
  ASSERT_EQ(*client.OpenStream({{"streamtype", "error"}}), 1u);
  ASSERT_EQ(*client.OpenStream({{"streamtype", "stdout"}}), 3u);
  ASSERT_EQ(*client.OpenStream({{"streamtype", "stderr"}}), 5u);
  (void)client.TakeOutput();
  const std::string status =
      "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with non-zero "
      "exit code: error executing command [fail], exit code 3\",\"reason\":\"NonZeroExitCode\","
      "\"details\":{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"3\"}]}}";
  std::string server = Unhex(
      "80030002 00000014 00000001 78f9e3c6a7c2 62606060 00000000ffff"
      "80030002 0000000c 00000003 0261 00000000ffff"
      "80030002 0000000c 00000005 0261 00000000ffff");
  server += Unhex("00000003 00000009") + "out-data\n";
  server += Unhex("00000005 00000009") + "err-data\n";
  server += Unhex("00000003 01000000 00000005 01000000");
  server += Unhex("00000001 000000") + static_cast<char>(status.size()) + status;
  server += Unhex("80030003 00000008 00000001 00000005 80030007 00000008 00000005 00000000");
  std::vector<ClientEvent> events;
  // One byte at a time: frames split anywhere.
  for (char c : server) ASSERT_TRUE(client.Feed(absl::string_view(&c, 1), &events).ok());
  ASSERT_EQ(events.size(), 10u);
  EXPECT_EQ(std::get<StreamReplied>(events[0]).stream_id, 1u);
  EXPECT_EQ(std::get<StreamReplied>(events[2]).stream_id, 5u);
  EXPECT_EQ(std::get<StreamData>(events[3]).data, "out-data\n");
  EXPECT_EQ(std::get<StreamData>(events[4]).stream_id, 5u);
  EXPECT_EQ(std::get<StreamHalfClosed>(events[5]).stream_id, 3u);
  EXPECT_EQ(std::get<StreamHalfClosed>(events[6]).stream_id, 5u);
  EXPECT_EQ(std::get<StreamData>(events[7]).data, status);
  EXPECT_EQ(std::get<StreamReset>(events[8]).stream_id, 1u);
  EXPECT_EQ(std::get<GoAwayReceived>(events[9]).last_good_stream_id, 5u);
  EXPECT_TRUE(client.goaway_received());
  EXPECT_TRUE(client.TakeOutput().empty());  // nothing to answer
  EXPECT_FALSE(client.OpenStream({{"streamtype", "stdin"}}).ok());
}

TEST(ClientSessionTest, EchoesServerPingsAndMatchesItsOwn) {
  Pipe p;
  ASSERT_TRUE(p.client.OpenStream({{"streamtype", "error"}}).ok());
  (void)p.ToServer();  // the server may ping once the client has spoken
  ASSERT_EQ(*p.server.SendPing(), 2u);
  std::vector<ClientEvent> events = p.ToClient();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::get<PingReceived>(events[0]).echoed);
  std::vector<Frame> echo = Frames(p.client.TakeOutput());
  ASSERT_EQ(echo.size(), 1u);
  EXPECT_EQ(std::get<PingFrame>(echo[0]).id, 2u);

  ASSERT_EQ(*p.client.SendPing(), 1u);
  ASSERT_EQ(*p.client.SendPing(), 3u);
  std::vector<SessionEvent> at_server = p.ToServer();
  ASSERT_EQ(at_server.size(), 2u);
  std::vector<ClientEvent> answers = p.ToClient();
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_FALSE(std::get<PingReceived>(answers[0]).echoed);
  EXPECT_EQ(std::get<PingReceived>(answers[1]).id, 3u);
  EXPECT_TRUE(p.client.TakeOutput().empty());
}

TEST(ClientSessionTest, RefusesStreamsTheServerOpens) {
  ClientSession client = *ClientSession::Create();
  ASSERT_EQ(*client.OpenStream({{"streamtype", "data"}}), 1u);
  (void)client.TakeOutput();
  testing::RawDeflater server;  // the server's compression context, on zlib directly
  SynStreamFrame push;
  push.stream_id = 2;
  push.header_block = server.Compress(testing::PlainBlock({{"streamtype", "push"}}));
  std::string bytes = testing::Encoded(push);
  // The refused stream's block was decompressed: the next block still decodes.
  bytes += testing::Encoded(HeadersFrame{1, 0, server.Compress(testing::PlainBlock({{"a", "b"}}))});
  std::vector<ClientEvent> events;
  ASSERT_TRUE(client.Feed(bytes, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  const auto& refused = std::get<StreamReset>(events[0]);
  EXPECT_EQ(refused.stream_id, 2u);
  EXPECT_FALSE(refused.by_peer);
  EXPECT_EQ(refused.status, static_cast<uint32_t>(RstStatus::kRefusedStream));
  EXPECT_THAT(std::get<HeadersReceived>(events[1]).headers, ElementsAre(Pair("a", "b")));
  std::vector<Frame> out = Frames(client.TakeOutput());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<RstStreamFrame>(out[0]).stream_id, 2u);
}

TEST(ClientSessionTest, ASecondReplyResetsTheStream) {
  ClientSession client = *ClientSession::Create();
  ASSERT_EQ(*client.OpenStream({{"streamtype", "stdout"}}), 1u);
  (void)client.TakeOutput();
  testing::RawDeflater server;
  std::string bytes =
      testing::Encoded(SynReplyFrame{1, 0, server.Compress(testing::PlainBlock({}))});
  bytes += testing::Encoded(SynReplyFrame{1, 0, server.Compress(testing::PlainBlock({}))});
  std::vector<ClientEvent> events;
  ASSERT_TRUE(client.Feed(bytes, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<StreamReplied>(events[0]).stream_id, 1u);
  EXPECT_EQ(std::get<StreamReset>(events[1]).status,
            static_cast<uint32_t>(RstStatus::kStreamInUse));
  EXPECT_FALSE(client.IsStreamOpen(1));
  // DATA for the reset stream is ignored.
  events.clear();
  ASSERT_TRUE(client.Feed(testing::Encoded(DataFrame{1, 0, "late"}), &events).ok());
  EXPECT_TRUE(events.empty());
}

TEST(ClientSessionTest, AMalformedFrameEndsTheSessionWithGoAway) {
  ClientSession client = *ClientSession::Create();
  ASSERT_TRUE(client.OpenStream({{"streamtype", "error"}}).ok());
  (void)client.TakeOutput();
  std::vector<ClientEvent> events;
  // Control frame type 10 (CREDENTIAL): fatal for the Go reader, and for us.
  absl::Status s = client.Feed(Unhex("8003000a 00000000"), &events);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(client.failed());
  std::vector<Frame> out = Frames(client.TakeOutput());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<GoAwayFrame>(out[0]).status,
            static_cast<uint32_t>(GoAwayStatus::kProtocolError));
  EXPECT_EQ(client.Feed("x", &events).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ClientSessionTest, DataIsSplitAndTheEndResetsWhatIsOpenThenSaysGoAway) {
  SessionOptions options;
  options.max_data_frame_payload = 4;
  ClientSession client = *ClientSession::Create(options);
  EXPECT_EQ(client.OpenStream({{"host", "x"}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // hop-by-hop: the Go server refuses it
  const uint32_t a = *client.OpenStream({{"streamtype", "stdin"}});
  const uint32_t b = *client.OpenStream({{"streamtype", "resize"}});
  ASSERT_TRUE(client.SendData(a, "0123456789", /*fin=*/true).ok());
  EXPECT_EQ(client.SendData(a, "late").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(client.SendData(b, "").ok());  // empty, no FIN: nothing
  client.ResetAllStreams();
  client.SendGoAway();
  client.SendGoAway();  // once
  EXPECT_EQ(client.OpenStream({{"streamtype", "x"}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<Frame> out = Frames(client.TakeOutput());
  ASSERT_EQ(out.size(), 2u + 3u + 2u + 1u);
  EXPECT_EQ(std::get<DataFrame>(out[2]).data, "0123");
  EXPECT_EQ(std::get<DataFrame>(out[4]).data, "89");
  EXPECT_EQ(std::get<DataFrame>(out[4]).flags, kFlagFin);
  // Stream a is still open from the server's side: both are reset, in ID order.
  EXPECT_EQ(std::get<RstStreamFrame>(out[5]).stream_id, a);
  EXPECT_EQ(std::get<RstStreamFrame>(out[6]).stream_id, b);
  EXPECT_EQ(std::get<GoAwayFrame>(out[7]).last_good_stream_id, 0u);
  EXPECT_EQ(client.ResetStream(a).code(), absl::StatusCode::kOk);  // already finished
  EXPECT_EQ(client.ResetStream(7).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace berth::cri::spdy
