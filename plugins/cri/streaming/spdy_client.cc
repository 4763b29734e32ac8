// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/spdy_client.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace berth::cri::spdy {
namespace {

absl::Status NotOpen(uint32_t stream_id, absl::string_view action) {
  return absl::FailedPreconditionError(
      absl::StrCat("cannot ", action, " on SPDY stream ", stream_id,
                   ": the stream is not open (never created, reset, or closed both ways)"));
}

}  // namespace

absl::StatusOr<ClientSession> ClientSession::Create(const SessionOptions& options) {
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
  return ClientSession(options, std::move(compressor), std::move(decompressor));
}

ClientSession::ClientSession(const SessionOptions& options, HeaderCompressor compressor,
                             HeaderDecompressor decompressor)
    : options_(options),
      parser_(options.max_control_payload),
      compressor_(std::move(compressor)),
      decompressor_(std::move(decompressor)) {}

bool ClientSession::IsStreamReplied(uint32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it != streams_.end() && it->second.replied;
}

absl::Status ClientSession::Feed(absl::string_view bytes, std::vector<ClientEvent>* events) {
  if (!error_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("SPDY session already failed: ", error_.message()));
  }
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
        (void)AppendFrame(GoAwayFrame{last_server_stream_id_, static_cast<uint32_t>(code)},
                          &output_);
        goaway_sent_ = true;
      }
      return status;
    }
  }
}

absl::Status ClientSession::HandleFrame(Frame frame, std::vector<ClientEvent>* events) {
  return std::visit(
      [&](auto& f) -> absl::Status {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, DataFrame>) {
          HandleData(f, events);
        } else if constexpr (std::is_same_v<T, SynReplyFrame>) {
          return HandleSynReply(f, events);
        } else if constexpr (std::is_same_v<T, SynStreamFrame>) {
          // The block is part of the compression stream even though the stream is refused.
          ASSIGN_OR_RETURN(absl::StatusOr<Headers> headers,
                           decompressor_.DecompressHeaders(f.header_block, options_.header_limits));
          (void)headers;
          if (goaway_sent_) return absl::OkStatus();
          last_server_stream_id_ = std::max(last_server_stream_id_, f.stream_id);
          const bool even = f.stream_id % 2 == 0;
          RejectStream(f.stream_id, even ? RstStatus::kRefusedStream : RstStatus::kProtocolError,
                       even ? absl::StrCat("the server opened stream ", f.stream_id,
                                           "; a streaming client accepts none")
                            : absl::StrCat("the server opened stream ", f.stream_id,
                                           " with an odd ID (server streams have even IDs)"),
                       events);
        } else if constexpr (std::is_same_v<T, HeadersFrame>) {
          ASSIGN_OR_RETURN(absl::StatusOr<Headers> headers,
                           decompressor_.DecompressHeaders(f.header_block, options_.header_limits));
          auto it = streams_.find(f.stream_id);
          if (it == streams_.end() || it->second.remote_closed) return absl::OkStatus();
          if (!headers.ok()) {
            RejectStream(f.stream_id, RstStatus::kProtocolError,
                         absl::StrCat("bad HEADERS block: ", headers.status().message()), events);
            return absl::OkStatus();
          }
          events->push_back(HeadersReceived{f.stream_id, *std::move(headers)});
          if (f.flags & kFlagFin) HandleRemoteFin(f.stream_id, events);
        } else if constexpr (std::is_same_v<T, RstStreamFrame>) {
          if (streams_.erase(f.stream_id) > 0) {
            events->push_back(StreamReset{f.stream_id, f.status, /*by_peer=*/true, {}});
          }
        } else if constexpr (std::is_same_v<T, SettingsFrame>) {
          events->push_back(SettingsReceived{f.flags, std::move(f.entries)});
        } else if constexpr (std::is_same_v<T, PingFrame>) {
          const bool ours = f.id % 2 == 1;
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

absl::Status ClientSession::HandleSynReply(SynReplyFrame& frame, std::vector<ClientEvent>* events) {
  // Decompress first, always: a failure is a session error, and even a reply about to be
  // refused must advance the zlib context.
  ASSIGN_OR_RETURN(absl::StatusOr<Headers> headers,
                   decompressor_.DecompressHeaders(frame.header_block, options_.header_limits));
  auto it = streams_.find(frame.stream_id);
  if (it == streams_.end()) return absl::OkStatus();  // reset or finished: ignored (§5.4)
  if (it->second.replied) {
    RejectStream(frame.stream_id, RstStatus::kStreamInUse,
                 absl::StrCat("second SYN_REPLY for stream ", frame.stream_id), events);
    return absl::OkStatus();
  }
  if (!headers.ok()) {
    RejectStream(frame.stream_id, RstStatus::kProtocolError,
                 absl::StrCat("bad SYN_REPLY header block: ", headers.status().message()), events);
    return absl::OkStatus();
  }
  it->second.replied = true;
  const bool fin = (frame.flags & kFlagFin) != 0;
  events->push_back(StreamReplied{frame.stream_id, *std::move(headers), fin});
  if (fin) {
    HandleRemoteFin(frame.stream_id, events);
  } else {
    MaybeForget(frame.stream_id);
  }
  return absl::OkStatus();
}

void ClientSession::HandleData(DataFrame& frame, std::vector<ClientEvent>* events) {
  auto it = streams_.find(frame.stream_id);
  // Unknown, reset or finished streams, and data after the server's FIN, are ignored (§5.4).
  if (it == streams_.end() || it->second.remote_closed) return;
  if (!frame.data.empty()) {
    events->push_back(StreamData{frame.stream_id, std::move(frame.data)});
  }
  if (frame.flags & kFlagFin) HandleRemoteFin(frame.stream_id, events);
}

void ClientSession::HandleRemoteFin(uint32_t stream_id, std::vector<ClientEvent>* events) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end() || it->second.remote_closed) return;
  it->second.remote_closed = true;
  events->push_back(StreamHalfClosed{stream_id});
  MaybeForget(stream_id);
}

void ClientSession::RejectStream(uint32_t stream_id, RstStatus status, std::string reason,
                                 std::vector<ClientEvent>* events) {
  // The ID came from a frame the parser accepted: nonzero and 31 bits, so this encodes.
  (void)AppendFrame(RstStreamFrame{stream_id, static_cast<uint32_t>(status)}, &output_);
  streams_.erase(stream_id);
  events->push_back(
      StreamReset{stream_id, static_cast<uint32_t>(status), /*by_peer=*/false, std::move(reason)});
}

void ClientSession::MaybeForget(uint32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end() && it->second.local_closed && it->second.remote_closed &&
      it->second.replied) {
    streams_.erase(it);
  }
}

absl::StatusOr<uint32_t> ClientSession::OpenStream(const Headers& headers, bool fin) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  if (goaway_sent_ || goaway_received_) {
    return absl::FailedPreconditionError(
        "cannot open a SPDY stream: the session is ending (GOAWAY sent or received)");
  }
  if (next_stream_id_ > kMaxStreamId) {
    return absl::ResourceExhaustedError(
        "cannot open a SPDY stream: the session has used all 2^30 client stream IDs; open a new "
        "connection");
  }
  RETURN_IF_ERROR(CheckNoHopByHopHeaders(headers, /*is_syn_stream=*/true));
  ASSIGN_OR_RETURN(const std::string plain, EncodeHeaderBlock(headers));
  absl::StatusOr<std::string> block = compressor_.Compress(plain);
  if (!block.ok()) {
    // Our compression stream is broken: nothing with a header block can be sent any more.
    error_ = block.status();
    SendGoAway(GoAwayStatus::kInternalError);
    return error_;
  }
  const uint32_t id = next_stream_id_;
  SynStreamFrame frame;
  frame.stream_id = id;
  frame.flags = fin ? kFlagFin : 0;
  frame.header_block = *std::move(block);
  RETURN_IF_ERROR(AppendFrame(frame, &output_));
  next_stream_id_ += 2;
  streams_[id].local_closed = fin;
  return id;
}

absl::Status ClientSession::SendData(uint32_t stream_id, absl::string_view data, bool fin) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return NotOpen(stream_id, "send DATA");
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

absl::Status ClientSession::ResetStream(uint32_t stream_id, RstStatus status) {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  if (streams_.contains(stream_id)) {
    RETURN_IF_ERROR(
        AppendFrame(RstStreamFrame{stream_id, static_cast<uint32_t>(status)}, &output_));
    streams_.erase(stream_id);
    return absl::OkStatus();
  }
  if (stream_id % 2 == 1 && stream_id < next_stream_id_) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat("cannot reset SPDY stream ", stream_id, ": this client never opened it"));
}

void ClientSession::ResetAllStreams(RstStatus status) {
  if (!error_.ok()) return;
  std::vector<uint32_t> ids;
  ids.reserve(streams_.size());
  for (const auto& [id, stream] : streams_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) {
    (void)AppendFrame(RstStreamFrame{id, static_cast<uint32_t>(status)}, &output_);
  }
  streams_.clear();
}

void ClientSession::SendGoAway(GoAwayStatus status) {
  if (goaway_sent_) return;
  (void)AppendFrame(GoAwayFrame{last_server_stream_id_, static_cast<uint32_t>(status)}, &output_);
  goaway_sent_ = true;
}

absl::StatusOr<uint32_t> ClientSession::SendPing() {
  if (!error_.ok()) return absl::FailedPreconditionError("SPDY session has failed");
  const uint32_t id = next_ping_id_;
  next_ping_id_ = next_ping_id_ >= 0xfffffffdu ? 1 : next_ping_id_ + 2;
  RETURN_IF_ERROR(AppendFrame(PingFrame{id}, &output_));
  return id;
}

std::string ClientSession::TakeOutput() {
  std::string out;
  out.swap(output_);
  return out;
}

}  // namespace berth::cri::spdy
