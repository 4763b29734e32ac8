// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/k8s_remotecommand.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::cri::streaming {
namespace {

constexpr absl::string_view kTextPlain = "text/plain; charset=utf-8";
constexpr size_t kMaxResizeObjectBytes = size_t{64} * 1024;

// Length of the valid UTF-8 sequence at s[i] (Go's utf8.DecodeRuneInString rules: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 if it is invalid.
size_t Utf8SequenceLength(absl::string_view s, size_t i, uint32_t* code_point) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char b0 = byte(0);
  const auto cont = [&](size_t k, unsigned char lo, unsigned char hi) {
    return i + k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  if (b0 < 0x80) {
    *code_point = b0;
    return 1;
  }
  if (b0 < 0xc2) return 0;
  if (b0 < 0xe0) {
    if (!cont(1, 0x80, 0xbf)) return 0;
    *code_point = ((b0 & 0x1fu) << 6) | (byte(1) & 0x3fu);
    return 2;
  }
  if (b0 < 0xf0) {
    const unsigned char lo = b0 == 0xe0 ? 0xa0 : 0x80;
    const unsigned char hi = b0 == 0xed ? 0x9f : 0xbf;
    if (!cont(1, lo, hi) || !cont(2, 0x80, 0xbf)) return 0;
    *code_point = ((b0 & 0x0fu) << 12) | ((byte(1) & 0x3fu) << 6) | (byte(2) & 0x3fu);
    return 3;
  }
  if (b0 < 0xf5) {
    const unsigned char lo = b0 == 0xf0 ? 0x90 : 0x80;
    const unsigned char hi = b0 == 0xf4 ? 0x8f : 0xbf;
    if (!cont(1, lo, hi) || !cont(2, 0x80, 0xbf) || !cont(3, 0x80, 0xbf)) return 0;
    *code_point = ((b0 & 0x07u) << 18) | ((byte(1) & 0x3fu) << 12) | ((byte(2) & 0x3fu) << 6) |
                  (byte(3) & 0x3fu);
    return 4;
  }
  return 0;
}

// Go's strconv.Quote, close enough for an informational message.
std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  out.push_back('"');
  return out;
}

// net/textproto's canonical form: "x-stream-protocol-version" -> "X-Stream-Protocol-Version".
std::string CanonicalHeaderName(absl::string_view name) {
  std::string out(name);
  bool upper = true;
  for (char& c : out) {
    c = upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c);
    upper = c == '-';
  }
  return out;
}

// Go's %#v of an http.Header (keys sorted, as fmt prints maps).
std::string GoHeaderDump(const spdy::Headers& headers) {
  std::map<std::string, std::vector<std::string>> grouped;
  for (const auto& [name, value] : headers) grouped[CanonicalHeaderName(name)].push_back(value);
  std::vector<std::string> entries;
  for (const auto& [name, values] : grouped) {
    std::vector<std::string> quoted;
    for (const std::string& v : values) quoted.push_back(GoQuote(v));
    entries.push_back(absl::StrCat(GoQuote(name), ":[]string{", absl::StrJoin(quoted, ", "), "}"));
  }
  return absl::StrCat("http.Header{", absl::StrJoin(entries, ", "), "}");
}

std::string FirstHeader(const spdy::Headers& headers, absl::string_view name) {
  std::optional<absl::string_view> v = spdy::FindHeader(headers, name);
  return v.has_value() ? std::string(*v) : std::string();
}

// Go's %v of a []string: "[a b c]".
template <typename Container>
std::string GoList(const Container& items) {
  return absl::StrCat("[", absl::StrJoin(items, " "), "]");
}

std::string StatusMessage(const ExecStatus& status) {
  switch (status.kind) {
    case ExecStatus::Kind::kSuccess:
      return "";
    case ExecStatus::Kind::kNonZeroExit:
      return absl::StrCat("command terminated with non-zero exit code: ", status.error);
    case ExecStatus::Kind::kInternalError:
      return absl::StrCat("Internal error occurred: ", status.error);
  }
  return "";
}

// SAX consumer of one resize object: tracks Width/Height at the top level and fails the
// way Go's decoder fails for a uint16 field.
class ResizeSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return Scalar(/*type_ok=*/true); }
  bool boolean(bool) override { return Scalar(false); }
  bool number_integer(number_integer_t v) override {
    if (!Targeted()) return true;
    if (v < 0 || v > 0xffff) return Fail(absl::StrCat(v, " does not fit in a uint16"));
    Assign(static_cast<uint16_t>(v));
    return true;
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (!Targeted()) return true;
    if (v > 0xffff) return Fail(absl::StrCat(v, " does not fit in a uint16"));
    Assign(static_cast<uint16_t>(v));
    return true;
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (!Targeted()) return true;
    return Fail(absl::StrCat(text, " is not an unsigned integer"));
  }
  bool string(string_t&) override { return Scalar(false); }
  bool binary(binary_t&) override { return Scalar(false); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      top_level_object_ = true;
    } else if (Targeted()) {
      return Fail("an object is not a number");
    }
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1) {
      target_ = absl::EqualsIgnoreCase(k, "width")    ? Target::kWidth
                : absl::EqualsIgnoreCase(k, "height") ? Target::kHeight
                                                      : Target::kNone;
    }
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return Fail("an array is not a terminal size object");
    if (Targeted()) return Fail("an array is not a number");
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    error_ = absl::StrCat("malformed JSON at byte ", position, ": ", e.what());
    return false;
  }

  const std::string& error() const { return error_; }
  bool top_level_object() const { return top_level_object_; }
  TerminalSize size() const { return size_; }

 private:
  enum class Target { kNone, kWidth, kHeight };

  bool Targeted() const { return depth_ == 1 && target_ != Target::kNone; }
  bool Scalar(bool type_ok) {
    if (!Targeted() || type_ok) return true;
    return Fail("the value is not a number");
  }
  void Assign(uint16_t v) { (target_ == Target::kWidth ? size_.width : size_.height) = v; }
  bool Fail(std::string why) {
    error_ = Targeted() ? absl::StrCat(target_ == Target::kWidth ? "Width" : "Height", ": ", why)
                        : std::move(why);
    return false;
  }

  int depth_ = 0;
  Target target_ = Target::kNone;
  bool top_level_object_ = false;
  TerminalSize size_;
  std::string error_;
};

// The length of the complete JSON object or array at the start of `s` (which starts with
// '{' or '['), or 0 if it is not complete yet. Strings are skipped with their escapes; the
// JSON itself is validated later.
size_t CompleteValueLength(absl::string_view s) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return 0;
}

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

// ---- Stream types ----

absl::string_view StreamTypeName(StreamType type) {
  switch (type) {
    case StreamType::kError:
      return "error";
    case StreamType::kStdin:
      return "stdin";
    case StreamType::kStdout:
      return "stdout";
    case StreamType::kStderr:
      return "stderr";
    case StreamType::kResize:
      return "resize";
    case StreamType::kData:
      return "data";
  }
  return "unknown";
}

std::optional<StreamType> ParseStreamType(absl::string_view value) {
  for (StreamType t : {StreamType::kError, StreamType::kStdin, StreamType::kStdout,
                       StreamType::kStderr, StreamType::kResize, StreamType::kData}) {
    if (value == StreamTypeName(t)) return t;
  }
  return std::nullopt;
}

std::optional<StreamType> GetStreamType(const spdy::Headers& headers) {
  std::optional<absl::string_view> value = spdy::FindHeader(headers, kStreamTypeHeader);
  if (!value.has_value()) return std::nullopt;
  return ParseStreamType(*value);
}

// ---- Protocols ----

std::optional<RemoteCommandProtocol> ParseRemoteCommandProtocol(absl::string_view name) {
  if (name == kStreamProtocolV4) return RemoteCommandProtocol::kV4;
  if (name == kStreamProtocolV3) return RemoteCommandProtocol::kV3;
  if (name == kStreamProtocolV2) return RemoteCommandProtocol::kV2;
  if (name == kStreamProtocolV1) return RemoteCommandProtocol::kV1;
  return std::nullopt;
}

absl::string_view RemoteCommandProtocolName(RemoteCommandProtocol protocol) {
  switch (protocol) {
    case RemoteCommandProtocol::kV1:
      return kStreamProtocolV1;
    case RemoteCommandProtocol::kV2:
      return kStreamProtocolV2;
    case RemoteCommandProtocol::kV3:
      return kStreamProtocolV3;
    case RemoteCommandProtocol::kV4:
      return kStreamProtocolV4;
  }
  return "";
}

int ExpectedRemoteCommandStreams(RemoteCommandProtocol protocol, bool has_stdin, bool has_stdout,
                                 bool has_stderr, bool tty) {
  const bool resize = tty && protocol >= RemoteCommandProtocol::kV3;
  return 1 + int{has_stdin} + int{has_stdout} + int{has_stderr} + int{resize};
}

std::vector<std::string> SplitProtocolHeaderValues(absl::Span<const std::string> lines) {
  std::vector<std::string> out;
  for (const std::string& line : lines) {
    for (absl::string_view item : absl::StrSplit(line, ',')) {
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) out.emplace_back(item);
    }
  }
  return out;
}

std::optional<std::string> NegotiateProtocol(absl::Span<const std::string> client_protocols,
                                             absl::Span<const absl::string_view> server_protocols) {
  for (const std::string& client : client_protocols) {
    if (std::find(server_protocols.begin(), server_protocols.end(), client) !=
        server_protocols.end()) {
      return client;
    }
  }
  return std::nullopt;
}

UpgradeDecision DecideSpdyUpgrade(const spdy::Headers& request_headers,
                                  absl::Span<const absl::string_view> server_protocols) {
  UpgradeDecision d;
  std::vector<std::string> lines;
  for (const auto& [name, value] : request_headers) {
    if (absl::EqualsIgnoreCase(name, kProtocolVersionHeader)) lines.push_back(value);
  }
  const std::vector<std::string> client = SplitProtocolHeaderValues(lines);
  const auto text_error = [&](int code, absl::string_view phrase, const std::string& message) {
    d.status_code = code;
    d.reason_phrase = phrase;
    d.headers.emplace(d.headers.begin(), "Content-Type", kTextPlain);
    // X-Content-Type-Options sorts before X-Stream-Protocol-Version, after the rest.
    auto pos = std::find_if(d.headers.begin(), d.headers.end(),
                            [](const auto& h) { return h.first == kProtocolVersionHeader; });
    d.headers.emplace(pos, "X-Content-Type-Options", "nosniff");
    d.body = absl::StrCat(message, "\n");
    return d;
  };
  if (client.empty()) {
    return text_error(400, "Bad Request",
                      absl::StrCat("unable to upgrade: ", kProtocolVersionHeader, " is required"));
  }
  std::optional<std::string> chosen = NegotiateProtocol(client, server_protocols);
  if (!chosen.has_value()) {
    for (absl::string_view p : server_protocols) {
      d.headers.emplace_back(kAcceptedProtocolVersionsHeader, p);
    }
    return text_error(
        403, "Forbidden",
        absl::StrCat("unable to upgrade: unable to negotiate protocol: client supports ",
                     GoList(client), ", server accepts ", GoList(server_protocols)));
  }
  d.headers.emplace_back(kProtocolVersionHeader, *chosen);
  const std::string connection = absl::AsciiStrToLower(FirstHeader(request_headers, "Connection"));
  const std::string upgrade = absl::AsciiStrToLower(FirstHeader(request_headers, "Upgrade"));
  if (!absl::StrContains(connection, "upgrade") || !absl::StrContains(upgrade, "spdy/3.1")) {
    return text_error(400, "Bad Request",
                      absl::StrCat("unable to upgrade: missing upgrade headers in request: ",
                                   GoHeaderDump(request_headers)));
  }
  d.status_code = 101;
  d.reason_phrase = "Switching Protocols";
  d.protocol = *std::move(chosen);
  d.headers.insert(d.headers.begin(), {{"Connection", "Upgrade"}, {"Upgrade", "SPDY/3.1"}});
  return d;
}

std::string SwitchingProtocolsResponse(absl::string_view protocol) {
  return absl::StrCat(
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: SPDY/3.1\r\n",
      kProtocolVersionHeader, ": ", protocol, "\r\n\r\n");
}

// ---- Exit status ----

std::string ExecExitErrorText(absl::Span<const std::string> cmd, int exit_code) {
  return absl::StrCat("error executing command ", GoList(cmd), ", exit code ", exit_code);
}

std::string GoJsonQuote(absl::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            out += "\\u00";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    uint32_t code_point = 0;
    const size_t n = Utf8SequenceLength(text, i, &code_point);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (code_point == 0x2028 || code_point == 0x2029) {
      absl::StrAppend(&out, "\\u", absl::Hex(code_point, absl::kZeroPad4));
    } else {
      out.append(text.data() + i, n);
    }
    i += n;
  }
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> V4StatusJson(const ExecStatus& status, StatusFlavor flavor) {
  std::string out = flavor == StatusFlavor::kMetav1 ? "{\"metadata\":{}," : "{";
  switch (status.kind) {
    case ExecStatus::Kind::kSuccess:
      out += "\"status\":\"Success\"}";
      return out;
    case ExecStatus::Kind::kNonZeroExit:
      if (status.exit_code < 1 || status.exit_code > 255) {
        return absl::InvalidArgumentError(absl::StrCat(
            "exit code ", status.exit_code,
            " cannot be reported as NonZeroExitCode: client-go accepts 1-255 only (report 0 "
            "as Success; map signals to 128+N as shells do)"));
      }
      absl::StrAppend(&out,
                      "\"status\":\"Failure\",\"message\":", GoJsonQuote(StatusMessage(status)),
                      ",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":"
                      "\"ExitCode\",\"message\":\"",
                      status.exit_code, "\"}]}}");
      return out;
    case ExecStatus::Kind::kInternalError:
      absl::StrAppend(&out,
                      "\"status\":\"Failure\",\"message\":", GoJsonQuote(StatusMessage(status)),
                      ",\"reason\":\"InternalError\",");
      if (flavor == StatusFlavor::kMetav1) {
        absl::StrAppend(&out, "\"details\":{\"causes\":[{",
                        status.error.empty() ? "" : "\"message\":",
                        status.error.empty() ? "" : GoJsonQuote(status.error), "}]},");
      }
      out += "\"code\":500}";
      return out;
  }
  return absl::InternalError("unknown ExecStatus kind");
}

absl::StatusOr<std::string> ErrorStreamPayload(const ExecStatus& status,
                                               RemoteCommandProtocol protocol,
                                               StatusFlavor flavor) {
  if (protocol >= RemoteCommandProtocol::kV4) return V4StatusJson(status, flavor);
  return StatusMessage(status);
}

// ---- Resize ----

void ResizeDecoder::Append(absl::string_view bytes) {
  if (error_.ok()) buffer_.append(bytes.data(), bytes.size());
}

absl::StatusOr<std::optional<TerminalSize>> ResizeDecoder::Next() {
  while (error_.ok()) {
    size_t start = 0;
    while (start < buffer_.size() && IsJsonSpace(buffer_[start])) ++start;
    buffer_.erase(0, start);
    if (buffer_.empty()) return std::nullopt;
    if (buffer_[0] == 'n') {  // null: Go decodes it into a zero size, which is ignored
      if (buffer_.size() < 4) return std::nullopt;
      if (buffer_.compare(0, 4, "null") != 0) break;
      buffer_.erase(0, 4);
      continue;
    }
    if (buffer_[0] != '{') {
      error_ = absl::InvalidArgumentError(absl::StrCat(
          "resize stream: expected a JSON object like {\"Width\":80,\"Height\":24}, got \"",
          absl::CHexEscape(buffer_.substr(0, 16)), "\"; no more resizes are processed"));
      return error_;
    }
    const size_t length = CompleteValueLength(buffer_);
    if (length == 0) {
      if (buffer_.size() > kMaxResizeObjectBytes) {
        error_ = absl::InvalidArgumentError(absl::StrCat("resize stream: an object longer than ",
                                                         kMaxResizeObjectBytes,
                                                         " bytes; no more resizes are processed"));
        return error_;
      }
      return std::nullopt;
    }
    ResizeSax sax;
    const std::string object = buffer_.substr(0, length);
    buffer_.erase(0, length);
    if (!nlohmann::json::sax_parse(object, &sax)) {
      error_ = absl::InvalidArgumentError(absl::StrCat("resize stream: ", sax.error(), " in \"",
                                                       absl::CHexEscape(object),
                                                       "\"; no more resizes are processed"));
      return error_;
    }
    const TerminalSize size = sax.size();
    if (size.width == 0 || size.height == 0) continue;  // ignored, as containerd does
    return std::optional<TerminalSize>(size);
  }
  if (error_.ok()) {
    error_ = absl::InvalidArgumentError(absl::StrCat("resize stream: malformed JSON \"",
                                                     absl::CHexEscape(buffer_.substr(0, 16)),
                                                     "\"; no more resizes are processed"));
  }
  return error_;
}

// ---- Port forward ----

absl::StatusOr<PortForwardStream> ParsePortForwardStream(const spdy::Headers& headers,
                                                         uint32_t stream_id) {
  std::optional<absl::string_view> port = spdy::FindHeader(headers, kPortHeader);
  if (!port.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("port-forward stream ", stream_id, ": the \"",
                                                   kPortHeader, "\" header is required"));
  }
  uint64_t port_number = 0;
  const bool digits_only =
      !port->empty() && std::all_of(port->begin(), port->end(), absl::ascii_isdigit);
  if (!digits_only || !absl::SimpleAtoi(*port, &port_number) || port_number > 0xffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("port-forward stream ", stream_id, ": invalid port header \"",
                     absl::CHexEscape(*port), "\" (a decimal port 1-65535 is expected)"));
  }
  if (port_number == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("port-forward stream ", stream_id, ": port 0 is not a valid port"));
  }
  std::optional<absl::string_view> type_name = spdy::FindHeader(headers, kStreamTypeHeader);
  if (!type_name.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("port-forward stream ", stream_id, ": the \"",
                                                   kStreamTypeHeader, "\" header is required"));
  }
  std::optional<StreamType> type = ParseStreamType(*type_name);
  if (type != StreamType::kError && type != StreamType::kData) {
    return absl::InvalidArgumentError(
        absl::StrCat("port-forward stream ", stream_id, ": invalid stream type \"",
                     absl::CHexEscape(*type_name), "\" (\"error\" or \"data\" expected)"));
  }
  PortForwardStream out;
  out.type = *type;
  out.port = static_cast<uint16_t>(port_number);
  std::optional<absl::string_view> request_id = spdy::FindHeader(headers, kRequestIdHeader);
  if (request_id.has_value()) {
    out.request_id = std::string(*request_id);
  } else {
    // Very old clients: the pair is (error stream N, data stream N + 2).
    out.request_id = absl::StrCat(*type == StreamType::kError ? stream_id : stream_id - 2);
  }
  return out;
}

std::string PortForwardErrorText(uint16_t port, absl::string_view pod_sandbox_id,
                                 absl::string_view error) {
  return absl::StrCat("error forwarding port ", port, " to pod ", pod_sandbox_id,
                      ", uid : ", error);
}

}  // namespace berth::cri::streaming
