// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/spdy.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace berth::cri::spdy {
namespace {

absl::Status NotOpen(uint32_t stream_id, absl::string_view action) {
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot ", action, " on SPDY stream ", stream_id,
      ": the stream is not open (never created by the client, reset, or closed both ways)"));
}

}  // namespace

absl::StatusOr<ServerSession> ServerSession::Create(const SessionOptions& options) {
  if (options.max_data_frame_payload == 0 || options.max_data_frame_payload > kMaxFramePayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("SPDY session: max_data_frame_payload ", options.max_data_frame_payload,
                     " is out of range (1 to ", kMaxFramePayload, ")"));
  }
  ASSIGN_OR_RETURN(HeaderCompressor compressor,
                   HeaderCompressor::Create(options.header_compression_level,
                                            options.header_compression_mem_level));
  ASSIGN_OR_RETURN(HeaderDecompressor decompressor,
                   HeaderDecompressor::Create(options.max_decompressed_header_block));
  return ServerSession(options, std::move(compressor), std::move(decompressor));
}

ServerSession::ServerSession(const SessionOptions& options, HeaderCompressor compressor,
                             HeaderDecompressor decompressor)
    : options_(options),
      parser_(options.max_control_payload),
      compressor_(std::move(compressor)),
      decompressor_(std::move(decompressor)) {}

absl::Status ServerSession::Feed(absl::string_view bytes, std::vector<SessionEvent>* events) {
  if (!error_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("SPDY session already failed: ", error_.message()));
  }
  // Any byte from the client proves it has read our 101 response (§4.4).
  if (!bytes.empty()) received_first_frame_ = true;
  parser_.Append(bytes);
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = parser_.Next();
    absl::Status status = next.status();
    if (status.ok()) {
      if (!next->has_value()) return absl::OkStatus();
      status = HandleFrame(std::move(**next), events);
    }
    if (!status.ok()) {
      error_ = status;
      if (!goaway_sent_) {
        const GoAwayStatus code = status.code() == absl::StatusCode::kInternal
                                      ? GoAwayStatus::kInternalError
                                      : GoAwayStatus::kProtocolError;
        (void)AppendFrame(GoAwayFrame{last_stream_id_, static_cast<uint32_t>(code)}, &output_);
        goaway_sent_ = true;
      }
      return status;
    }
  }
}

absl::Status ServerSession::HandleFrame(Frame frame, std::vector<SessionEvent>* events) {
  return std::visit(
      [&](auto& f) -> absl::Status {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, DataFrame>) {
          HandleData(f, events);
        } else if constexpr (std::is_same_v<T, SynStreamFrame>) {
          return HandleSynStream(f, events);
        } else if constexpr (std::is_same_v<T, SynReplyFrame> || std::is_same_v<T, HeadersFrame>) {
          // The block is part of the compression stream whatever happens to the frame.
          ASSIGN_OR_RETURN(absl::StatusOr<Headers> headers,
                           decompressor_.DecompressHeaders(f.header_block, options_.header_limits));
          if constexpr (std::is_same_v<T, HeadersFrame>) {
            auto it = streams_.find(f.stream_id);
            if (it == streams_.end() || it->second.remote_closed) return absl::OkStatus();
            if (!headers.ok()) {
              RejectStream(f.stream_id, RstStatus::kProtocolError,
                           absl::StrCat("bad HEADERS block: ", headers.status().message()), events);
              return absl::OkStatus();
            }
            events->push_back(HeadersReceived{f.stream_id, *std::move(headers)});
            if (f.flags & kFlagFin) HandleRemoteFin(f.stream_id, events);
          }
          // SYN_REPLY: we never create streams, so it answers nothing; ignored like Go does.
        } else if constexpr (std::is_same_v<T, RstStreamFrame>) {
          if (streams_.erase(f.stream_id) > 0) {
            events->push_back(StreamReset{f.stream_id, f.status, /*by_peer=*/true, {}});
          }
        } else if constexpr (std::is_same_v<T, SettingsFrame>) {
          events->push_back(SettingsReceived{f.flags, std::move(f.entries)});
        } else if constexpr (std::is_same_v<T, PingFrame>) {
          const bool ours = f.id % 2 == 0;
          if (!ours) RETURN_IF_ERROR(AppendFrame(f, &output_));
          events->push_back(PingReceived{f.id, /*echoed=*/!ours});
        } else if constexpr (std::is_same_v<T, GoAwayFrame>) {
          goaway_received_ = true;
          events->push_back(GoAwayReceived{f.last_good_stream_id, f.status});
        } else {
          static_assert(std::is_same_v<T, WindowUpdateFrame>);
          // No flow control (§5.5): accepted and ignored.
        }
        return absl::OkStatus();
      },
      frame);
}

absl::Status ServerSession::HandleSynStream(SynStreamFrame& frame,
                                            std::vector<SessionEvent>* events) {
  // Decompress first, always: a failure here is a session error, and even a stream about to
  // be refused must advance the zlib context.
  ASSIGN_OR_RETURN(absl::StatusOr<Headers> headers,
                   decompressor_.DecompressHeaders(frame.header_block, options_.header_limits));
  const uint32_t id = frame.stream_id;
  if (goaway_sent_) return absl::OkStatus();  // spdy-3.1.md §2.6.6: ignore new streams
  if (id % 2 == 0) {
    RejectStream(id, RstStatus::kProtocolError,
                 absl::StrCat("SYN_STREAM with even stream ID ", id,
                              " (client-initiated streams have odd IDs)"),
                 events);
    return absl::OkStatus();
  }
  if (id <= last_stream_id_) {
    RejectStream(id, RstStatus::kProtocolError,
                 streams_.contains(id)
                     ? absl::StrCat("SYN_STREAM repeats the ID of open stream ", id)
                     : absl::StrCat("SYN_STREAM ID ", id, " is not above the last one (",
                                    last_stream_id_, "); stream IDs must increase"),
                 events);
    return absl::OkStatus();
  }
  last_stream_id_ = id;
  if (!headers.ok()) {
    RejectStream(id, RstStatus::kProtocolError,
                 absl::StrCat("bad SYN_STREAM header block: ", headers.status().message()), events);
    return absl::OkStatus();
  }
  if (absl::Status hop = CheckNoHopByHopHeaders(*headers, /*is_syn_stream=*/true); !hop.ok()) {
    RejectStream(id, RstStatus::kProtocolError, std::string(hop.message()), events);
    return absl::OkStatus();
  }
  Stream& stream = streams_[id];
  stream.remote_closed = (frame.flags & kFlagFin) != 0;
  stream.local_closed = (frame.flags & kFlagUnidirectional) != 0;
  events->push_back(StreamOpened{id, *std::move(headers), frame.priority, stream.remote_closed,
                                 stream.local_closed});
  if (stream.remote_closed) events->push_back(StreamHalfClosed{id});
  return absl::OkStatus();
}

void ServerSession::HandleData(DataFrame& frame, std::vector<SessionEvent>* events) {
  auto it = streams_.find(frame.stream_id);
  // Unknown, reset or closed streams, and data after the client's FIN, are ignored: the Go
  // peer does the same, and a lenient server is safest (§5.4).
  if (it == streams_.end() || it->second.remote_closed) return;
  if (!frame.data.empty()) {
    events->push_back(StreamData{frame.stream_id, std::move(frame.data)});
  }
  if (frame.flags & kFlagFin) HandleRemoteFin(frame.stream_id, events);
}

void ServerSession::HandleRemoteFin(uint32_t stream_id, std::vector<SessionEvent>* events) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end() || it->second.remote_closed) return;
  it->second.remote_closed = true;
  events->push_back(StreamHalfClosed{stream_id});
  MaybeForget(stream_id);
}

void ServerSession::RejectStream(uint32_t stream_id, RstStatus status, std::string reason,
                                 std::vector<SessionEvent>* events) {
  // The ID came from a frame the parser accepted: nonzero and 31 bits, so this encodes.
  (void)AppendFrame(RstStreamFrame{stream_id, static_cast<uint32_t>(status)}, &output_);
  streams_.erase(stream_id);
  events->push_back(
      StreamReset{stream_id, static_cast<uint32_t>(status), /*by_peer=*/false, std::move(reason)});
}

void ServerSession::MaybeForget(uint32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end() && it->second.local_closed && it->second.remote_closed &&
      it->second.replied) {
    streams_.erase(it);
  }
}

absl::Status ServerSession::SendReply(uint32_t stream_id, const Headers& headers, bool fin) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return NotOpen(stream_id, "send SYN_REPLY");
  if (it->second.replied) {
    return absl::FailedPreconditionError(
        absl::StrCat("SPDY stream ", stream_id, " already has its SYN_REPLY"));
  }
  RETURN_IF_ERROR(CheckNoHopByHopHeaders(headers, /*is_syn_stream=*/false));
  ASSIGN_OR_RETURN(const std::string plain, EncodeHeaderBlock(headers));
  absl::StatusOr<std::string> block = compressor_.Compress(plain);
  if (!block.ok()) {
    // Our compression stream is broken: nothing with a header block can be sent any more.
    error_ = block.status();
    SendGoAway(GoAwayStatus::kInternalError);
    return error_;
  }
  RETURN_IF_ERROR(AppendFrame(
      SynReplyFrame{stream_id, static_cast<uint8_t>(fin ? kFlagFin : 0), *std::move(block)},
      &output_));
  it->second.replied = true;
  if (fin) it->second.local_closed = true;
  MaybeForget(stream_id);
  return absl::OkStatus();
}

absl::Status ServerSession::SendData(uint32_t stream_id, absl::string_view data, bool fin) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return NotOpen(stream_id, "send DATA");
  if (!it->second.replied) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot send DATA on SPDY stream ", stream_id,
                     " before its SYN_REPLY (the Go client would silently drop it)"));
  }
  if (it->second.local_closed) {
    return absl::FailedPreconditionError(absl::StrCat("cannot send DATA on SPDY stream ", stream_id,
                                                      ": our side is already half-closed"));
  }
  if (data.empty() && !fin) return absl::OkStatus();
  const size_t chunk = options_.max_data_frame_payload;
  size_t offset = 0;
  do {
    const size_t n = std::min(chunk, data.size() - offset);
    const bool last = offset + n == data.size();
    DataFrame frame{stream_id, static_cast<uint8_t>(last && fin ? kFlagFin : 0),
                    std::string(data.substr(offset, n))};
    RETURN_IF_ERROR(AppendFrame(frame, &output_));
    offset += n;
  } while (offset < data.size());
  if (fin) {
    it->second.local_closed = true;
    MaybeForget(stream_id);
  }
  return absl::OkStatus();
}

absl::Status ServerSession::ResetStream(uint32_t stream_id, RstStatus status) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  if (streams_.contains(stream_id)) {
    RETURN_IF_ERROR(
        AppendFrame(RstStreamFrame{stream_id, static_cast<uint32_t>(status)}, &output_));
    streams_.erase(stream_id);
    return absl::OkStatus();
  }
  if (stream_id % 2 == 1 && stream_id <= last_stream_id_) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat("cannot reset SPDY stream ", stream_id, ": the client never opened it"));
}

void ServerSession::ResetAllStreams(RstStatus status) {
  if (!error_.ok()) return;
  std::vector<uint32_t> ids;
  for (const auto& [id, stream] : streams_) {
    if (!stream.local_closed) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) {
    (void)AppendFrame(RstStreamFrame{id, static_cast<uint32_t>(status)}, &output_);
    streams_.erase(id);
  }
}

void ServerSession::SendGoAway(GoAwayStatus status) {
  if (goaway_sent_) return;
  (void)AppendFrame(GoAwayFrame{last_stream_id_, static_cast<uint32_t>(status)}, &output_);
  goaway_sent_ = true;
}

absl::StatusOr<uint32_t> ServerSession::SendPing() {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  if (!received_first_frame_) {
    return absl::FailedPreconditionError(
        "cannot send a SPDY PING before the client's first frame: the Go client may still be "
        "reading the 101 response and would lose the frame (kubernetes-streaming.md §4.4)");
  }
  const uint32_t id = next_ping_id_;
  next_ping_id_ = next_ping_id_ >= 0xfffffffeu ? 2 : next_ping_id_ + 2;
  RETURN_IF_ERROR(AppendFrame(PingFrame{id}, &output_));
  return id;
}

std::string ServerSession::TakeOutput() {
  std::string out;
  out.swap(output_);
  return out;
}

}  // namespace berth::cri::spdy
