// SPDX-License-Identifier: Apache-2.0
// The client side of a SPDY/3.1 session as the Kubernetes streaming clients use it
// (kubernetes-streaming.md §5; framing in spdy_frame.h, header blocks in
// spdy_header_block.h). The mirror image of ServerSession (spdy.h), and as transport-agnostic:
// the caller writes what TakeOutput() returns, in order, hands the bytes it reads to Feed(),
// and acts on the events.
//
//   ClientSession session = *ClientSession::Create();
//   ... the 101 response has been read ...
//   ASSIGN_OR_RETURN(uint32_t error, session.OpenStream({{"streamtype", "error"}}));
//   WriteAll(socket, session.TakeOutput());
//   std::vector<ClientEvent> events;
//   absl::Status fed = session.Feed(bytes_read, &events);   // StreamReplied{error}, ...
//   WriteAll(socket, session.TakeOutput());   // also when Feed failed: it holds the GOAWAY
//
// Rules the session follows, as the Go client (moby/spdystream) does:
// - Our streams have odd, increasing IDs from 1, SYN_STREAM with priority 0, no flags (§5.3).
//   One zlib context per direction for the whole connection (§5.2).
// - Data may be sent on a stream as soon as its SYN_STREAM is out (the server knows the stream
//   from then on); waiting for the SYN_REPLY first, as client-go does, is the caller's choice.
// - DATA that arrives before the stream's SYN_REPLY is delivered (the Go client drops it; our
//   server never sends it, and losing output is worse than accepting it).
// - A second SYN_REPLY for a stream is answered with RST_STREAM STREAM_IN_USE
//   (spdy-3.1.md §2.6.2); a reply block that decompresses but does not parse with
//   RST_STREAM PROTOCOL_ERROR. Both are reported as StreamReset{by_peer=false}.
// - Streams the server tries to open (SYN_STREAM; Kubernetes servers never do) are refused
//   with RST_STREAM REFUSED_STREAM, after their header block was decompressed.
// - PINGs with even IDs (the server's) are echoed at once; odd IDs answer our SendPing().
// - Flow control does not exist (§5.5): WINDOW_UPDATE and SETTINGS are accepted and ignored.
// - Frames for unknown or finished streams are ignored (§5.4).
// - A frame the parser rejects or a header block that does not decompress is a session
//   error: Feed() returns it and queues GOAWAY(PROTOCOL_ERROR, or INTERNAL_ERROR for zlib).
//
// Thread safety: none; the caller serialises every call (e.g. under its own mutex).
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
#include "plugins/cri/streaming/spdy.h"
#include "plugins/cri/streaming/spdy_frame.h"
#include "plugins/cri/streaming/spdy_header_block.h"

namespace berth::cri::spdy {

// The server accepted one of our streams (SYN_REPLY; upstream sends an empty block). If
// `fin` is set, a StreamHalfClosed for the same stream follows at once.
struct StreamReplied {
  uint32_t stream_id = 0;
  Headers headers;
  bool fin = false;
};

// Feed() reports, in wire order: StreamReplied; StreamData (DATA on one of our streams);
// StreamHalfClosed (the server's FIN: EOF of that stream); StreamReset (by_peer: the server's
// RST_STREAM; otherwise we reset it for a protocol violation); PingReceived (echoed: the
// server's, already answered; otherwise the answer to SendPing()); GoAwayReceived (the
// server is done: treat every stream still open as ended, §5.7); SettingsReceived;
// HeadersReceived. The types are those of the server session (spdy.h).
using ClientEvent = std::variant<StreamReplied, StreamData, StreamHalfClosed, StreamReset,
                                 PingReceived, GoAwayReceived, SettingsReceived, HeadersReceived>;

class ClientSession {
 public:
  // Uses the same options as the server session; max_data_frame_payload splits what
  // SendData() sends.
  [[nodiscard]] static absl::StatusOr<ClientSession> Create(const SessionOptions& options = {});

  ClientSession(ClientSession&&) noexcept = default;
  ClientSession& operator=(ClientSession&&) noexcept = default;

  // Processes bytes read from the connection (any split), appending events to `events`.
  // On a session error the events before it are still appended, GOAWAY is queued and the
  // error (INVALID_ARGUMENT for server faults, INTERNAL for zlib failures) is returned; every
  // later call returns FAILED_PRECONDITION.
  [[nodiscard]] absl::Status Feed(absl::string_view bytes, std::vector<ClientEvent>* events);

  // SYN_STREAM with the next odd ID and `headers` (names lower-cased; hop-by-hop names such
  // as host or connection are refused, INVALID_ARGUMENT). `fin`: we will send nothing on it.
  // FAILED_PRECONDITION after either GOAWAY; RESOURCE_EXHAUSTED when the IDs run out.
  [[nodiscard]] absl::StatusOr<uint32_t> OpenStream(const Headers& headers, bool fin = false);

  // DATA on one of our open streams whose sending side is open, split into frames of at most
  // options.max_data_frame_payload bytes; `fin` half-closes our side (with empty data: one
  // empty DATA frame with FIN, as the Go client's Close() does). Empty data without FIN
  // sends nothing. FAILED_PRECONDITION if the stream is unknown, reset or already
  // half-closed by us.
  [[nodiscard]] absl::Status SendData(uint32_t stream_id, absl::string_view data, bool fin = false);
  [[nodiscard]] absl::Status CloseStream(uint32_t stream_id) {
    return SendData(stream_id, {}, /*fin=*/true);
  }

  // RST_STREAM (CANCEL, as client-go's RemoveStreams) for one of our streams that is still
  // open; closes both directions. OK and nothing sent for a stream already finished; NOT_FOUND
  // for an ID we never opened.
  [[nodiscard]] absl::Status ResetStream(uint32_t stream_id, RstStatus status = RstStatus::kCancel);
  // The end of a session from our side (§5.7): RST_STREAM, in ID order, for every stream
  // that is still open in either direction.
  void ResetAllStreams(RstStatus status = RstStatus::kCancel);

  // GOAWAY with last-good = the last stream the server opened (always 0 with Kubernetes
  // servers). Sent once; later calls do nothing. Send it last.
  void SendGoAway(GoAwayStatus status = GoAwayStatus::kOk);

  // A PING of our own (odd IDs from 1, as client-go sends every 5 s). Returns the ID; the
  // echo arrives as PingReceived{echoed=false}. FAILED_PRECONDITION after a session error.
  [[nodiscard]] absl::StatusOr<uint32_t> SendPing();

  // The bytes to write, in order; the internal buffer is emptied.
  [[nodiscard]] std::string TakeOutput();
  size_t pending_output_bytes() const { return output_.size(); }

  bool goaway_sent() const { return goaway_sent_; }
  bool goaway_received() const { return goaway_received_; }
  bool failed() const { return !error_.ok(); }
  // Open: created, and not reset or closed in both directions.
  bool IsStreamOpen(uint32_t stream_id) const { return streams_.contains(stream_id); }
  // The server's SYN_REPLY for an open stream has arrived.
  bool IsStreamReplied(uint32_t stream_id) const;
  size_t open_stream_count() const { return streams_.size(); }

 private:
  struct Stream {
    bool replied = false;
    bool local_closed = false;   // we sent FIN
    bool remote_closed = false;  // the server sent FIN
  };

  ClientSession(const SessionOptions& options, HeaderCompressor compressor,
                HeaderDecompressor decompressor);

  absl::Status HandleFrame(Frame frame, std::vector<ClientEvent>* events);
  absl::Status HandleSynReply(SynReplyFrame& frame, std::vector<ClientEvent>* events);
  void HandleData(DataFrame& frame, std::vector<ClientEvent>* events);
  void HandleRemoteFin(uint32_t stream_id, std::vector<ClientEvent>* events);
  void RejectStream(uint32_t stream_id, RstStatus status, std::string reason,
                    std::vector<ClientEvent>* events);
  void MaybeForget(uint32_t stream_id);

  SessionOptions options_;
  FrameParser parser_;
  HeaderCompressor compressor_;
  HeaderDecompressor decompressor_;
  absl::flat_hash_map<uint32_t, Stream> streams_;
  uint32_t next_stream_id_ = 1;
  uint32_t last_server_stream_id_ = 0;  // highest SYN_STREAM ID the server sent (refused)
  uint32_t next_ping_id_ = 1;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  absl::Status error_;
  std::string output_;
};

}  // namespace berth::cri::spdy
