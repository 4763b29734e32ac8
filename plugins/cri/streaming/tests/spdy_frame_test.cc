// SPDX-License-Identifier: Apache-2.0
// Frame encoding and the incremental parser: byte-exact frames from the captured traces
// (kubernetes-streaming.md §10) and every check of §5.1.
#include "plugins/cri/streaming/spdy_frame.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "plugins/cri/streaming/tests/spdy_test_util.h"

namespace berth::cri::spdy {
namespace {

using testing::Encoded;
using testing::Unhex;

// §10.2, client to server: the three SYN_STREAMs.
constexpr absl::string_view kTrace102Client =
    "80030001 00000029 00000001 00000000 00 00 78f9e3c6a7c2 "
    "6260606004a7b392a2d4c45c6851c29a0a0a68 00000000ffff "
    "80030001 00000019 00000003 00000000 00 00 c22ac5565c92925f5a02 000000ffff "
    "80030001 00000015 00000005 00000000 00 00 c229975a5404 000000ffff";

std::vector<Frame> ParseAll(FrameParser& parser) {
  std::vector<Frame> frames;
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = parser.Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !next->has_value()) return frames;
    frames.push_back(**std::move(next));
  }
}

absl::Status ParseError(absl::string_view bytes, uint32_t limit = kMaxFramePayload) {
  FrameParser parser(limit);
  parser.Append(bytes);
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = parser.Next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return absl::OkStatus();
  }
}

TEST(SpdyFrameEncode, ServerFramesOfTrace102AreByteExact) {
  EXPECT_EQ(Encoded(DataFrame{3, 0, "out-data\n"}), Unhex("00000003 00000009") + "out-data\n");
  EXPECT_EQ(Encoded(DataFrame{5, 0, "err-data\n"}), Unhex("00000005 00000009") + "err-data\n");
  EXPECT_EQ(Encoded(DataFrame{3, kFlagFin, ""}), Unhex("00000003 01000000"));
  EXPECT_EQ(Encoded(DataFrame{5, kFlagFin, ""}), Unhex("00000005 01000000"));
  EXPECT_EQ(Encoded(RstStreamFrame{1, static_cast<uint32_t>(RstStatus::kCancel)}),
            Unhex("80030003 00000008 00000001 00000005"));
  EXPECT_EQ(Encoded(GoAwayFrame{5, 0}), Unhex("80030007 00000008 00000005 00000000"));
  // §10.4: PING id=1, echoed unchanged.
  EXPECT_EQ(Encoded(PingFrame{1}), Unhex("80030006 00000004 00000001"));
}

TEST(SpdyFrameEncode, SynReplyAndSynStreamLayout) {
  // The SYN_REPLY header of §10.2 (block bytes are whatever the compressor produced).
  const std::string block = Unhex("78f9e3c6a7c2 62606060 00000000ffff");
  EXPECT_EQ(Encoded(SynReplyFrame{1, 0, block}), Unhex("80030002 00000014 00000001") + block);
  SynStreamFrame syn;
  syn.stream_id = 7;
  syn.associated_stream_id = 0;
  syn.priority = 3;
  syn.slot = 0;
  syn.flags = kFlagFin;
  syn.header_block = "xyz";
  EXPECT_EQ(Encoded(syn), Unhex("80030001 0100000d 00000007 00000000 60 00") + "xyz");
}

TEST(SpdyFrameEncode, SettingsWindowUpdateHeaders) {
  SettingsFrame settings;
  settings.entries = {{1, 7, 65536}, {0, 4, 100}};
  EXPECT_EQ(Encoded(settings),
            Unhex("80030004 00000014 00000002 01000007 00010000 00000004 00000064"));
  EXPECT_EQ(Encoded(WindowUpdateFrame{0, 1024}), Unhex("80030009 00000008 00000000 00000400"));
  EXPECT_EQ(Encoded(HeadersFrame{3, kFlagFin, "ab"}), Unhex("80030008 01000006 00000003") + "ab");
}

TEST(SpdyFrameEncode, RefusesWhatTheGoPeerRejects) {
  EXPECT_EQ(EncodeFrame(DataFrame{0, 0, "x"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(EncodeFrame(SynStreamFrame{0, 0, 0, 0, 0, ""}).ok());
  EXPECT_FALSE(EncodeFrame(SynStreamFrame{1, 0, 8, 0, 0, ""}).ok());  // priority 8
  EXPECT_FALSE(EncodeFrame(SynReplyFrame{0, 0, ""}).ok());
  EXPECT_FALSE(EncodeFrame(HeadersFrame{0, 0, ""}).ok());
  EXPECT_FALSE(EncodeFrame(RstStreamFrame{0, 5}).ok());
  absl::Status rst0 = EncodeFrame(RstStreamFrame{1, 0}).status();
  EXPECT_FALSE(rst0.ok());
  EXPECT_NE(rst0.message().find("status 0"), absl::string_view::npos) << rst0;
  EXPECT_FALSE(EncodeFrame(PingFrame{0}).ok());
  EXPECT_FALSE(EncodeFrame(DataFrame{kMaxStreamId + 1, 0, ""}).ok());
  EXPECT_FALSE(EncodeFrame(GoAwayFrame{kMaxStreamId + 1, 0}).ok());
  EXPECT_FALSE(EncodeFrame(WindowUpdateFrame{1, 0x80000000u}).ok());
  SettingsFrame settings;
  settings.entries = {{0, 0x1000000, 1}};
  EXPECT_FALSE(EncodeFrame(settings).ok());
  // Nothing is appended on failure.
  std::string out = "keep";
  EXPECT_FALSE(AppendFrame(PingFrame{0}, &out).ok());
  EXPECT_EQ(out, "keep");
}

TEST(SpdyFrameEncode, PayloadLimitIs2To24Minus1) {
  const std::string max_data(kMaxFramePayload, 'a');
  absl::StatusOr<std::string> data = EncodeFrame(DataFrame{1, 0, max_data});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->substr(0, 8), Unhex("00000001 00ffffff"));
  absl::Status too_big = EncodeFrame(DataFrame{1, 0, max_data + "a"}).status();
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.message().find("24-bit"), absl::string_view::npos) << too_big;

  // SYN_STREAM: 10 fixed bytes + block.
  EXPECT_TRUE(
      EncodeFrame(SynStreamFrame{1, 0, 0, 0, 0, std::string(kMaxFramePayload - 10, 'b')}).ok());
  EXPECT_FALSE(
      EncodeFrame(SynStreamFrame{1, 0, 0, 0, 0, std::string(kMaxFramePayload - 9, 'b')}).ok());
  EXPECT_TRUE(EncodeFrame(SynReplyFrame{1, 0, std::string(kMaxFramePayload - 4, 'b')}).ok());
  EXPECT_FALSE(EncodeFrame(SynReplyFrame{1, 0, std::string(kMaxFramePayload - 3, 'b')}).ok());

  // The largest frames parse back.
  FrameParser parser;
  parser.Append(*data);
  std::vector<Frame> frames = ParseAll(parser);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(std::get<DataFrame>(frames[0]).data.size(), kMaxFramePayload);
  parser.Append(Encoded(SynReplyFrame{1, 0, std::string(kMaxFramePayload - 4, 'b')}));
  frames = ParseAll(parser);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(std::get<SynReplyFrame>(frames[0]).header_block.size(), kMaxFramePayload - 4);
}

TEST(SpdyFrameParse, Trace102ClientSynStreams) {
  FrameParser parser;
  parser.Append(Unhex(kTrace102Client));
  std::vector<Frame> frames = ParseAll(parser);
  ASSERT_EQ(frames.size(), 3u);
  const auto& s1 = std::get<SynStreamFrame>(frames[0]);
  EXPECT_EQ(s1.stream_id, 1u);
  EXPECT_EQ(s1.associated_stream_id, 0u);
  EXPECT_EQ(s1.priority, 0);
  EXPECT_EQ(s1.slot, 0);
  EXPECT_EQ(s1.flags, 0);
  EXPECT_EQ(s1.header_block,
            Unhex("78f9e3c6a7c2 6260606004a7b392a2d4c45c6851c29a0a0a68 00000000ffff"));
  EXPECT_EQ(std::get<SynStreamFrame>(frames[1]).stream_id, 3u);
  EXPECT_EQ(std::get<SynStreamFrame>(frames[1]).header_block,
            Unhex("c22ac5565c92925f5a02 000000ffff"));
  EXPECT_EQ(std::get<SynStreamFrame>(frames[2]).stream_id, 5u);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(SpdyFrameParse, ByteByByteAndRandomSplitsGiveTheSameFrames) {
  std::string wire = Unhex(kTrace102Client);
  wire += Encoded(DataFrame{3, 0, "out-data\n"}) + Encoded(DataFrame{3, kFlagFin, ""}) +
          Encoded(PingFrame{1}) + Encoded(RstStreamFrame{1, 5}) + Encoded(GoAwayFrame{5, 0}) +
          Encoded(WindowUpdateFrame{3, 100}) + Encoded(SettingsFrame{0, {{0, 7, 1}}}) +
          Encoded(HeadersFrame{3, 0, "hh"});
  FrameParser whole;
  whole.Append(wire);
  const std::vector<Frame> expected = ParseAll(whole);
  ASSERT_EQ(expected.size(), 11u);

  FrameParser bytewise;
  std::vector<Frame> got;
  for (char c : wire) {
    bytewise.Append(absl::string_view(&c, 1));
    std::vector<Frame> more = ParseAll(bytewise);
    got.insert(got.end(), more.begin(), more.end());
  }
  EXPECT_EQ(got, expected);

  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    FrameParser parser;
    std::vector<Frame> frames;
    size_t pos = 0;
    while (pos < wire.size()) {
      const size_t n = std::min<size_t>(wire.size() - pos, 1 + rng() % 40);
      parser.Append(absl::string_view(wire).substr(pos, n));
      pos += n;
      std::vector<Frame> more = ParseAll(parser);
      frames.insert(frames.end(), more.begin(), more.end());
    }
    EXPECT_EQ(frames, expected) << "round " << round;
    EXPECT_EQ(parser.buffered_bytes(), 0u);
  }
}

TEST(SpdyFrameParse, RoundTripOfEveryType) {
  SynStreamFrame syn{0x7ffffffd, 4, 7, 9, kFlagFin | kFlagUnidirectional, "blk"};
  std::vector<Frame> frames = {
      DataFrame{9, kFlagFin, "payload"},
      syn,
      SynReplyFrame{9, kFlagFin, "reply"},
      RstStreamFrame{9, 11},
      SettingsFrame{kFlagSettingsClearSettings, {{1, 4, 100}, {2, 7, 1 << 20}}},
      SettingsFrame{0, {}},
      PingFrame{0xfffffffe},
      GoAwayFrame{9, 2},
      HeadersFrame{9, 0, "h"},
      WindowUpdateFrame{0, 0x7fffffff},
  };
  std::string wire;
  for (const Frame& f : frames) wire += Encoded(f);
  FrameParser parser;
  parser.Append(wire);
  EXPECT_EQ(ParseAll(parser), frames);
}

TEST(SpdyFrameParse, ReservedBitsOfStreamIdsAreMasked) {
  FrameParser parser;
  parser.Append(Unhex("80030003 00000008 80000003 00000005"));  // RST, X bit set
  parser.Append(Unhex("80030007 00000008 80000005 00000000"));  // GOAWAY, X bit set
  std::vector<Frame> frames = ParseAll(parser);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(std::get<RstStreamFrame>(frames[0]).stream_id, 3u);
  EXPECT_EQ(std::get<GoAwayFrame>(frames[1]).last_good_stream_id, 5u);
}

// §5.1: an unknown control type is fatal for the Go peer, and for us.
TEST(SpdyFrameQuirks, UnknownControlTypesAreErrors) {
  for (uint16_t type : {0, 5, 10, 11, 0x7fff}) {
    std::string frame = Unhex("8003");
    frame.push_back(static_cast<char>(type >> 8));
    frame.push_back(static_cast<char>(type));
    frame += Unhex("00000004 00000001");
    absl::Status s = ParseError(frame);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << type;
    EXPECT_NE(s.message().find("unknown type"), absl::string_view::npos) << s;
  }
}

TEST(SpdyFrameQuirks, RstStreamStatusZeroAndStreamZero) {
  absl::Status status0 = ParseError(Unhex("80030003 00000008 00000001 00000000"));
  EXPECT_EQ(status0.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status0.message().find("status 0"), absl::string_view::npos) << status0;
  EXPECT_FALSE(ParseError(Unhex("80030003 00000008 00000000 00000005")).ok());
  // Wrong fixed length.
  EXPECT_FALSE(ParseError(Unhex("80030003 0000000c 00000001 00000005 00000000")).ok());
  // Flags are not checked (the Go reader does not either).
  EXPECT_TRUE(ParseError(Unhex("80030003 01000008 00000001 00000005")).ok());
}

TEST(SpdyFrameQuirks, PingIdZeroFlagsAndLength) {
  EXPECT_TRUE(ParseError(Unhex("80030006 00000004 00000001")).ok());
  absl::Status id0 = ParseError(Unhex("80030006 00000004 00000000"));
  EXPECT_FALSE(id0.ok());
  EXPECT_NE(id0.message().find("ID 0"), absl::string_view::npos) << id0;
  absl::Status flags = ParseError(Unhex("80030006 01000004 00000001"));
  EXPECT_FALSE(flags.ok());
  EXPECT_NE(flags.message().find("flags"), absl::string_view::npos) << flags;
  EXPECT_FALSE(ParseError(Unhex("80030006 00000008 00000001 00000002")).ok());
}

TEST(SpdyFrameQuirks, GoAwayWindowUpdateSettingsLengthsAndFlags) {
  EXPECT_TRUE(ParseError(Unhex("80030007 00000008 00000005 00000000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030007 0000000c 00000005 00000000 00000000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030007 00000004 00000005")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030007 01000008 00000005 00000000")).ok());

  EXPECT_TRUE(ParseError(Unhex("80030009 00000008 00000000 00000100")).ok());  // stream 0 ok
  EXPECT_FALSE(ParseError(Unhex("80030009 00000004 00000001")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030009 01000008 00000001 00000100")).ok());

  EXPECT_TRUE(ParseError(Unhex("80030004 0000000c 00000001 00000004 00000064")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030004 0000000c 00000002 00000004 00000064")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030004 00000010 00000001 00000004 00000064 00000000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030004 00000002 0000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030004 00000004 ffffffff")).ok());  // count overflows
}

TEST(SpdyFrameQuirks, StreamIdZero) {
  EXPECT_FALSE(ParseError(Unhex("80030001 0000000a 00000000 00000000 0000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030002 00000004 00000000")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030008 00000004 00000000")).ok());
  absl::Status data = ParseError(Unhex("00000000 00000002 6869"));
  EXPECT_FALSE(data.ok());
  EXPECT_NE(data.message().find("stream ID 0"), absl::string_view::npos) << data;
  EXPECT_FALSE(ParseError(Unhex("80000000 00000000")).ok());  // X bit only: still 0
}

TEST(SpdyFrameQuirks, ShortStreamFramesAndVersion) {
  EXPECT_FALSE(ParseError(Unhex("80030001 00000009 00000001 00000000 00")).ok());
  EXPECT_FALSE(ParseError(Unhex("80030002 00000003 000001")).ok());
  absl::Status v2 = ParseError(Unhex("80020006 00000004 00000001"));
  EXPECT_FALSE(v2.ok());
  EXPECT_NE(v2.message().find("version 2"), absl::string_view::npos) << v2;
}

TEST(SpdyFrameQuirks, ControlPayloadLimitIsCheckedOnTheHeaderAlone) {
  // Limit 8192: a 8193-byte control frame fails as soon as its 8-byte header is in.
  FrameParser parser(8192);
  parser.Append(Unhex("80030001 00002001"));
  absl::StatusOr<std::optional<Frame>> next = parser.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("limit of 8192"), absl::string_view::npos)
      << next.status();
  // Exactly at the limit is fine.
  FrameParser ok_parser(8192);
  ok_parser.Append(Encoded(SynReplyFrame{1, 0, std::string(8188, 'x')}));
  EXPECT_EQ(ParseAll(ok_parser).size(), 1u);
  // The limit cannot go below 8192 (spdy-3.1.md §2.2.1), nor above 2^24-1.
  EXPECT_EQ(FrameParser(100).max_control_payload(), kMinControlPayloadLimit);
  EXPECT_EQ(FrameParser().max_control_payload(), kMaxFramePayload);
  // DATA frames are not subject to the control limit.
  FrameParser data_parser(8192);
  data_parser.Append(Encoded(DataFrame{1, 0, std::string(100000, 'd')}));
  EXPECT_EQ(ParseAll(data_parser).size(), 1u);
}

TEST(SpdyFrameQuirks, ErrorsAreFinal) {
  FrameParser parser;
  parser.Append(Unhex("80030006 00000004 00000000"));
  EXPECT_FALSE(parser.Next().ok());
  parser.Append(Encoded(PingFrame{1}));
  EXPECT_FALSE(parser.Next().ok());
}

TEST(SpdyFrameDescribe, IsReadable) {
  EXPECT_EQ(DescribeFrame(RstStreamFrame{1, 5}), "RST_STREAM stream=1 status=CANCEL");
  EXPECT_EQ(DescribeFrame(GoAwayFrame{5, 0}), "GOAWAY last-good=5 status=OK");
  EXPECT_EQ(DescribeFrame(DataFrame{3, 1, "abc"}), "DATA stream=3 flags=0x01 length=3");
  EXPECT_EQ(RstStatusName(42), "unknown status 42");
}

}  // namespace
}  // namespace berth::cri::spdy
