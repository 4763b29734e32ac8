// SPDX-License-Identifier: Apache-2.0
// The server side of a SPDY/3.1 session as the Kubernetes streaming protocols use it
// (kubernetes-streaming.md §4.4 and §5; framing in spdy_frame.h, header blocks in
// spdy_header_block.h). Transport-agnostic: the caller reads the socket and hands the bytes
// to Feed(), acts on the events, calls the Send*/Reset* methods, and writes what
// TakeOutput() returns, in order.
//
//   ServerSession session = *ServerSession::Create();
//   ... write the 101 response; then nothing until the client has spoken (below) ...
//   std::vector<SessionEvent> events;
//   absl::Status fed = session.Feed(bytes_read, &events);
//   for (SessionEvent& e : events) {
//     if (auto* open = std::get_if<StreamOpened>(&e)) RETURN_IF_ERROR(session.SendReply(...));
//     ...
//   }
//   WriteAll(socket, session.TakeOutput());   // also when Feed failed: it holds the GOAWAY
//   if (!fed.ok()) close the connection;
//
// Rules the session enforces or follows:
// - It never produces output on its own: only Feed() (PING echoes, RST_STREAM for bad
//   streams, GOAWAY on a session error) and the explicit calls do. The server MUST NOT
//   write anything after the 101 response until the client's first frame has arrived
//   (§4.4: the Go client may swallow those bytes); SendPing() refuses before that, and the
//   caller must not call the other senders before it either (with no stream opened there
//   is nothing they could legitimately send, except a GOAWAY on shutdown).
// - Client streams have odd, increasing IDs (§5.3). A SYN_STREAM with an even ID, or an ID
//   not above the last one, is answered with RST_STREAM PROTOCOL_ERROR, as the Go server
//   does; so is a block that decompresses but does not parse (repeated or empty name,
//   limits, hop-by-hop headers): stream errors, reported as StreamReset{by_peer=false}.
//   Every header block is decompressed all the same (the zlib context must advance).
// - A stream must get its SYN_REPLY before any DATA (§5.3); SendData() refuses otherwise.
// - Flow control does not exist (§5.5): WINDOW_UPDATE is accepted and ignored, nothing
//   ever waits for a window, and the session never sends WINDOW_UPDATE or SETTINGS.
// - PINGs with odd IDs (the client's) are echoed at once; even IDs answer our own.
// - Frames for unknown or closed streams (DATA, RST_STREAM, SYN_REPLY, HEADERS) are
//   ignored, as the Go peer ignores them (§5.4); frames after either GOAWAY are still
//   processed, so late RST_STREAM/GOAWAY from the client are harmless (§10.4).
// - A frame the parser rejects (spdy_frame.h) or a header block that does not decompress is
//   a session error: Feed() returns the error and queues GOAWAY(PROTOCOL_ERROR, or
//   INTERNAL_ERROR for a zlib failure) (spdy-3.1.md §2.4.1); the caller writes the output
//   and closes the connection.
//
// Thread safety: none. A session is driven by one thread at a time (the caller serialises
// Feed and the senders, e.g. on the connection's event loop or under its own mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "plugins/cri/streaming/spdy_frame.h"
#include "plugins/cri/streaming/spdy_header_block.h"

namespace berth::cri::spdy {

struct SessionOptions {
  // Largest control payload accepted from the peer, clamped to [8192, 2^24-1].
  uint32_t max_control_payload = kMaxFramePayload;
  // SendData() splits data into DATA frames of at most this many bytes (1 to 2^24-1;
  // Kubernetes copies output in 32 KiB chunks).
  uint32_t max_data_frame_payload = 32 * 1024;
  // Our header compressor (SYN_REPLY blocks). See HeaderCompressor::Create.
  int header_compression_level = 9;
  int header_compression_mem_level = 8;
  // The peer's header blocks.
  HeaderBlockLimits header_limits;
  size_t max_decompressed_header_block = 4 << 20;
};

// ---- Events Feed() reports, in wire order. ----

// A client SYN_STREAM that was accepted: answer it with SendReply() (an empty header block,
// as upstream does) or reject it with ResetStream(). If `fin` is set, a StreamHalfClosed
// for the same stream follows at once.
struct StreamOpened {
  uint32_t stream_id = 0;
  Headers headers;  // names lower case, e.g. {"streamtype", "error"}
  uint8_t priority = 0;
  bool fin = false;
  bool unidirectional = false;  // we may not send on it
};

// DATA on an open stream (one event per non-empty DATA frame).
struct StreamData {
  uint32_t stream_id = 0;
  std::string data;
};

// The client half-closed the stream (FIN): no more data will come on it (stdin EOF).
struct StreamHalfClosed {
  uint32_t stream_id = 0;
};

// The stream is closed in both directions. `by_peer`: the client sent RST_STREAM with
// `status`. Otherwise the session itself reset it for a protocol violation (`reason`
// says which; the RST_STREAM is already in the output), e.g. a repeated stream ID or a bad
// header block; such a stream may never have been reported as opened.
struct StreamReset {
  uint32_t stream_id = 0;
  uint32_t status = 0;
  bool by_peer = true;
  std::string reason;
};

// A PING arrived. Odd IDs (the client's) have been echoed already (`echoed`); even IDs are
// answers to SendPing().
struct PingReceived {
  uint32_t id = 0;
  bool echoed = false;
};

// The client is leaving: treat it as the end of the session (§5.7): streams see EOF, the
// server stops writing, resets what is left and sends its own GOAWAY.
struct GoAwayReceived {
  uint32_t last_good_stream_id = 0;
  uint32_t status = 0;
};

// SETTINGS from the client (Go never sends them). Informational; nothing is applied.
struct SettingsReceived {
  uint8_t flags = 0;
  std::vector<SettingsEntry> entries;
};

// A HEADERS frame on an open stream (Kubernetes never sends them). A FIN on it is reported
// as StreamHalfClosed after this event.
struct HeadersReceived {
  uint32_t stream_id = 0;
  Headers headers;
};

using SessionEvent = std::variant<StreamOpened, StreamData, StreamHalfClosed, StreamReset,
                                  PingReceived, GoAwayReceived, SettingsReceived, HeadersReceived>;

class ServerSession {
 public:
  [[nodiscard]] static absl::StatusOr<ServerSession> Create(const SessionOptions& options = {});

  ServerSession(ServerSession&&) noexcept = default;
  ServerSession& operator=(ServerSession&&) noexcept = default;

  // Processes bytes read from the connection (any split), appending events to `events`.
  // On a session error the events before it are still appended, GOAWAY(PROTOCOL_ERROR) is
  // queued, and the error (INVALID_ARGUMENT for peer faults, INTERNAL for zlib failures) is
  // returned; every later call returns FAILED_PRECONDITION.
  [[nodiscard]] absl::Status Feed(absl::string_view bytes, std::vector<SessionEvent>* events);

  // SYN_REPLY for an open client stream, once, before any DATA. Upstream sends an empty
  // block; headers are optional (names lower-cased; hop-by-hop names are refused).
  [[nodiscard]] absl::Status SendReply(uint32_t stream_id, const Headers& headers = {},
                                       bool fin = false);

  // DATA on a replied stream whose sending side is open, split into frames of at most
  // options.max_data_frame_payload bytes; `fin` half-closes our side (with empty data: one
  // empty DATA frame with FIN, as upstream closes stdout/stderr). Empty data without FIN
  // sends nothing. FAILED_PRECONDITION if the stream is unknown, reset (by either side),
  // not replied to, or already half-closed by us: the data is dropped (§5.4).
  [[nodiscard]] absl::Status SendData(uint32_t stream_id, absl::string_view data, bool fin = false);
  [[nodiscard]] absl::Status CloseStream(uint32_t stream_id) {
    return SendData(stream_id, {}, /*fin=*/true);
  }

  // RST_STREAM (upstream uses CANCEL) for a client stream that is still open, replied or
  // not; closes both directions. A stream that is already finished (reset, or FIN in both
  // directions) is left alone: OK, nothing sent. NOT_FOUND for an ID the client never
  // opened.
  [[nodiscard]] absl::Status ResetStream(uint32_t stream_id, RstStatus status = RstStatus::kCancel);
  // The end of a session (§6.7 step 3, §7.5): RST_STREAM, in ID order, for every stream we
  // have not finished, i.e. whose sending side we have not half-closed (error, stdin,
  // resize...). Streams we closed with FIN (stdout, stderr) are left to the client, as
  // upstream does (trace §10.2 resets only the error stream).
  void ResetAllStreams(RstStatus status = RstStatus::kCancel);

  // GOAWAY with last-good = the highest client stream ID received (0 if none). Sent once;
  // later calls do nothing. Afterwards new SYN_STREAMs are ignored (spdy-3.1.md §2.6.6).
  // Send it last: a Go client stops reading when it sees it.
  void SendGoAway(GoAwayStatus status = GoAwayStatus::kOk);

  // A PING of our own (even IDs from 2). FAILED_PRECONDITION before the client's first
  // frame (§4.4). Returns the ID; the echo arrives as PingReceived.
  [[nodiscard]] absl::StatusOr<uint32_t> SendPing();

  // The bytes to write, in order; the internal buffer is emptied.
  [[nodiscard]] std::string TakeOutput();
  size_t pending_output_bytes() const { return output_.size(); }

  bool received_first_frame() const { return received_first_frame_; }
  bool goaway_sent() const { return goaway_sent_; }
  bool goaway_received() const { return goaway_received_; }
  bool failed() const { return !error_.ok(); }
  uint32_t last_stream_id() const { return last_stream_id_; }
  // Open: created, and not reset or closed in both directions.
  bool IsStreamOpen(uint32_t stream_id) const { return streams_.contains(stream_id); }
  size_t open_stream_count() const { return streams_.size(); }
  // Bytes of an incomplete frame held back (useful to log at EOF).
  size_t buffered_input_bytes() const { return parser_.buffered_bytes(); }

 private:
  struct Stream {
    bool replied = false;
    bool local_closed = false;   // we sent FIN (or the stream is unidirectional)
    bool remote_closed = false;  // the client sent FIN
  };

  ServerSession(const SessionOptions& options, HeaderCompressor compressor,
                HeaderDecompressor decompressor);

  absl::Status HandleFrame(Frame frame, std::vector<SessionEvent>* events);
  absl::Status HandleSynStream(SynStreamFrame& frame, std::vector<SessionEvent>* events);
  void HandleData(DataFrame& frame, std::vector<SessionEvent>* events);
  void HandleRemoteFin(uint32_t stream_id, std::vector<SessionEvent>* events);
  void RejectStream(uint32_t stream_id, RstStatus status, std::string reason,
                    std::vector<SessionEvent>* events);
  void MaybeForget(uint32_t stream_id);

  SessionOptions options_;
  FrameParser parser_;
  HeaderCompressor compressor_;
  HeaderDecompressor decompressor_;
  absl::flat_hash_map<uint32_t, Stream> streams_;
  uint32_t last_stream_id_ = 0;
  uint32_t next_ping_id_ = 2;
  bool received_first_frame_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  absl::Status error_;
  std::string output_;
};

}  // namespace berth::cri::spdy
