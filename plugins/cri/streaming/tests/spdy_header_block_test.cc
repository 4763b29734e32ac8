// SPDX-License-Identifier: Apache-2.0
// Name/value blocks and their zlib contexts (kubernetes-streaming.md §5.2): the captured
// compressed blocks of §10, the persistence of one context per direction, and the quirks.
#include "plugins/cri/streaming/spdy_header_block.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "plugins/cri/streaming/tests/spdy_test_util.h"

namespace berth::cri::spdy {
namespace {

using testing::Hex;
using testing::PlainBlock;
using testing::RawDeflater;
using testing::RawInflater;
using testing::Unhex;

Headers H(std::vector<std::pair<std::string, std::string>> pairs) {
  return Headers(std::move(pairs));
}

TEST(Spdy3Dictionary, IsTheSpecDictionary) {
  const absl::string_view d = Spdy3Dictionary();
  ASSERT_EQ(d.size(), 1423u);
  EXPECT_EQ(adler32(adler32(0, nullptr, 0), reinterpret_cast<const Bytef*>(d.data()),
                    static_cast<uInt>(d.size())),
            kSpdy3DictionaryAdler32);
  EXPECT_EQ(Hex(d.substr(0, 16)), "000000076f7074696f6e730000000468");  // "....options....h"
  EXPECT_EQ(d.substr(d.size() - 15), absl::string_view("8859-1,utf-,*,enq=0.").substr(5));
}

TEST(HeaderBlockPlain, MatchesTheTrace) {
  // §10.2: plain block: 00000001 0000000a "streamtype" 00000005 "error".
  absl::StatusOr<std::string> plain = EncodeHeaderBlock({{"streamType", "error"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, Unhex("00000001 0000000a") + "streamtype" + Unhex("00000005") + "error");
  EXPECT_EQ(*EncodeHeaderBlock({}), Unhex("00000000"));
}

TEST(HeaderBlockPlain, EncodeLowerCasesAndJoinsRepeatedNames) {
  absl::StatusOr<std::string> plain =
      EncodeHeaderBlock({{"Port", "80"}, {"X-A", "1"}, {"port", "81"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, PlainBlock({{"port", std::string("80\0"
                                                     "81",
                                                     5)},
                                {"x-a", "1"}}));
}

TEST(HeaderBlockPlain, EncodeRefusesBadNamesAndValues) {
  EXPECT_EQ(EncodeHeaderBlock({{"", "v"}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(EncodeHeaderBlock({{std::string("a\0b", 3), "v"}}).ok());
  EXPECT_FALSE(EncodeHeaderBlock({{"a", std::string("x\0y", 3)}}).ok());
}

TEST(HeaderBlockPlain, DecodeRoundTripAndNulSplitting) {
  absl::StatusOr<Headers> h = DecodeHeaderBlock(PlainBlock({{"port", std::string("80\0"
                                                                                 "81",
                                                                                 5)},
                                                            {"StreamType", "data"},
                                                            {"e", ""}}));
  ASSERT_TRUE(h.ok()) << h.status();
  // Names are lower-cased (the Go peer sends them so; we match case-insensitively).
  EXPECT_EQ(*h, H({{"port", "80"}, {"port", "81"}, {"streamtype", "data"}, {"e", ""}}));
  EXPECT_EQ(FindHeader(*h, "StreamType"), "data");
  EXPECT_EQ(FindHeader(*h, "port"), "80");
  EXPECT_FALSE(FindHeader(*h, "requestid").has_value());
}

TEST(HeaderBlockPlain, DecodeErrors) {
  const auto error = [](const std::string& plain, const HeaderBlockLimits& limits = {}) {
    absl::StatusOr<Headers> h = DecodeHeaderBlock(plain, limits);
    EXPECT_FALSE(h.ok()) << Hex(plain);
    return h.ok() ? std::string() : std::string(h.status().message());
  };
  EXPECT_NE(error("").find("truncated"), std::string::npos);
  EXPECT_NE(error(Unhex("00000001 00000004") + "na").find("truncated"), std::string::npos);
  EXPECT_NE(error(PlainBlock({{"a", "1"}}) + "x").find("after its last pair"), std::string::npos);
  EXPECT_NE(error(PlainBlock({{"", "1"}})).find("empty name"), std::string::npos);
  EXPECT_NE(error(PlainBlock({{"port", "1"}, {"Port", "2"}})).find("repeats"), std::string::npos);
  // Limits: pairs and field sizes (Go's v0.5 defaults are 1000 and 1 MiB).
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 1001; ++i) many.emplace_back("h" + std::to_string(i), "v");
  EXPECT_NE(error(PlainBlock(many)).find("at most 1000"), std::string::npos);
  many.pop_back();
  EXPECT_TRUE(DecodeHeaderBlock(PlainBlock(many)).ok());
  EXPECT_NE(error(PlainBlock({{std::string((1 << 20) + 1, 'n'), "v"}})).find("limit"),
            std::string::npos);
  EXPECT_NE(error(PlainBlock({{"n", std::string((1 << 20) + 1, 'v')}})).find("limit"),
            std::string::npos);
  EXPECT_TRUE(DecodeHeaderBlock(PlainBlock({{"n", std::string(1 << 20, 'v')}})).ok());
  HeaderBlockLimits small{2, 4};
  EXPECT_FALSE(DecodeHeaderBlock(PlainBlock({{"a", "1"}, {"b", "2"}, {"c", "3"}}), small).ok());
  EXPECT_FALSE(DecodeHeaderBlock(PlainBlock({{"abcde", "1"}}), small).ok());
}

TEST(HeaderBlockPlain, HopByHopHeaders) {
  for (const char* name : {"connection", "Keep-Alive", "proxy-connection", "transfer-encoding"}) {
    EXPECT_FALSE(CheckNoHopByHopHeaders(H({{name, "x"}}), true).ok()) << name;
    EXPECT_FALSE(CheckNoHopByHopHeaders(H({{name, "x"}}), false).ok()) << name;
  }
  EXPECT_FALSE(CheckNoHopByHopHeaders(H({{"host", "x"}}), true).ok());
  EXPECT_TRUE(CheckNoHopByHopHeaders(H({{"host", "x"}}), false).ok());
  EXPECT_TRUE(CheckNoHopByHopHeaders(H({{"streamtype", "error"}}), true).ok());
}

// §10.2: the client's three blocks are pieces of ONE zlib stream; only the first carries the
// zlib header (78 F9 E3 C6 A7 C2) and the dictionary is supplied at Z_NEED_DICT.
TEST(HeaderDecompressor, DecodesTheClientBlocksOfTrace102InOneContext) {
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok()) << d.status();
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"78f9e3c6a7c2 6260606004a7b392a2d4c45c6851c29a0a0a68 00000000ffff", "error"},
      {"c22ac5565c92925f5a02 000000ffff", "stdout"},
      {"c229975a5404 000000ffff", "stderr"},
  };
  for (const auto& [hex, type] : expected) {
    absl::StatusOr<std::string> plain = d->Decompress(Unhex(hex));
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ(*plain, PlainBlock({{"streamtype", type}}));
  }
}

TEST(HeaderDecompressor, LaterBlocksNeedThePersistentContext) {
  absl::StatusOr<HeaderDecompressor> fresh = HeaderDecompressor::Create();
  ASSERT_TRUE(fresh.ok());
  // The second block alone has no zlib header: a new context cannot read it.
  absl::Status s = fresh->Decompress(Unhex("c22ac5565c92925f5a02 000000ffff")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // And a context that failed stays failed (its stream is lost).
  EXPECT_FALSE(fresh->Decompress(Unhex("78f9e3c6a7c2 62606060 00000000ffff")).ok());
}

// §10.5: the port-forward error stream's block (three pairs, Go map order).
TEST(HeaderDecompressor, DecodesThePortForwardBlockOfTrace105) {
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok());
  absl::StatusOr<absl::StatusOr<Headers>> h = d->DecompressHeaders(
      Unhex("78f9e3c6a7c2 02253a48f95b044aab4c16060c0c0c9c4590d8ca04a5624603703a2c294a4dcc85"
            "1635aca9a088 00000000ffff"));
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(h->ok()) << h->status();
  EXPECT_EQ(**h, H({{"port", "80"}, {"requestid", "0"}, {"streamtype", "error"}}));
}

// §10.2, server side: Go's own empty SYN_REPLY blocks decode (checks the reverse direction
// against the real Go compressor).
TEST(HeaderDecompressor, DecodesGoServerEmptyReplies) {
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok());
  for (const char* hex :
       {"78f9e3c6a7c2 62606060 00000000ffff", "0261 00000000ffff", "0261 00000000ffff"}) {
    absl::StatusOr<absl::StatusOr<Headers>> h = d->DecompressHeaders(Unhex(hex));
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->ok()) << h->status();
    EXPECT_TRUE((*h)->empty());
  }
}

TEST(HeaderDecompressor, EmptyBlockIsATruncatedHeaderBlockNotASessionError) {
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok());
  absl::StatusOr<absl::StatusOr<Headers>> h = d->DecompressHeaders("");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_FALSE(h->ok());
}

TEST(HeaderDecompressor, RejectsAWrongDictionary) {
  // A zlib stream announcing another dictionary (e.g. SPDY/2's).
  z_stream s{};
  ASSERT_EQ(deflateInit(&s, 6), Z_OK);
  const std::string other = "not the spdy dictionary";
  ASSERT_EQ(deflateSetDictionary(&s, reinterpret_cast<const Bytef*>(other.data()),
                                 static_cast<uInt>(other.size())),
            Z_OK);
  std::string plain = PlainBlock({{"a", "b"}});
  unsigned char out[256];
  s.next_in = reinterpret_cast<Bytef*>(plain.data());
  s.avail_in = static_cast<uInt>(plain.size());
  s.next_out = out;
  s.avail_out = sizeof(out);
  ASSERT_EQ(deflate(&s, Z_SYNC_FLUSH), Z_OK);
  const std::string block(reinterpret_cast<char*>(out), sizeof(out) - s.avail_out);
  deflateEnd(&s);

  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok());
  absl::Status status = d->Decompress(block).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("0xe3c6a7c2"), absl::string_view::npos) << status;
}

TEST(HeaderDecompressor, RejectsTheEndOfTheZlibStreamAndGarbage) {
  z_stream s{};
  ASSERT_EQ(deflateInit(&s, 6), Z_OK);
  const absl::string_view dict = Spdy3Dictionary();
  ASSERT_EQ(deflateSetDictionary(&s, reinterpret_cast<const Bytef*>(dict.data()),
                                 static_cast<uInt>(dict.size())),
            Z_OK);
  std::string plain = PlainBlock({{"a", "b"}});
  unsigned char out[256];
  s.next_in = reinterpret_cast<Bytef*>(plain.data());
  s.avail_in = static_cast<uInt>(plain.size());
  s.next_out = out;
  s.avail_out = sizeof(out);
  ASSERT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  const std::string finished(reinterpret_cast<char*>(out), sizeof(out) - s.avail_out);
  deflateEnd(&s);
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(d.ok());
  absl::Status end = d->Decompress(finished).status();
  EXPECT_NE(end.message().find("end of stream"), absl::string_view::npos) << end;

  absl::StatusOr<HeaderDecompressor> d2 = HeaderDecompressor::Create();
  ASSERT_TRUE(d2.ok());
  absl::Status garbage = d2->Decompress("\x78\xf9\xe3\xc6\xa7\xc2\xff\xff\xff\xff").status();
  EXPECT_EQ(garbage.code(), absl::StatusCode::kInvalidArgument) << garbage;
}

TEST(HeaderDecompressor, BoundsTheInflatedSize) {
  RawDeflater deflater;
  const std::string bomb = deflater.Compress(PlainBlock({{"a", std::string(1 << 20, 'x')}}));
  EXPECT_LT(bomb.size(), 4096u);
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create(size_t{64} * 1024);
  ASSERT_TRUE(d.ok());
  absl::Status s = d->Decompress(bomb).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("more than 65536"), absl::string_view::npos) << s;
}

// Our compressor: one zlib stream, sync-flushed per block, header only on the first block.
// The output is checked with an independent inflate (raw zlib), not with our decompressor.
TEST(HeaderCompressor, OneStreamWithSyncFlushedBlocks) {
  absl::StatusOr<HeaderCompressor> c = HeaderCompressor::Create();
  ASSERT_TRUE(c.ok()) << c.status();
  RawInflater inflater;
  const std::vector<Headers> blocks = {
      {}, {}, {{"streamtype", "error"}}, {{"port", "80"}, {"port", "81"}, {"x", ""}}, {}};
  for (size_t i = 0; i < blocks.size(); ++i) {
    absl::StatusOr<std::string> z = c->CompressHeaders(blocks[i]);
    ASSERT_TRUE(z.ok()) << z.status();
    if (i == 0) {
      // Level 9, as Go: 78 F9, then the DICTID of the SPDY/3 dictionary.
      EXPECT_EQ(Hex(z->substr(0, 6)), "78f9e3c6a7c2");
    } else {
      EXPECT_NE(static_cast<unsigned char>((*z)[0]), 0x78) << "block " << i << " " << Hex(*z);
    }
    ASSERT_GE(z->size(), 4u);
    EXPECT_EQ(Hex(z->substr(z->size() - 4)), "0000ffff") << "sync flush, block " << i;
    bool ok = false;
    const std::string plain = inflater.Inflate(*z, &ok);
    ASSERT_TRUE(ok) << "block " << i << " " << Hex(*z);
    EXPECT_EQ(plain, *EncodeHeaderBlock(blocks[i])) << "block " << i;
  }
}

TEST(HeaderCompressor, RoundTripThroughOurDecompressorOverManyBlocks) {
  absl::StatusOr<HeaderCompressor> c = HeaderCompressor::Create(-1, 1);
  absl::StatusOr<HeaderDecompressor> d = HeaderDecompressor::Create();
  ASSERT_TRUE(c.ok() && d.ok());
  for (int i = 0; i < 200; ++i) {
    Headers h = {
        {"streamtype", i % 2 ? "data" : "error"},
        {"port", std::to_string(1000 + i)},
        {"requestid", std::to_string(i)},
        {"big", std::string(static_cast<size_t>(i) * 37, static_cast<char>('a' + i % 26))}};
    absl::StatusOr<std::string> z = c->CompressHeaders(h);
    ASSERT_TRUE(z.ok()) << z.status();
    absl::StatusOr<absl::StatusOr<Headers>> back = d->DecompressHeaders(*z);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_TRUE(back->ok()) << back->status();
    EXPECT_EQ(**back, h) << i;
  }
}

TEST(HeaderCompressor, RejectsBadParameters) {
  EXPECT_FALSE(HeaderCompressor::Create(10).ok());
  EXPECT_FALSE(HeaderCompressor::Create(9, 0).ok());
  EXPECT_FALSE(HeaderCompressor::Create(9, 10).ok());
}

}  // namespace
}  // namespace berth::cri::spdy
