// SPDX-License-Identifier: Apache-2.0
// The server session against the captured traces of kubernetes-streaming.md §10 and the
// session rules of §4.4 and §5.3-5.7. The client side is TestClient (spdy_test_util.h): the
// same frame encoder, but its own zlib contexts.
#include "plugins/cri/streaming/spdy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "plugins/cri/streaming/k8s_remotecommand.h"
#include "plugins/cri/streaming/tests/spdy_test_util.h"

namespace berth::cri::spdy {
namespace {

using testing::Encoded;
using testing::Hex;
using testing::PlainBlock;
using testing::RawDeflater;
using testing::TestClient;
using testing::Unhex;

constexpr absl::string_view kTrace102Client =
    "80030001 00000029 00000001 00000000 00 00 78f9e3c6a7c2 "
    "6260606004a7b392a2d4c45c6851c29a0a0a68 00000000ffff "
    "80030001 00000019 00000003 00000000 00 00 c22ac5565c92925f5a02 000000ffff "
    "80030001 00000015 00000005 00000000 00 00 c229975a5404 000000ffff";

constexpr absl::string_view kTrace102Status =
    R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit )"
    R"(code: error executing command [fail], exit code 3","reason":"NonZeroExitCode",)"
    R"("details":{"causes":[{"reason":"ExitCode","message":"3"}]}})";

// One line per event, to compare sequences readably.
std::string Describe(const SessionEvent& event) {
  return std::visit(
      [](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, StreamOpened>) {
          std::vector<std::string> h;
          for (const auto& [n, v] : e.headers) h.push_back(absl::StrCat(n, "=", v));
          return absl::StrCat("open ", e.stream_id, " ", absl::StrJoin(h, ","), e.fin ? " fin" : "",
                              e.unidirectional ? " uni" : "");
        } else if constexpr (std::is_same_v<T, StreamData>) {
          return absl::StrCat("data ", e.stream_id, " ", e.data);
        } else if constexpr (std::is_same_v<T, StreamHalfClosed>) {
          return absl::StrCat("fin ", e.stream_id);
        } else if constexpr (std::is_same_v<T, StreamReset>) {
          return absl::StrCat("reset ", e.stream_id, " ", RstStatusName(e.status),
                              e.by_peer ? " by peer" : " by us");
        } else if constexpr (std::is_same_v<T, PingReceived>) {
          return absl::StrCat("ping ", e.id, e.echoed ? " echoed" : "");
        } else if constexpr (std::is_same_v<T, GoAwayReceived>) {
          return absl::StrCat("goaway ", e.last_good_stream_id, " ", e.status);
        } else if constexpr (std::is_same_v<T, SettingsReceived>) {
          return absl::StrCat("settings ", e.entries.size());
        } else {
          std::vector<std::string> h;
          for (const auto& [n, v] : e.headers) h.push_back(absl::StrCat(n, "=", v));
          return absl::StrCat("headers ", e.stream_id, " ", absl::StrJoin(h, ","));
        }
      },
      event);
}

std::vector<std::string> Feed(ServerSession& session, absl::string_view bytes) {
  std::vector<SessionEvent> events;
  absl::Status status = session.Feed(bytes, &events);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::string> out;
  for (const SessionEvent& e : events) out.push_back(Describe(e));
  return out;
}

std::vector<std::string> FeedBytewise(ServerSession& session, absl::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    std::vector<std::string> more = Feed(session, absl::string_view(&c, 1));
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

ServerSession NewSession(const SessionOptions& options = {}) {
  absl::StatusOr<ServerSession> session = ServerSession::Create(options);
  EXPECT_TRUE(session.ok()) << session.status();
  return *std::move(session);
}

// The frame headers (8 bytes) and stream IDs of SYN_REPLY frames in `wire`, with the block
// of each inflated by an independent zlib context.
struct Reply {
  uint32_t stream_id;
  uint8_t flags;
  std::string plain;
};
std::vector<Reply> Replies(TestClient& client, absl::string_view wire) {
  std::vector<Reply> out;
  size_t block = client.plain_blocks().size();
  for (const Frame& f : client.Read(wire)) {
    const auto* reply = std::get_if<SynReplyFrame>(&f);
    EXPECT_NE(reply, nullptr) << DescribeFrame(f);
    if (reply == nullptr) continue;
    out.push_back({reply->stream_id, reply->flags, client.plain_blocks()[block++]});
  }
  return out;
}

// ---- §10.2 ----

void RunTrace102(bool bytewise) {
  ServerSession session = NewSession();
  const std::string client_bytes = Unhex(kTrace102Client);
  const std::vector<std::string> events =
      bytewise ? FeedBytewise(session, client_bytes) : Feed(session, client_bytes);
  EXPECT_EQ(events, (std::vector<std::string>{"open 1 streamtype=error", "open 3 streamtype=stdout",
                                              "open 5 streamtype=stderr"}));
  EXPECT_TRUE(session.TakeOutput().empty());

  // Server: an empty SYN_REPLY per stream.
  for (uint32_t id : {1u, 3u, 5u}) ASSERT_TRUE(session.SendReply(id).ok());
  const std::string replies = session.TakeOutput();
  // The frame headers are byte-exact; the compressed blocks are zlib's, not Go's, so they
  // are inflated independently and must hold the empty block 00000000.
  TestClient client;
  size_t pos = 0;
  for (uint32_t id : {1u, 3u, 5u}) {
    ASSERT_GE(replies.size(), pos + 12);
    const std::string head = replies.substr(pos, 12);
    EXPECT_EQ(Hex(head.substr(0, 4)), "80030002");
    EXPECT_EQ(head[4], 0) << "no FIN on SYN_REPLY";
    EXPECT_EQ(head.substr(8, 4), std::string(3, '\0') + static_cast<char>(id));
    const size_t length = (static_cast<unsigned char>(head[5]) << 16) |
                          (static_cast<unsigned char>(head[6]) << 8) |
                          static_cast<unsigned char>(head[7]);
    pos += 8 + length;
  }
  EXPECT_EQ(pos, replies.size());
  std::vector<Reply> decoded = Replies(client, replies);
  ASSERT_EQ(decoded.size(), 3u);
  for (const Reply& r : decoded) EXPECT_EQ(r.plain, Unhex("00000000")) << r.stream_id;
  // Only the first block carries the zlib header and the SPDY/3 DICTID, as in the trace.
  EXPECT_EQ(Hex(replies.substr(12, 6)), "78f9e3c6a7c2");

  // Then the rest of the server side, byte for byte as captured.
  absl::StatusOr<std::string> status = streaming::V4StatusJson(
      streaming::ExecStatus::NonZeroExit(3, streaming::ExecExitErrorText({"fail"}, 3)),
      streaming::StatusFlavor::kMetav1);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_EQ(*status, kTrace102Status);
  ASSERT_TRUE(session.SendData(3, "out-data\n").ok());
  ASSERT_TRUE(session.SendData(5, "err-data\n").ok());
  ASSERT_TRUE(session.CloseStream(3).ok());
  ASSERT_TRUE(session.CloseStream(5).ok());
  ASSERT_TRUE(session.SendData(1, *status).ok());
  session.ResetAllStreams();  // only the error stream is unfinished on our side
  session.SendGoAway();
  EXPECT_EQ(Hex(session.TakeOutput()),
            Hex(Unhex("00000003 00000009") + "out-data\n" + Unhex("00000005 00000009") +
                "err-data\n" + Unhex("00000003 01000000 00000005 01000000 00000001 000000dc") +
                std::string(kTrace102Status) +
                Unhex("80030003 00000008 00000001 00000005 80030007 00000008 00000005 00000000")));
}

TEST(SpdySessionTrace, Trace102ExecNoTtyExitCode3) { RunTrace102(/*bytewise=*/false); }
TEST(SpdySessionTrace, Trace102FedByteByByte) { RunTrace102(/*bytewise=*/true); }

// ---- §10.3 ----

TEST(SpdySessionTrace, Trace103ExecTtyAndStdin) {
  ServerSession session = NewSession();
  TestClient client;
  std::vector<std::string> events;
  for (auto [id, type] : std::vector<std::pair<uint32_t, std::string>>{
           {1, "error"}, {3, "stdin"}, {5, "stdout"}, {7, "resize"}}) {
    std::vector<std::string> e = Feed(session, client.SynStream(id, {{"streamtype", type}}));
    events.insert(events.end(), e.begin(), e.end());
    ASSERT_TRUE(session.SendReply(id).ok());
    std::vector<Reply> r = Replies(client, session.TakeOutput());
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].stream_id, id);
    EXPECT_EQ(r[0].flags, 0);
    EXPECT_EQ(r[0].plain, Unhex("00000000"));
  }
  EXPECT_EQ(events,
            (std::vector<std::string>{"open 1 streamtype=error", "open 3 streamtype=stdin",
                                      "open 5 streamtype=stdout", "open 7 streamtype=resize"}));

  std::vector<SessionEvent> raw;
  ASSERT_TRUE(session
                  .Feed(client.Data(7, "{\"Width\":100,\"Height\":40}\n") +
                            client.Data(3, "hello\n") + client.Fin(3),
                        &raw)
                  .ok());
  ASSERT_EQ(raw.size(), 3u);
  streaming::ResizeDecoder resize;
  resize.Append(std::get<StreamData>(raw[0]).data);
  absl::StatusOr<std::optional<streaming::TerminalSize>> size = resize.Next();
  ASSERT_TRUE(size.ok() && size->has_value());
  EXPECT_EQ(**size, (streaming::TerminalSize{100, 40}));
  EXPECT_EQ(Describe(raw[1]), "data 3 hello\n");
  EXPECT_EQ(Describe(raw[2]), "fin 3");

  ASSERT_TRUE(session.SendData(5, "hello\r\n").ok());
  ASSERT_TRUE(session.CloseStream(5).ok());
  absl::StatusOr<std::string> ok =
      streaming::V4StatusJson(streaming::ExecStatus::Success(), streaming::StatusFlavor::kMetav1);
  ASSERT_TRUE(ok.ok());
  ASSERT_TRUE(session.SendData(1, *ok).ok());
  session.ResetAllStreams();
  session.SendGoAway();
  EXPECT_EQ(Hex(session.TakeOutput()),
            Hex(Unhex("00000005 00000007") + "hello\r\n" + Unhex("00000005 01000000") +
                Unhex("00000001 00000022") + R"({"metadata":{},"status":"Success"})" +
                Unhex("80030003 00000008 00000001 00000005") +
                Unhex("80030003 00000008 00000003 00000005") +
                Unhex("80030003 00000008 00000007 00000005") +
                Unhex("80030007 00000008 00000007 00000000")));
}

// ---- §10.4 ----

TEST(SpdySessionTrace, Trace104PingsAreEchoedAndLateFramesTolerated) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "error"}}));
  ASSERT_TRUE(session.SendReply(1).ok());
  Feed(session, client.SynStream(3, {{"streamtype", "stdin"}}));
  ASSERT_TRUE(session.SendReply(3).ok());
  (void)session.TakeOutput();

  EXPECT_EQ(Feed(session, Unhex("80030006 00000004 00000001")),
            std::vector<std::string>{"ping 1 echoed"});
  EXPECT_EQ(Hex(session.TakeOutput()), "800300060000000400000001");
  EXPECT_EQ(FeedBytewise(session, Unhex("80030006 00000004 00000003")),
            std::vector<std::string>{"ping 3 echoed"});
  EXPECT_EQ(Hex(session.TakeOutput()), "800300060000000400000003");

  ASSERT_TRUE(session.SendData(1, "{\"metadata\":{},\"status\":\"Success\"}").ok());
  session.ResetAllStreams();
  session.SendGoAway();
  (void)session.TakeOutput();
  // The client, closing late: RST_STREAM 3 CANCEL and GOAWAY(0, OK) after ours.
  EXPECT_EQ(Feed(session, client.Rst(3) + client.GoAway(0, 0)),
            std::vector<std::string>{"goaway 0 0"});
  EXPECT_TRUE(session.goaway_received());
  EXPECT_TRUE(session.TakeOutput().empty());
}

// ---- §10.5 ----

TEST(SpdySessionTrace, Trace105PortForwardTwoRequests) {
  ServerSession session = NewSession();
  // The first SYN_STREAM exactly as captured (Go's compressor, with the zlib header).
  const std::string first = Unhex(
      "80030001 0000003d 00000001 00000000 0000 78f9e3c6a7c2 "
      "02253a48f95b044aab4c16060c0c0c9c4590d8ca04a5624603703a2c294a4dcc851635aca9a088 "
      "00000000ffff");
  std::vector<SessionEvent> raw;
  ASSERT_TRUE(session.Feed(first, &raw).ok());
  ASSERT_EQ(raw.size(), 1u);
  const auto& open1 = std::get<StreamOpened>(raw[0]);
  absl::StatusOr<streaming::PortForwardStream> pf1 =
      streaming::ParsePortForwardStream(open1.headers, open1.stream_id);
  ASSERT_TRUE(pf1.ok()) << pf1.status();
  EXPECT_EQ(pf1->type, streaming::StreamType::kError);
  EXPECT_EQ(pf1->port, 80);
  EXPECT_EQ(pf1->request_id, "0");

  // The client continues the same zlib stream Go started: a raw deflate whose window holds
  // the dictionary and the first block, so its back-references reach into both.
  TestClient client(
      RawDeflater(6, /*zlib_stream=*/false,
                  PlainBlock({{"port", "80"}, {"requestid", "0"}, {"streamtype", "error"}})));
  std::vector<std::string> log;
  auto feed = [&](const std::string& bytes) {
    std::vector<std::string> e = Feed(session, bytes);
    log.insert(log.end(), e.begin(), e.end());
  };
  std::string server;
  ASSERT_TRUE(session.SendReply(1).ok());
  feed(Unhex("00000001 01000000"));  // the client half-closes the error stream
  feed(client.SynStream(3, {{"streamtype", "data"}, {"port", "80"}, {"requestid", "0"}}));
  ASSERT_TRUE(session.SendReply(3).ok());
  feed(client.Data(3, "ping"));
  ASSERT_TRUE(session.SendData(3, "pong:ping").ok());
  ASSERT_TRUE(session.CloseStream(1).ok());
  ASSERT_TRUE(session.CloseStream(3).ok());
  feed(client.Rst(3));
  EXPECT_FALSE(session.IsStreamOpen(1));  // FIN both ways
  EXPECT_FALSE(session.IsStreamOpen(3));  // reset by the client

  feed(client.SynStream(5, {{"port", "81"}, {"requestid", "1"}, {"streamtype", "error"}}));
  ASSERT_TRUE(session.SendReply(5).ok());
  feed(client.Fin(5));
  feed(client.SynStream(7, {{"streamtype", "data"}, {"port", "81"}, {"requestid", "1"}}));
  ASSERT_TRUE(session.SendReply(7).ok());
  feed(client.Data(7, "ping"));
  const std::string error = streaming::PortForwardErrorText(
      81, "sb1", "dial tcp 127.0.0.1:81: connect: connection refused");
  EXPECT_EQ(error,
            "error forwarding port 81 to pod sb1, uid : dial tcp 127.0.0.1:81: connect: "
            "connection refused");
  ASSERT_TRUE(session.SendData(5, error).ok());
  ASSERT_TRUE(session.CloseStream(5).ok());
  ASSERT_TRUE(session.CloseStream(7).ok());
  feed(client.Rst(7));
  feed(client.GoAway(0));

  EXPECT_EQ(log, (std::vector<std::string>{"fin 1", "open 3 streamtype=data,port=80,requestid=0",
                                           "data 3 ping", "reset 3 CANCEL by peer",
                                           "open 5 port=81,requestid=1,streamtype=error", "fin 5",
                                           "open 7 streamtype=data,port=81,requestid=1",
                                           "data 7 ping", "reset 7 CANCEL by peer", "goaway 0 0"}));
  EXPECT_EQ(session.open_stream_count(), 0u);

  // What the Go client would read, decoded with an independent inflate context.
  std::vector<std::string> frames;
  TestClient reader;
  for (const Frame& f : reader.Read(session.TakeOutput())) {
    std::string line = DescribeFrame(f);
    if (const auto* d = std::get_if<DataFrame>(&f)) absl::StrAppend(&line, " ", d->data);
    frames.push_back(line);
  }
  for (const std::string& plain : reader.plain_blocks()) EXPECT_EQ(plain, Unhex("00000000"));
  EXPECT_EQ(frames[0].substr(0, 21), "SYN_REPLY stream=1 fl");
  std::vector<std::string> tail(frames.begin(), frames.end());
  for (std::string& f : tail) {
    if (f.rfind("SYN_REPLY", 0) == 0) f = f.substr(0, f.find(" block="));
  }
  EXPECT_EQ(tail,
            (std::vector<std::string>{
                "SYN_REPLY stream=1 flags=0x00", "SYN_REPLY stream=3 flags=0x00",
                "DATA stream=3 flags=0x00 length=9 pong:ping", "DATA stream=1 flags=0x01 length=0 ",
                "DATA stream=3 flags=0x01 length=0 ", "SYN_REPLY stream=5 flags=0x00",
                "SYN_REPLY stream=7 flags=0x00", "DATA stream=5 flags=0x00 length=93 " + error,
                "DATA stream=5 flags=0x01 length=0 ", "DATA stream=7 flags=0x01 length=0 "}));
}

// ---- Session rules ----

TEST(SpdySession, SilentUntilTheClientSpeaks) {
  ServerSession session = NewSession();
  EXPECT_TRUE(session.TakeOutput().empty());
  EXPECT_FALSE(session.received_first_frame());
  absl::StatusOr<uint32_t> ping = session.SendPing();
  EXPECT_EQ(ping.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ping.status().message().find("first frame"), absl::string_view::npos);
  EXPECT_TRUE(session.TakeOutput().empty());

  Feed(session, Unhex("8003"));  // any byte proves the client has read the 101
  EXPECT_TRUE(session.received_first_frame());
  EXPECT_TRUE(session.TakeOutput().empty());
  ping = session.SendPing();
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(*ping, 2u);
  EXPECT_EQ(*session.SendPing(), 4u);
  EXPECT_EQ(Hex(session.TakeOutput()), "800300060000000400000002800300060000000400000004");
  // The echo of our ping (even ID) is reported, not echoed again.
  EXPECT_EQ(Feed(session, Unhex("0006 00000004 00000002")), std::vector<std::string>{"ping 2"});
  EXPECT_TRUE(session.TakeOutput().empty());
}

TEST(SpdySession, WindowUpdateIgnoredSettingsReportedNothingSent) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "stdout"}}));
  EXPECT_TRUE(
      Feed(session, Encoded(WindowUpdateFrame{1, 100}) + Encoded(WindowUpdateFrame{0, 0x7fffffff}))
          .empty());
  EXPECT_EQ(Feed(session, Encoded(SettingsFrame{0, {{0, 7, 1}, {0, 4, 100}}})),
            std::vector<std::string>{"settings 2"});
  EXPECT_TRUE(session.TakeOutput().empty());
  // No flow control: far more than the 64 KiB initial window goes out at once.
  ASSERT_TRUE(session.SendReply(1).ok());
  ASSERT_TRUE(session.SendData(1, std::string(1 << 20, 'x')).ok());
  EXPECT_GT(session.pending_output_bytes(), 1u << 20);
}

TEST(SpdySession, DataIsChunkedWithFinOnTheLastFrame) {
  SessionOptions options;
  options.max_data_frame_payload = 32768;
  ServerSession session = NewSession(options);
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "stdout"}}));
  ASSERT_TRUE(session.SendReply(1).ok());
  (void)session.TakeOutput();
  const std::string data(100000, 'z');
  ASSERT_TRUE(session.SendData(1, data, /*fin=*/true).ok());
  std::vector<Frame> frames = client.Read(session.TakeOutput());
  ASSERT_EQ(frames.size(), 4u);
  std::string joined;
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto& d = std::get<DataFrame>(frames[i]);
    EXPECT_EQ(d.data.size(), i < 3 ? 32768u : 100000u - 3 * 32768u);
    EXPECT_EQ(d.flags, i == 3 ? kFlagFin : 0);
    joined += d.data;
  }
  EXPECT_EQ(joined, data);
  EXPECT_EQ(session.SendData(1, "more").code(), absl::StatusCode::kFailedPrecondition);
  // Empty data without FIN sends nothing.
  Feed(session, client.SynStream(3, {{"streamtype", "stderr"}}));
  ASSERT_TRUE(session.SendReply(3).ok());
  (void)session.TakeOutput();
  ASSERT_TRUE(session.SendData(3, "").ok());
  EXPECT_TRUE(session.TakeOutput().empty());
}

TEST(SpdySession, MaxFramePayloadOption) {
  SessionOptions options;
  options.max_data_frame_payload = kMaxFramePayload;
  ServerSession session = NewSession(options);
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "stdout"}}));
  ASSERT_TRUE(session.SendReply(1).ok());
  (void)session.TakeOutput();
  ASSERT_TRUE(session.SendData(1, std::string(kMaxFramePayload + 1, 'q')).ok());
  std::vector<Frame> frames = client.Read(session.TakeOutput());
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(std::get<DataFrame>(frames[0]).data.size(), kMaxFramePayload);
  EXPECT_EQ(std::get<DataFrame>(frames[1]).data.size(), 1u);

  options.max_data_frame_payload = kMaxFramePayload + 1;
  EXPECT_EQ(ServerSession::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.max_data_frame_payload = 0;
  EXPECT_FALSE(ServerSession::Create(options).ok());
}

TEST(SpdySession, ReplyRulesAndErrors) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "error"}}));
  absl::Status early = session.SendData(1, "x");
  EXPECT_EQ(early.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(early.message().find("before its SYN_REPLY"), absl::string_view::npos) << early;
  EXPECT_EQ(session.SendReply(1, {{"Connection", "close"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(session.TakeOutput().empty());
  ASSERT_TRUE(session.SendReply(1, {{"X-Extra", "1"}}).ok());
  EXPECT_EQ(session.SendReply(1).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<Reply> r = Replies(client, session.TakeOutput());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].plain, PlainBlock({{"x-extra", "1"}}));
  EXPECT_EQ(session.SendReply(9).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(session.SendData(9, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(session.ResetStream(9).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(session.ResetStream(2).code(), absl::StatusCode::kNotFound);
}

TEST(SpdySession, RejectingAStreamWithReset) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "bogus"}}));
  ASSERT_TRUE(session.ResetStream(1).ok());
  EXPECT_EQ(Hex(session.TakeOutput()), "80030003000000080000000100000005");
  EXPECT_FALSE(session.IsStreamOpen(1));
  // Idempotent: a finished stream is left alone.
  ASSERT_TRUE(session.ResetStream(1).ok());
  EXPECT_TRUE(session.TakeOutput().empty());
  // Frames for it are ignored.
  EXPECT_TRUE(Feed(session, client.Data(1, "late") + client.Rst(1)).empty());
  EXPECT_TRUE(session.TakeOutput().empty());
}

TEST(SpdySession, PeerResetAndFin) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(1, {{"streamtype", "stdin"}}));
  ASSERT_TRUE(session.SendReply(1).ok());
  EXPECT_EQ(Feed(session, client.Data(1, "a") + client.Fin(1) + client.Data(1, "after fin")),
            (std::vector<std::string>{"data 1 a", "fin 1"}));
  EXPECT_TRUE(session.IsStreamOpen(1));  // our side is still open
  EXPECT_EQ(Feed(session, client.Rst(1, RstStatus::kCancel)),
            std::vector<std::string>{"reset 1 CANCEL by peer"});
  EXPECT_EQ(session.SendData(1, "x").code(), absl::StatusCode::kFailedPrecondition);
  // DATA on a stream that never existed is ignored, as the Go peer does.
  EXPECT_TRUE(Feed(session, client.Data(77, "??")).empty());
  // SYN_STREAM with FIN: opened and half-closed at once.
  EXPECT_EQ(Feed(session, client.SynStream(3, {{"streamtype", "error"}}, kFlagFin)),
            (std::vector<std::string>{"open 3 streamtype=error fin", "fin 3"}));
}

TEST(SpdySession, StreamIdRules) {
  ServerSession session = NewSession();
  TestClient client;
  Feed(session, client.SynStream(3, {{"streamtype", "error"}}));
  // Even ID: refused with PROTOCOL_ERROR, the zlib context still advances.
  EXPECT_EQ(Feed(session, client.SynStream(4, {{"streamtype", "stdin"}})),
            std::vector<std::string>{"reset 4 PROTOCOL_ERROR by us"});
  EXPECT_EQ(Hex(session.TakeOutput()), "80030003000000080000000400000001");
  // Lower than the last ID.
  EXPECT_EQ(Feed(session, client.SynStream(1, {{"streamtype", "stdin"}})),
            std::vector<std::string>{"reset 1 PROTOCOL_ERROR by us"});
  EXPECT_EQ(Hex(session.TakeOutput()), "80030003000000080000000100000001");
  // The same ID as an open stream: that stream is reset.
  EXPECT_EQ(Feed(session, client.SynStream(3, {{"streamtype", "stdin"}})),
            std::vector<std::string>{"reset 3 PROTOCOL_ERROR by us"});
  EXPECT_FALSE(session.IsStreamOpen(3));
  (void)session.TakeOutput();
  // The next valid stream decodes fine: every block was inflated.
  EXPECT_EQ(Feed(session, client.SynStream(5, {{"streamtype", "stdout"}})),
            std::vector<std::string>{"open 5 streamtype=stdout"});
  EXPECT_EQ(session.last_stream_id(), 5u);
}

TEST(SpdySession, BadHeaderBlocksAreStreamErrors) {
  ServerSession session = NewSession();
  TestClient client;
  // A repeated name and a hop-by-hop header: RST PROTOCOL_ERROR, the session goes on.
  EXPECT_EQ(Feed(session, client.SynStream(1, {{"port", "1"}, {"port", "2"}})),
            std::vector<std::string>{"reset 1 PROTOCOL_ERROR by us"});
  EXPECT_EQ(Feed(session, client.SynStream(3, {{"streamtype", "error"}, {"host", "x"}})),
            std::vector<std::string>{"reset 3 PROTOCOL_ERROR by us"});
  EXPECT_EQ(Hex(session.TakeOutput()),
            "80030003000000080000000100000001"
            "80030003000000080000000300000001");
  // Upper-case names from a non-Go client are lower-cased, not refused.
  EXPECT_EQ(Feed(session, client.SynStream(5, {{"StreamType", "error"}})),
            std::vector<std::string>{"open 5 streamtype=error"});
  // HEADERS on an open stream.
  EXPECT_EQ(Feed(session, client.Headers(5, {{"x", "y"}}, kFlagFin)),
            (std::vector<std::string>{"headers 5 x=y", "fin 5"}));
}

TEST(SpdySession, MalformedFrameIsASessionErrorWithGoAway) {
  ServerSession session = NewSession();
  TestClient client;
  std::vector<SessionEvent> events;
  const std::string bytes = client.SynStream(1, {{"streamtype", "error"}}) +
                            Unhex("8003000a 00000004 00000001");  // CREDENTIAL
  absl::Status status = session.Feed(bytes, &events);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("CREDENTIAL"), absl::string_view::npos) << status;
  ASSERT_EQ(events.size(), 1u);  // what came before the bad frame is delivered
  EXPECT_EQ(Describe(events[0]), "open 1 streamtype=error");
  EXPECT_TRUE(session.failed());
  // GOAWAY(last-good 1, PROTOCOL_ERROR), ready to write before closing.
  EXPECT_EQ(Hex(session.TakeOutput()), "80030007000000080000000100000001");
  EXPECT_EQ(session.Feed(client.Ping(1), &events).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(session.SendReply(1).code(), absl::StatusCode::kFailedPrecondition);
  session.SendGoAway();
  EXPECT_TRUE(session.TakeOutput().empty());
}

TEST(SpdySession, CorruptHeaderCompressionIsASessionError) {
  ServerSession session = NewSession();
  std::vector<SessionEvent> events;
  absl::Status status = session.Feed(
      Encoded(SynStreamFrame{1, 0, 0, 0, 0, "\x78\xf9\xe3\xc6\xa7\xc2\xff\xff"}), &events);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(Hex(session.TakeOutput()), "80030007000000080000000000000001");
}

TEST(SpdySession, ControlPayloadLimitOption) {
  SessionOptions options;
  options.max_control_payload = 8192;
  ServerSession session = NewSession(options);
  std::vector<SessionEvent> events;
  // Only the header of an oversized SYN_STREAM is needed to fail.
  absl::Status status = session.Feed(Unhex("80030001 00004000 00000001"), &events);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("limit of 8192"), absl::string_view::npos) << status;
}

TEST(SpdySession, GoAwayRules) {
  ServerSession session = NewSession();
  TestClient client;
  // (One client call per statement: each compresses, so their order matters.)
  Feed(session, client.SynStream(1, {{"streamtype", "error"}}));
  Feed(session, client.SynStream(3, {{"streamtype", "stdout"}}));
  ASSERT_TRUE(session.SendReply(1).ok());
  (void)session.TakeOutput();
  session.SendGoAway();
  session.SendGoAway();  // once only
  EXPECT_EQ(Hex(session.TakeOutput()), "80030007000000080000000300000000");
  EXPECT_TRUE(session.goaway_sent());
  // New streams after our GOAWAY are ignored (spdy-3.1.md §2.6.6), but their blocks are
  // still inflated: a HEADERS frame after them decodes.
  EXPECT_TRUE(Feed(session, client.SynStream(5, {{"streamtype", "stdin"}})).empty());
  EXPECT_TRUE(session.TakeOutput().empty());
  EXPECT_EQ(Feed(session, client.Headers(1, {{"a", "b"}})),
            std::vector<std::string>{"headers 1 a=b"});
  EXPECT_EQ(session.last_stream_id(), 3u);
  // Existing streams can still be finished.
  ASSERT_TRUE(session.SendData(1, "bye", true).ok());
}

TEST(SpdySession, GoAwayWithoutStreams) {
  ServerSession session = NewSession();
  Feed(session, Encoded(PingFrame{1}));
  (void)session.TakeOutput();
  session.SendGoAway(GoAwayStatus::kInternalError);
  EXPECT_EQ(Hex(session.TakeOutput()), "80030007000000080000000000000002");
}

// A round trip with a client that uses its own compression contexts for many streams.
TEST(SpdySession, RoundTripManyStreams) {
  ServerSession session = NewSession();
  TestClient client(RawDeflater(1));
  for (uint32_t id = 1; id < 400; id += 2) {
    const std::string port = std::to_string(id);
    EXPECT_EQ(Feed(session, client.SynStream(
                                id, {{"streamtype", "data"}, {"port", port}, {"requestid", port}})),
              std::vector<std::string>{
                  absl::StrCat("open ", id, " streamtype=data,port=", port, ",requestid=", port)});
    ASSERT_TRUE(session.SendReply(id).ok());
    EXPECT_EQ(Feed(session, client.Data(id, "req" + port) + client.Fin(id)),
              (std::vector<std::string>{absl::StrCat("data ", id, " req", port),
                                        absl::StrCat("fin ", id)}));
    ASSERT_TRUE(session.SendData(id, "resp" + port, /*fin=*/true).ok());
    EXPECT_FALSE(session.IsStreamOpen(id));  // closed both ways: forgotten
    std::vector<Frame> frames = client.Read(session.TakeOutput());
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(std::get<SynReplyFrame>(frames[0]).stream_id, id);
    EXPECT_EQ(std::get<DataFrame>(frames[1]), (DataFrame{id, kFlagFin, "resp" + port}));
  }
  for (const std::string& plain : client.plain_blocks()) EXPECT_EQ(plain, Unhex("00000000"));
  EXPECT_EQ(session.open_stream_count(), 0u);
}

}  // namespace
}  // namespace berth::cri::spdy
