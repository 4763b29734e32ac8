// SPDX-License-Identifier: Apache-2.0
// Kubernetes pieces on top of the SPDY session, as pure functions: stream types and their
// headers (kubernetes-streaming.md §6.1, §7.2-7.3), the X-Stream-Protocol-Version
// negotiation of the upgrade (§4.2-4.3), the exit status written on the error stream
// (§6.6), and the resize stream decoder (§6.5).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "plugins/cri/streaming/spdy_header_block.h"

namespace berth::cri::streaming {

// ---- Stream headers (names as on the wire: Go lower-cases them) ----

inline constexpr absl::string_view kStreamTypeHeader = "streamtype";
inline constexpr absl::string_view kPortHeader = "port";
inline constexpr absl::string_view kRequestIdHeader = "requestid";

enum class StreamType {
  kError,   // exec/attach and port-forward
  kStdin,   // exec/attach
  kStdout,  // exec/attach
  kStderr,  // exec/attach
  kResize,  // exec/attach, v3 and later with a tty
  kData,    // port-forward
};

// "error", "stdin", "stdout", "stderr", "resize", "data".
absl::string_view StreamTypeName(StreamType type);
// Exact match of a header value (values are case-sensitive, as upstream compares them).
std::optional<StreamType> ParseStreamType(absl::string_view value);
// The streamtype header of a stream: std::nullopt if missing or unknown (upstream accepts
// such an exec stream without counting it, §6.2).
std::optional<StreamType> GetStreamType(const spdy::Headers& headers);

// ---- Protocols (§0 item 2, §4) ----

inline constexpr absl::string_view kStreamProtocolV1 = "channel.k8s.io";
inline constexpr absl::string_view kStreamProtocolV2 = "v2.channel.k8s.io";
inline constexpr absl::string_view kStreamProtocolV3 = "v3.channel.k8s.io";
inline constexpr absl::string_view kStreamProtocolV4 = "v4.channel.k8s.io";
inline constexpr absl::string_view kPortForwardProtocolV1 = "portforward.k8s.io";

inline constexpr absl::string_view kProtocolVersionHeader = "X-Stream-Protocol-Version";
inline constexpr absl::string_view kAcceptedProtocolVersionsHeader =
    "X-Accepted-Stream-Protocol-Versions";

// The server lists upstream uses, in this order (it shows in the 403 headers).
inline constexpr absl::string_view kRemoteCommandProtocols[] = {
    kStreamProtocolV4, kStreamProtocolV3, kStreamProtocolV2, kStreamProtocolV1};
inline constexpr absl::string_view kPortForwardProtocols[] = {kPortForwardProtocolV1};

enum class RemoteCommandProtocol { kV1 = 1, kV2 = 2, kV3 = 3, kV4 = 4 };
std::optional<RemoteCommandProtocol> ParseRemoteCommandProtocol(absl::string_view name);
absl::string_view RemoteCommandProtocolName(RemoteCommandProtocol protocol);

// Streams the server waits for before starting the command (§6.2): error, plus stdin,
// stdout and stderr as the stored CRI request asks, plus resize for a tty from v3 on.
int ExpectedRemoteCommandStreams(RemoteCommandProtocol protocol, bool has_stdin, bool has_stdout,
                                 bool has_stderr, bool tty);

// The client's protocols: every header line split on commas, items trimmed of spaces,
// empty items dropped (upstream's commaSeparatedHeaderValues).
std::vector<std::string> SplitProtocolHeaderValues(absl::Span<const std::string> lines);

// The first protocol in the CLIENT's order that the server supports (§4.2; upstream's
// negotiateProtocol), or std::nullopt.
std::optional<std::string> NegotiateProtocol(absl::Span<const std::string> client_protocols,
                                             absl::Span<const absl::string_view> server_protocols);

// What to answer a SPDY upgrade request, in upstream's order of checks (§4.2):
//   400 no usable X-Stream-Protocol-Version;
//   403 no common protocol, with one X-Accepted-Stream-Protocol-Versions line per server
//       protocol;
//   400 Connection without "upgrade" or Upgrade without "spdy/3.1" (first line of each,
//       case-insensitive substring), carrying the X-Stream-Protocol-Version already chosen;
//   101 with Connection, Upgrade and X-Stream-Protocol-Version.
// Headers are in the order Go writes them (sorted by name); the HTTP layer adds Date and
// Content-Length to an error response. Bodies are text/plain, one line ending in "\n" as
// Go's http.Error writes them (the 403 body of some upstream versions repeats the line).
struct UpgradeDecision {
  int status_code = 0;  // 101, 400 or 403
  absl::string_view reason_phrase;
  std::string protocol;  // the chosen protocol; empty unless 101
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};
UpgradeDecision DecideSpdyUpgrade(const spdy::Headers& request_headers,
                                  absl::Span<const absl::string_view> server_protocols);

// The exact bytes of the 101 response of §4.3 (status line, three headers, blank line).
std::string SwitchingProtocolsResponse(absl::string_view protocol);

// ---- Exit status on the error stream (§6.6) ----

// Which upstream library's JSON to reproduce: the metav1-based one (containerd <= 2.2, the
// captured traces) always emits "metadata":{} and details for internal errors; the newer
// k8s.io/cri-streaming (containerd >= 2.3, CRI-O) omits both. client-go accepts either.
enum class StatusFlavor { kMetav1, kCriStreaming };

struct ExecStatus {
  enum class Kind { kSuccess, kNonZeroExit, kInternalError };
  Kind kind = Kind::kSuccess;
  int exit_code = 0;  // kNonZeroExit: 1-255
  std::string error;  // kNonZeroExit / kInternalError: the runtime's error text

  static ExecStatus Success() { return {}; }
  // `error` as containerd words it, e.g. ExecExitErrorText(cmd, code).
  static ExecStatus NonZeroExit(int exit_code, std::string error) {
    return {Kind::kNonZeroExit, exit_code, std::move(error)};
  }
  // e.g. "error executing command in container: <err>" or
  // "error attaching to container: <err>".
  static ExecStatus InternalError(std::string error) {
    return {Kind::kInternalError, 0, std::move(error)};
  }
};

// containerd's text for a non-zero exit: "error executing command [sh -c exit 3], exit code
// 3" (Go's %v of the argv).
std::string ExecExitErrorText(absl::Span<const std::string> cmd, int exit_code);

// The v4 metav1.Status JSON, byte for byte as upstream marshals it (Go's encoding/json:
// field order, omitempty, HTML-safe string escaping). INVALID_ARGUMENT for a NonZeroExit
// whose code is outside 1-255 (client-go parses the cause as an 8-bit value; 0 is Success).
[[nodiscard]] absl::StatusOr<std::string> V4StatusJson(const ExecStatus& status,
                                                       StatusFlavor flavor);

// What to write on the error stream for `protocol`: the v4 JSON always; for v1-v3 nothing on
// success and the Status message as plain text on failure.
[[nodiscard]] absl::StatusOr<std::string> ErrorStreamPayload(const ExecStatus& status,
                                                             RemoteCommandProtocol protocol,
                                                             StatusFlavor flavor);

// A string as Go's encoding/json writes it, quotes included: \" \\ \n \r \t, other control
// bytes and < > & as \u00XX, U+2028/U+2029 escaped, invalid UTF-8 as \ufffd.
std::string GoJsonQuote(absl::string_view text);

// ---- Resize (§6.5) ----

struct TerminalSize {
  uint16_t width = 0;
  uint16_t height = 0;
  bool operator==(const TerminalSize&) const = default;
};

// Decodes the resize stream: concatenated JSON objects like {"Width":100,"Height":40}
// with optional whitespace between them, keys matched case-insensitively as Go does,
// unknown keys ignored. Append() the stream's DATA as it arrives, then call Next() until it
// returns std::nullopt. Sizes with a zero dimension (and a JSON null) are skipped, as
// containerd ignores them. An error (a non-object value, malformed JSON, a width or height
// that is not an integer 0-65535, or an object over 64 KiB) is final: stop processing
// resizes, as upstream does.
class ResizeDecoder {
 public:
  void Append(absl::string_view bytes);
  [[nodiscard]] absl::StatusOr<std::optional<TerminalSize>> Next();

 private:
  std::string buffer_;
  absl::Status error_;
};

// ---- Port forward (§7.3) ----

struct PortForwardStream {
  StreamType type = StreamType::kData;  // kError or kData
  uint16_t port = 0;
  std::string request_id;  // pairs the error and data streams of one connection
};

// Applies upstream's acceptance rules to a port-forward SYN_STREAM: `port` present, a
// decimal that fits in 16 bits and is not 0; `streamtype` "error" or "data". A missing
// requestid is derived from the stream ID (error stream: its ID; data stream: ID - 2).
// INVALID_ARGUMENT says which rule failed: reject the stream with RST_STREAM (CANCEL).
[[nodiscard]] absl::StatusOr<PortForwardStream> ParsePortForwardStream(const spdy::Headers& headers,
                                                                       uint32_t stream_id);

// Upstream's error-stream text for a failed forward: "error forwarding port 81 to pod sb1,
// uid : <error>".
std::string PortForwardErrorText(uint16_t port, absl::string_view pod_sandbox_id,
                                 absl::string_view error);

}  // namespace berth::cri::streaming
