// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the SPDY/3.1 server session (issue 8): the input is what a client
// sends after the 101 response, fed to a ServerSession three ways:
//  A. in one Feed() call, nobody answering;
//  B. one byte per Feed() call, nobody answering. Events, output and status must equal A's:
//     the session may not depend on how the socket splits the bytes;
//  C. cut at a few points derived from the input, answered as the streaming server answers
//     (remote_command.cc, server.cc): SYN_REPLY to most streams at once, to some only after
//     the next chunk, others refused with RST_STREAM; data echoed back, FIN on the client's
//     FIN, PINGs of our own, GOAWAY when the client leaves, and at the end RST_STREAM for
//     what is left and GOAWAY. Whether each call may succeed is known from the stream's state
//     and checked.
// Invariants, besides no crash, leak, undefined behaviour or hang (ASan, UBSan, -timeout):
//  - a failed session keeps failing (Feed and every sender), and the failing Feed's output
//    ends with GOAWAY(PROTOCOL_ERROR or INTERNAL_ERROR) unless a GOAWAY was already sent;
//  - everything the session writes is valid SPDY: it parses whole, its SYN_REPLY blocks
//    inflate in order (one client-side context) to the empty block, a stream gets one
//    SYN_REPLY and only to an odd ID the client opened, DATA only follows the stream's
//    SYN_REPLY and never our FIN or RST_STREAM, and there is exactly one GOAWAY;
//  - nothing grows without the input: unanswered output is at most the input plus one GOAWAY,
//    event data at most the input, open streams at most the SYN_STREAMs received.
//
// Built and run by run_fuzzer.sh (clang++ -fsanitize=fuzzer,address,undefined), outside the
// gcc build.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "plugins/cri/streaming/spdy.h"
#include "plugins/cri/streaming/spdy_frame.h"
#include "plugins/cri/streaming/spdy_header_block.h"

namespace berth::cri::spdy::fuzz {
namespace {

[[noreturn]] void Violation(const char* condition, const std::string& detail) {
  std::fprintf(stderr, "spdy_session_fuzzer: invariant violated: %s\n  %s\n", condition,
               detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(condition, detail)                  \
  do {                                                 \
    if (!(condition)) Violation(#condition, (detail)); \
  } while (0)

constexpr size_t kGoAwaySize = 16;

// One line per event (data escaped), to compare runs.
std::string Describe(const SessionEvent& event) {
  return std::visit(
      [](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, StreamOpened>) {
          std::string line = absl::StrCat("open ", e.stream_id, " p", e.priority,
                                          e.fin ? " fin" : "", e.unidirectional ? " uni" : "");
          for (const auto& [n, v] : e.headers) {
            absl::StrAppend(&line, " ", absl::CEscape(n), "=", absl::CEscape(v));
          }
          return line;
        } else if constexpr (std::is_same_v<T, StreamData>) {
          return absl::StrCat("data ", e.stream_id, " ", absl::CEscape(e.data));
        } else if constexpr (std::is_same_v<T, StreamHalfClosed>) {
          return absl::StrCat("fin ", e.stream_id);
        } else if constexpr (std::is_same_v<T, StreamReset>) {
          return absl::StrCat("reset ", e.stream_id, " ", e.status, e.by_peer ? " peer" : " us ",
                              e.reason);
        } else if constexpr (std::is_same_v<T, PingReceived>) {
          return absl::StrCat("ping ", e.id, e.echoed ? " echoed" : "");
        } else if constexpr (std::is_same_v<T, GoAwayReceived>) {
          return absl::StrCat("goaway ", e.last_good_stream_id, " ", e.status);
        } else if constexpr (std::is_same_v<T, SettingsReceived>) {
          std::string line = absl::StrCat("settings ", e.flags);
          for (const SettingsEntry& s : e.entries) {
            absl::StrAppend(&line, " ", s.flags, "/", s.id, "/", s.value);
          }
          return line;
        } else {
          static_assert(std::is_same_v<T, HeadersReceived>);
          std::string line = absl::StrCat("headers ", e.stream_id);
          for (const auto& [n, v] : e.headers) {
            absl::StrAppend(&line, " ", absl::CEscape(n), "=", absl::CEscape(v));
          }
          return line;
        }
      },
      event);
}

size_t EventDataBytes(const SessionEvent& event) {
  const auto* data = std::get_if<StreamData>(&event);
  return data == nullptr ? 0 : data->data.size();
}

ServerSession NewSession() {
  absl::StatusOr<ServerSession> session = ServerSession::Create();
  FUZZ_CHECK(session.ok(), session.status().ToString());
  return *std::move(session);
}

// Frames of `wire` (bytes the session wrote); aborts unless they all parse, whole.
std::vector<Frame> ParseOutput(absl::string_view wire) {
  FrameParser parser;
  parser.Append(wire);
  std::vector<Frame> frames;
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = parser.Next();
    FUZZ_CHECK(next.ok(),
               absl::StrCat("the session wrote an unparsable frame: ", next.status().ToString()));
    if (!next->has_value()) break;
    frames.push_back(**std::move(next));
  }
  FUZZ_CHECK(parser.buffered_bytes() == 0, absl::StrCat("the session wrote a partial frame (",
                                                        parser.buffered_bytes(), " bytes left)"));
  return frames;
}

// A failed session stays failed: no events, no output, every sender refuses.
void CheckStaysFailed(ServerSession& session, const absl::Status& first) {
  FUZZ_CHECK(session.failed(), first.ToString());
  FUZZ_CHECK(session.goaway_sent(), "failed without a GOAWAY");
  FUZZ_CHECK(first.code() == absl::StatusCode::kInvalidArgument ||
                 first.code() == absl::StatusCode::kInternal,
             first.ToString());
  std::vector<SessionEvent> events;
  absl::Status again = session.Feed(absl::string_view("\x80\x03\x00\x06\x00\x00\x00\x04"
                                                      "\x00\x00\x00\x01",
                                                      12),
                                    &events);
  FUZZ_CHECK(again.code() == absl::StatusCode::kFailedPrecondition, again.ToString());
  FUZZ_CHECK(events.empty(), "events after the session failed");
  const uint32_t id = session.last_stream_id() == 0 ? 1 : session.last_stream_id();
  FUZZ_CHECK(session.SendReply(id).code() == absl::StatusCode::kFailedPrecondition, "SendReply");
  FUZZ_CHECK(session.SendData(id, "x").code() == absl::StatusCode::kFailedPrecondition, "SendData");
  FUZZ_CHECK(session.ResetStream(id).code() == absl::StatusCode::kFailedPrecondition,
             "ResetStream");
  FUZZ_CHECK(session.SendPing().status().code() == absl::StatusCode::kFailedPrecondition,
             "SendPing");
  session.ResetAllStreams();
  session.SendGoAway();
  FUZZ_CHECK(session.pending_output_bytes() == 0, "output after the session failed");
}

// The output of the Feed() that failed ends with the session's GOAWAY.
void CheckEndsWithGoAway(absl::string_view output, const absl::Status& status) {
  FUZZ_CHECK(output.size() >= kGoAwaySize, "no GOAWAY after a session error");
  std::vector<Frame> frames = ParseOutput(output.substr(output.size() - kGoAwaySize));
  FUZZ_CHECK(frames.size() == 1, "no GOAWAY after a session error");
  const auto* goaway = std::get_if<GoAwayFrame>(&frames[0]);
  FUZZ_CHECK(goaway != nullptr,
             absl::StrCat("last frame after a session error: ", DescribeFrame(frames[0])));
  const uint32_t expected = static_cast<uint32_t>(status.code() == absl::StatusCode::kInternal
                                                      ? GoAwayStatus::kInternalError
                                                      : GoAwayStatus::kProtocolError);
  FUZZ_CHECK(goaway->status == expected,
             absl::StrCat("GOAWAY status ", goaway->status, " for ", status.ToString()));
}

struct Transcript {
  std::vector<std::string> events;
  std::string output;
  absl::Status status;
  uint32_t last_stream_id = 0;
  size_t open_streams = 0;
};

// A and B: nobody answers, so the output holds only PING echoes, RST_STREAMs for refused
// streams and the GOAWAY of a failure.
Transcript FeedUnanswered(absl::string_view input, size_t chunk) {
  ServerSession session = NewSession();
  Transcript t;
  size_t data_bytes = 0, opened = 0;
  for (size_t pos = 0; pos < input.size() && t.status.ok(); pos += chunk) {
    std::vector<SessionEvent> events;
    const bool goaway_before = session.goaway_sent();
    t.status = session.Feed(input.substr(pos, chunk), &events);
    const std::string out = session.TakeOutput();
    t.output += out;
    for (const SessionEvent& e : events) {
      t.events.push_back(Describe(e));
      data_bytes += EventDataBytes(e);
      if (std::holds_alternative<StreamOpened>(e)) ++opened;
    }
    if (!t.status.ok()) {
      if (!goaway_before) CheckEndsWithGoAway(out, t.status);
      CheckStaysFailed(session, t.status);
    }
  }
  FUZZ_CHECK(data_bytes <= input.size(), "more event data than input");
  FUZZ_CHECK(t.output.size() <= input.size() + kGoAwaySize,
             absl::StrCat(t.output.size(), " output bytes for ", input.size(), " input bytes"));
  FUZZ_CHECK(session.open_stream_count() <= opened, "streams open that were never reported");
  FUZZ_CHECK(session.buffered_input_bytes() <= input.size(), "more buffered than received");
  for (const Frame& f : ParseOutput(t.output)) {
    FUZZ_CHECK((std::holds_alternative<PingFrame>(f) || std::holds_alternative<RstStreamFrame>(f) ||
                std::holds_alternative<GoAwayFrame>(f)),
               absl::StrCat("unanswered session wrote ", DescribeFrame(f)));
  }
  t.last_stream_id = session.last_stream_id();
  t.open_streams = session.open_stream_count();
  return t;
}

// Deterministic choices from the input, so that a crash reproduces.
class Choices {
 public:
  explicit Choices(absl::string_view input) {
    for (char c : input) state_ = (state_ ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  }
  uint64_t Next() {  // splitmix64
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_ = 0xcbf29ce484222325ull;
};

// What session C's peer must see of every stream, checked on the output.
struct Responder {
  ServerSession session = NewSession();
  std::set<uint32_t> replied, closed_by_us, unidirectional;
  std::vector<uint32_t> deferred;

  void Answer(const std::vector<SessionEvent>& events, Choices& choices) {
    // Replies held back from the previous chunk (a server slow to accept a stream).
    for (uint32_t id : deferred) {
      if (session.failed()) return;
      const bool was_open = session.IsStreamOpen(id);
      absl::Status s = session.SendReply(id);
      FUZZ_CHECK(s.ok() == was_open, absl::StrCat("late SendReply ", id, ": ", s.ToString()));
      if (s.ok()) replied.insert(id);
    }
    deferred.clear();
    for (const SessionEvent& e : events) {
      if (session.failed()) return;
      if (const auto* open = std::get_if<StreamOpened>(&e)) {
        FUZZ_CHECK(open->stream_id % 2 == 1, absl::StrCat("opened even stream ", open->stream_id));
        if (open->unidirectional) unidirectional.insert(open->stream_id);
        // Later frames of the same Feed may have closed it already (a client RST_STREAM).
        const bool was_open = session.IsStreamOpen(open->stream_id);
        const uint64_t choice = choices.Next() % 8;
        if (choice == 0) {
          // Refused, as an unknown streamtype is; harmless on a stream already gone.
          absl::Status s = session.ResetStream(open->stream_id);
          FUZZ_CHECK(s.ok(), s.ToString());
          continue;
        }
        if (choice == 1) {
          // Answered later; data for it meanwhile may not be sent (no SYN_REPLY yet).
          deferred.push_back(open->stream_id);
          continue;
        }
        absl::Status s = session.SendReply(open->stream_id);
        FUZZ_CHECK(s.ok() == was_open,
                   absl::StrCat("SendReply ", open->stream_id, ": ", s.ToString()));
        if (s.ok()) replied.insert(open->stream_id);
      } else if (const auto* data = std::get_if<StreamData>(&e)) {
        Send(data->stream_id, data->data, choices.Next() % 4 == 0);
      } else if (const auto* fin = std::get_if<StreamHalfClosed>(&e)) {
        Send(fin->stream_id, "", /*fin=*/true);
      } else if (std::holds_alternative<GoAwayReceived>(e)) {
        // The client leaves: reset what is left, then our GOAWAY (remote_command.cc).
        session.ResetAllStreams();
        session.SendGoAway();
      }
    }
    if (!session.failed() && !session.goaway_sent() && session.received_first_frame() &&
        choices.Next() % 4 == 0) {
      absl::StatusOr<uint32_t> ping = session.SendPing();
      FUZZ_CHECK(ping.ok() && *ping % 2 == 0, ping.status().ToString());
    }
  }

  // Data (never empty) or a FIN, refused exactly when the stream may not carry it.
  void Send(uint32_t id, absl::string_view data, bool fin) {
    const bool can = session.IsStreamOpen(id) && replied.contains(id) &&
                     !closed_by_us.contains(id) && !unidirectional.contains(id);
    absl::Status s = session.SendData(id, data, fin);
    FUZZ_CHECK(s.ok() == can, absl::StrCat("SendData ", id, " can=", can, ": ", s.ToString()));
    if (s.ok() && fin) closed_by_us.insert(id);
  }
};

// C: answered, cut at up to four points.
void FeedAnswered(absl::string_view input) {
  Choices choices(input);
  Responder r;
  std::vector<size_t> cuts = {0, input.size()};
  for (int i = 0; i < 4; ++i) cuts.push_back(choices.Next() % (input.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  std::string output;
  absl::Status status;
  for (size_t i = 0; i + 1 < cuts.size() && status.ok(); ++i) {
    if (cuts[i] == cuts[i + 1]) continue;
    std::vector<SessionEvent> events;
    const bool goaway_before = r.session.goaway_sent();
    status = r.session.Feed(input.substr(cuts[i], cuts[i + 1] - cuts[i]), &events);
    if (!status.ok()) {
      const std::string out = r.session.TakeOutput();
      if (!goaway_before) CheckEndsWithGoAway(out, status);
      output += out;
      CheckStaysFailed(r.session, status);  // so nothing follows the GOAWAY
      break;
    }
    r.Answer(events, choices);
    output += r.session.TakeOutput();
  }
  if (status.ok()) {
    r.session.ResetAllStreams();
    r.session.SendGoAway();
    output += r.session.TakeOutput();
    FUZZ_CHECK(output.size() >= kGoAwaySize, "no GOAWAY at the end");
  }

  // What a client would read.
  absl::StatusOr<HeaderDecompressor> inflater = HeaderDecompressor::Create();
  FUZZ_CHECK(inflater.ok(), inflater.status().ToString());
  std::set<uint32_t> seen_reply, seen_fin, seen_rst;
  bool goaway = false;
  for (const Frame& f : ParseOutput(output)) {
    if (const auto* reply = std::get_if<SynReplyFrame>(&f)) {
      absl::StatusOr<std::string> plain = inflater->Decompress(reply->header_block);
      FUZZ_CHECK(plain.ok(), plain.status().ToString());
      FUZZ_CHECK(*plain == absl::string_view("\0\0\0\0", 4), "SYN_REPLY block not empty");
      FUZZ_CHECK(reply->stream_id % 2 == 1 && reply->stream_id <= r.session.last_stream_id(),
                 DescribeFrame(f));
      FUZZ_CHECK(seen_reply.insert(reply->stream_id).second, "two SYN_REPLYs: " + DescribeFrame(f));
      FUZZ_CHECK(!seen_rst.contains(reply->stream_id), "SYN_REPLY after RST: " + DescribeFrame(f));
    } else if (const auto* data = std::get_if<DataFrame>(&f)) {
      FUZZ_CHECK(seen_reply.contains(data->stream_id),
                 "DATA before SYN_REPLY: " + DescribeFrame(f));
      FUZZ_CHECK(!seen_fin.contains(data->stream_id), "DATA after FIN: " + DescribeFrame(f));
      FUZZ_CHECK(!seen_rst.contains(data->stream_id), "DATA after RST: " + DescribeFrame(f));
      if (data->flags & kFlagFin) seen_fin.insert(data->stream_id);
    } else if (const auto* rst = std::get_if<RstStreamFrame>(&f)) {
      // Refused SYN_STREAMs are reset whatever their ID; the parser keeps it nonzero.
      FUZZ_CHECK(rst->stream_id != 0 && rst->status != 0, DescribeFrame(f));
      seen_rst.insert(rst->stream_id);
    } else if (std::holds_alternative<GoAwayFrame>(f)) {
      FUZZ_CHECK(!goaway, "two GOAWAYs");
      goaway = true;
    } else {
      FUZZ_CHECK((std::holds_alternative<PingFrame>(f)), "the session wrote " + DescribeFrame(f));
    }
  }
  FUZZ_CHECK(goaway, "the session ended without GOAWAY");
  if (status.ok()) {
    // After ResetAllStreams only streams whose sending side is closed (our FIN, or
    // unidirectional) may be left, waiting for the client's FIN.
    FUZZ_CHECK(r.session.open_stream_count() <= r.closed_by_us.size() + r.unidirectional.size(),
               "streams left open");
  }
}

}  // namespace
}  // namespace berth::cri::spdy::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace berth::cri::spdy::fuzz;  // NOLINT(build/namespaces)
  if (size == 0) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const Transcript whole = FeedUnanswered(input, input.size());
  const Transcript bytewise = FeedUnanswered(input, 1);
  FUZZ_CHECK(whole.events == bytewise.events, "events depend on how the input is split");
  FUZZ_CHECK(whole.output == bytewise.output, "output depends on how the input is split");
  FUZZ_CHECK(whole.status == bytewise.status,
             whole.status.ToString() + " vs " + bytewise.status.ToString());
  FUZZ_CHECK(whole.last_stream_id == bytewise.last_stream_id &&
                 whole.open_streams == bytewise.open_streams,
             "state depends on how the input is split");
  FeedAnswered(input);
  return 0;
}
