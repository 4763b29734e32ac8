// SPDX-License-Identifier: Apache-2.0
// WebSocket in the streaming server (kubernetes-streaming.md §9): the framing and handshake
// as functions, then exec, attach and port-forward through a real StreamingServer on
// 127.0.0.1 driven by the independent client of websocket_client.h, with a scripted process
// and a TCP echo server behind it.
#include "plugins/cri/streaming/websocket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/server.h"
#include "plugins/cri/streaming/tests/echo_server.h"
#include "plugins/cri/streaming/tests/spdy_test_util.h"
#include "plugins/cri/streaming/tests/websocket_client.h"

namespace berth::cri::streaming {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using websocket::Message;
using websocket::MessageReader;
using websocket::Opcode;
using websocket::testing::WebSocketClient;
using testing::EchoServer;
using namespace std::chrono_literals;

constexpr char kSuccess[] = "{\"metadata\":{},\"status\":\"Success\"}";

// ---- Framing ----------------------------------------------------------------------------

// Client frames are masked; the key is arbitrary.
std::string Masked(Opcode op, absl::string_view payload, bool fin = true) {
  return websocket::EncodeFrame(op, payload, fin, 0x37FA213Du);
}

std::vector<Message> ReadAll(MessageReader& r, absl::Status* error = nullptr) {
  std::vector<Message> out;
  for (;;) {
    absl::StatusOr<std::optional<Message>> m = r.Next();
    if (!m.ok()) {
      if (error != nullptr) *error = m.status();
      return out;
    }
    if (!m->has_value()) return out;
    out.push_back(**std::move(m));
  }
}

// RFC 6455 §1.3 (the value is also the one Python's hashlib gives).
TEST(WebSocketFramingTest, AcceptKeyOfRfc6455) {
  absl::StatusOr<std::string> accept = websocket::AcceptKey("dGhlIHNhbXBsZSBub25jZQ==");
  ASSERT_TRUE(accept.ok()) << accept.status();
  EXPECT_EQ(*accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketFramingTest, EncodesTheThreeLengthForms) {
  EXPECT_EQ(websocket::EncodeFrame(Opcode::kText, "Hello"), std::string("\x81\x05Hello"));
  // RFC 6455 §5.7: a masked "Hello".
  EXPECT_EQ(websocket::EncodeFrame(Opcode::kText, "Hello", true, 0x37fa213du),
            std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"));
  const std::string medium = websocket::EncodeFrame(Opcode::kBinary, std::string(256, 'x'));
  EXPECT_EQ(medium.substr(0, 4), std::string("\x82\x7E\x01\x00", 4));
  const std::string large = websocket::EncodeFrame(Opcode::kBinary, std::string(65536, 'x'));
  EXPECT_EQ(large.substr(0, 10), std::string("\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10));
}

TEST(WebSocketFramingTest, ReadsMaskedFramesByteByByteAndJoinsFragments) {
  std::string wire = Masked(Opcode::kBinary, "\x01hel", /*fin=*/false);
  wire += Masked(Opcode::kPing, "p1");  // a control frame between fragments
  wire += Masked(Opcode::kContinuation, "lo", /*fin=*/false);
  wire += Masked(Opcode::kContinuation, std::string(70000, 'z'));
  wire += Masked(Opcode::kText, "caf\xc3\xa9");
  MessageReader r;
  std::vector<Message> got;
  for (char c : wire) {
    r.Append(absl::string_view(&c, 1));
    for (Message& m : ReadAll(r)) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].opcode, Opcode::kPing);
  EXPECT_EQ(got[0].payload, "p1");
  EXPECT_EQ(got[1].opcode, Opcode::kBinary);
  EXPECT_EQ(got[1].payload, "\x01hello" + std::string(70000, 'z'));
  EXPECT_EQ(got[2].opcode, Opcode::kText);
  EXPECT_EQ(got[2].payload, "caf\xc3\xa9");
  EXPECT_EQ(r.buffered(), 0u);
}

struct BadFrameCase {
  const char* name;
  std::string wire;
  uint16_t close_code;
};

TEST(WebSocketFramingTest, BadFramesAreFinalErrorsWithTheirCloseCode) {
  std::string huge_header("\x82\xFF\x00\x00\x00\x00\x10\x00\x00\x00", 10);  // 256 MiB, masked
  std::string top_bit("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x01", 10);
  const std::vector<BadFrameCase> cases = {
      {"unmasked", websocket::EncodeFrame(Opcode::kBinary, "x"), 1002},
      {"reserved bit", "\xC2\x80" + std::string(4, '\0'), 1002},
      {"unknown opcode", "\x83\x80" + std::string(4, '\0'), 1002},
      {"fragmented ping", Masked(Opcode::kPing, "", /*fin=*/false), 1002},
      {"long ping", Masked(Opcode::kPing, std::string(126, 'p')), 1002},
      {"lone continuation", Masked(Opcode::kContinuation, "x"), 1002},
      {"message in a message", Masked(Opcode::kBinary, "a", false) + Masked(Opcode::kBinary, "b"),
       1002},
      {"64-bit length with the top bit", top_bit, 1002},
      {"too big, from the header alone", huge_header, 1009},
      {"text not UTF-8", Masked(Opcode::kText, "\xC0\xAF"), 1007},
      {"close with 1 byte", Masked(Opcode::kClose, "\x03"), 1002},
      {"close with code 1005", Masked(Opcode::kClose, "\x03\xED"), 1002},
      {"close reason not UTF-8", Masked(Opcode::kClose, "\x03\xE8\xFF"), 1007},
  };
  for (const BadFrameCase& c : cases) {
    MessageReader r;
    r.Append(c.wire);
    absl::Status error;
    EXPECT_TRUE(ReadAll(r, &error).empty()) << c.name;
    EXPECT_FALSE(error.ok()) << c.name;
    EXPECT_EQ(websocket::CloseCodeFor(error), c.close_code) << c.name << ": " << error;
    // Final: more bytes do not revive the reader.
    r.Append(Masked(Opcode::kBinary, "ok"));
    EXPECT_FALSE(r.Next().ok()) << c.name;
  }
  // The limit counts every fragment of a message.
  MessageReader small(10);
  small.Append(Masked(Opcode::kBinary, "123456", false) + Masked(Opcode::kContinuation, "78901"));
  absl::Status error;
  ReadAll(small, &error);
  EXPECT_EQ(websocket::CloseCodeFor(error), 1009) << error;
}

// Random bytes in random pieces: the reader never crashes, and an error stays final.
TEST(WebSocketFramingTest, RandomInputIsHandledSafely) {
  std::mt19937 rng(8);
  for (int round = 0; round < 3000; ++round) {
    std::string wire(rng() % 300, '\0');
    for (char& c : wire) c = static_cast<char>(rng());
    // Often a plausible start: masked binary or continuation headers.
    if (round % 2 == 0 && wire.size() > 2) {
      wire[0] = static_cast<char>(0x80 | (rng() % 3));
      wire[1] = static_cast<char>(0x80 | (rng() % 128));
    }
    MessageReader r(1024);
    bool failed = false;
    size_t pos = 0;
    while (pos < wire.size()) {
      const size_t n = std::min<size_t>(wire.size() - pos, 1 + rng() % 40);
      r.Append(absl::string_view(wire).substr(pos, n));
      pos += n;
      absl::Status error;
      ReadAll(r, &error);
      if (failed) {
        EXPECT_FALSE(error.ok());
      }
      failed = failed || !error.ok();
    }
  }
}

TEST(WebSocketFramingTest, Utf8AndClosePayloads) {
  EXPECT_TRUE(websocket::IsValidUtf8("plain \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(websocket::IsValidUtf8("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(websocket::IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(websocket::IsValidUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(websocket::IsValidUtf8("\xE2\x82"));          // cut short
  EXPECT_EQ(websocket::ClosePayload(1000), std::string("\x03\xE8", 2));
  EXPECT_EQ(websocket::ClosePayload(1009, std::string(200, 'r')).size(), 125u);
  absl::StatusOr<websocket::CloseInfo> info =
      websocket::ParseClosePayload(websocket::ClosePayload(4000, "bye"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->code, 4000);
  EXPECT_EQ(info->reason, "bye");
  EXPECT_FALSE(websocket::ParseClosePayload("").value().code.has_value());
}

// ---- Handshake and channel encoding -------------------------------------------------------

HttpRequest UpgradeRequest(const std::string& protocols, const std::string& method = "GET") {
  HttpRequest req;
  req.method = method;
  req.target = "/exec/AAAAAAAA";
  req.version = "HTTP/1.1";
  req.headers = {{"Host", "127.0.0.1"},
                 {"Upgrade", "WebSocket"},
                 {"Connection", "keep-alive, Upgrade"},
                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                 {"Sec-WebSocket-Version", "13"}};
  if (!protocols.empty()) req.headers.emplace_back("Sec-WebSocket-Protocol", protocols);
  return req;
}

TEST(WebSocketHandshakeTest, TheClientsOrderChoosesAmongTheSupportedProtocols) {
  websocket::Handshake h = websocket::CheckUpgrade(
      UpgradeRequest("v5.channel.k8s.io, v4.channel.k8s.io"), websocket::kRemoteCommandProtocols);
  ASSERT_TRUE(h.ok) << h.response;
  EXPECT_EQ(h.protocol, "v5.channel.k8s.io");
  EXPECT_THAT(h.response, StartsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  EXPECT_THAT(h.response, HasSubstr("Upgrade: websocket\r\n"));
  EXPECT_THAT(h.response, HasSubstr("Connection: Upgrade\r\n"));
  EXPECT_THAT(h.response, HasSubstr("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  EXPECT_THAT(h.response, HasSubstr("Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"));

  h = websocket::CheckUpgrade(UpgradeRequest("v3.channel.k8s.io,v4.base64.channel.k8s.io,"
                                             "v4.channel.k8s.io"),
                              websocket::kRemoteCommandProtocols);
  EXPECT_EQ(h.protocol, "v4.base64.channel.k8s.io");
  // No header: "" (binary channel.k8s.io), and no Sec-WebSocket-Protocol in the answer.
  h = websocket::CheckUpgrade(UpgradeRequest(""), websocket::kRemoteCommandProtocols);
  ASSERT_TRUE(h.ok);
  EXPECT_EQ(h.protocol, "");
  EXPECT_THAT(h.response, ::testing::Not(HasSubstr("Sec-WebSocket-Protocol")));
  // v2/v3 are SPDY names only; a port-forward URL does not speak v5.
  h = websocket::CheckUpgrade(UpgradeRequest("v3.channel.k8s.io, v2.channel.k8s.io"),
                              websocket::kRemoteCommandProtocols);
  EXPECT_FALSE(h.ok);
  EXPECT_EQ(h.response.substr(0, 12), "HTTP/1.1 403");
  h = websocket::CheckUpgrade(UpgradeRequest("v5.channel.k8s.io"),
                              websocket::kPortForwardProtocols);
  EXPECT_EQ(h.response.substr(0, 12), "HTTP/1.1 403");
  h = websocket::CheckUpgrade(UpgradeRequest("SPDY/3.1+portforward.k8s.io"),
                              websocket::kPortForwardProtocols);
  EXPECT_TRUE(h.ok);
}

TEST(WebSocketHandshakeTest, BadRequestsAreRefusedAsXNetDoes) {
  EXPECT_THAT(
      websocket::CheckUpgrade(UpgradeRequest("", "POST"), websocket::kRemoteCommandProtocols)
          .response,
      StartsWith("HTTP/1.1 405"));
  HttpRequest old = UpgradeRequest("");
  old.headers[4].second = "8";
  websocket::Handshake h = websocket::CheckUpgrade(old, websocket::kRemoteCommandProtocols);
  EXPECT_THAT(h.response, StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(h.response, HasSubstr("Sec-WebSocket-Version: 13\r\n"));
  HttpRequest bad_key = UpgradeRequest("");
  bad_key.headers[3].second = "c2hvcnQ=";  // "short"
  EXPECT_THAT(websocket::CheckUpgrade(bad_key, websocket::kRemoteCommandProtocols).response,
              StartsWith("HTTP/1.1 400"));

  HttpRequest no_connection = UpgradeRequest("");
  no_connection.headers[2].second = "keep-alive";
  EXPECT_FALSE(websocket::IsWebSocketUpgrade(no_connection));
  EXPECT_TRUE(websocket::IsWebSocketUpgrade(UpgradeRequest("")));
}

TEST(WebSocketHandshakeTest, ChannelMessagesAndPorts) {
  const websocket::ChannelProtocol binary = websocket::ParseChannelProtocol("v4.channel.k8s.io");
  const websocket::ChannelProtocol b64 =
      websocket::ParseChannelProtocol("v4.base64.channel.k8s.io");
  EXPECT_EQ(websocket::EncodeChannelMessage(binary, 1, "hi"), std::string("\x82\x03\x01hi"));
  EXPECT_EQ(websocket::EncodeChannelMessage(b64, 1, "hi"), std::string("\x81\x05") + "1aGk=");
  EXPECT_EQ(websocket::EncodeChannelMessage(binary, 3, ""), std::string("\x82\x01\x03"));
  absl::StatusOr<websocket::ChannelMessage> m = websocket::DecodeChannelMessage(b64, "0aGk=");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->channel, 0);
  EXPECT_EQ(m->data, "hi");
  EXPECT_FALSE(websocket::DecodeChannelMessage(b64, "0!!").ok());
  EXPECT_TRUE(websocket::ParseChannelProtocol("v5.channel.k8s.io").stream_close);
  EXPECT_EQ(websocket::ParseChannelProtocol("").status, RemoteCommandProtocol::kV1);
  EXPECT_EQ(websocket::ParseChannelProtocol("v5.channel.k8s.io").status,
            RemoteCommandProtocol::kV4);

  EXPECT_THAT(websocket::PortsFromQuery("/portforward/T?port=80&x=1&port=8080%2C9090").value(),
              ElementsAre(80, 8080, 9090));
  EXPECT_EQ(websocket::PortsFromQuery("/portforward/T").status().message(),
            "query parameter \"port\" is required");
  EXPECT_FALSE(websocket::PortsFromQuery("/portforward/T?port=").ok());
  EXPECT_FALSE(websocket::PortsFromQuery("/portforward/T?port=0").ok());
  EXPECT_FALSE(websocket::PortsFromQuery("/portforward/T?port=65536").ok());
  EXPECT_FALSE(websocket::PortsFromQuery("/portforward/T?port=http").ok());
}

// ---- Sessions through a real server ------------------------------------------------------

// What the test scripts and observes of the one process behind a session. With `echo`, stdin
// comes back on stdout, and the end of stdin ends the process with `exit_code`.
struct Script {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  bool echo = true;
  std::deque<StreamedProcess::Chunk> output;
  bool output_done = false;
  int exit_code = 0;
  std::string stdin_data;
  bool stdin_closed = false;
  std::vector<TerminalSize> sizes;
  bool detached = false;

  void Emit(StreamType stream, std::string data) {
    std::lock_guard<std::mutex> lock(mu);
    output.push_back({stream, std::move(data)});
    cv.notify_all();
  }
  void Exit(int code) {
    std::lock_guard<std::mutex> lock(mu);
    exit_code = code;
    output_done = true;
    cv.notify_all();
  }
  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return pred(); });
  }
};

class FakeProcess : public StreamedProcess {
 public:
  explicit FakeProcess(std::shared_ptr<Script> s) : s_(std::move(s)) {}
  absl::StatusOr<std::optional<Chunk>> Read() override {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->cv.wait(lock, [&] { return !s_->output.empty() || s_->output_done || s_->detached; });
    if (s_->detached || s_->output.empty()) return std::nullopt;
    Chunk c = std::move(s_->output.front());
    s_->output.pop_front();
    return c;
  }
  absl::StatusOr<int> Wait() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->detached) return absl::CancelledError("detached");
    return s_->exit_code;
  }
  absl::Status WriteStdin(absl::string_view data) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->detached) return absl::CancelledError("detached");
    s_->stdin_data.append(data.data(), data.size());
    if (s_->echo) s_->output.push_back({StreamType::kStdout, std::string(data)});
    s_->cv.notify_all();
    return absl::OkStatus();
  }
  void CloseStdin() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->stdin_closed = true;
    if (s_->echo) s_->output_done = true;
    s_->cv.notify_all();
  }
  void Resize(TerminalSize size) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->sizes.push_back(size);
    s_->cv.notify_all();
  }
  void Detach() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->detached = true;
    s_->cv.notify_all();
  }

 private:
  std::shared_ptr<Script> s_;
};

absl::StatusOr<sdk::UniqueFd> DialLoopback(int port) {
  sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(absl::StrCat("dial tcp 127.0.0.1:", port, ": refused"));
  }
  return fd;
}

class WebSocketServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(StreamingServerOptions{}); }

  void StartServer(const StreamingServerOptions& options) {
    if (server_) server_->Stop();
    auto start = [this]() -> absl::StatusOr<std::unique_ptr<StreamedProcess>> {
      if (!backend_error_.ok()) return backend_error_;
      {
        std::lock_guard<std::mutex> lock(script_->mu);
        script_->started++;
        script_->cv.notify_all();
      }
      return std::make_unique<FakeProcess>(script_);
    };
    server_ = std::make_unique<StreamingServer>(
        options,
        [this](const std::string& sandbox, int port) -> absl::StatusOr<sdk::UniqueFd> {
          {
            std::lock_guard<std::mutex> lock(mu_);
            dials_.push_back(sandbox + ":" + std::to_string(port));
          }
          if (port == 80) return DialLoopback(echo_.port());
          return absl::UnavailableError(
              absl::StrCat("dial tcp 127.0.0.1:", port, ": connect: connection refused"));
        },
        [start](const runtime::v1::ExecRequest&) { return start(); },
        [start](const runtime::v1::AttachRequest&) { return start(); });
    ASSERT_TRUE(server_->Start().ok());
  }

  std::string ExecUrl(bool in, bool out, bool err, bool tty,
                      const std::vector<std::string>& cmd = {"sh", "-c", "exit 3"}) {
    runtime::v1::ExecRequest req;
    req.set_container_id("c1");
    for (const auto& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(out);
    req.set_stderr(err);
    req.set_tty(tty);
    absl::StatusOr<std::string> url = server_->ExecUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
  }
  std::string AttachUrl(bool in, bool out, bool err) {
    runtime::v1::AttachRequest req;
    req.set_container_id("c1");
    req.set_stdin(in);
    req.set_stdout(out);
    req.set_stderr(err);
    absl::StatusOr<std::string> url = server_->AttachUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
  }
  std::string PortForwardUrl(const std::vector<int>& ports, const std::string& sandbox = "sb1") {
    runtime::v1::PortForwardRequest req;
    req.set_pod_sandbox_id(sandbox);
    for (int p : ports) req.add_port(p);
    absl::StatusOr<std::string> url = server_->PortForwardUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
  }
  // Connects and upgrades; the process has started when a backend exists.
  void Open(WebSocketClient& c, const std::string& url, const std::string& protocol) {
    ASSERT_TRUE(c.Connect(url));
    ASSERT_THAT(c.Handshake(protocol), StartsWith("HTTP/1.1 101"));
    EXPECT_TRUE(c.accept_ok()) << c.response_head();
    EXPECT_EQ(c.protocol(), protocol);
  }
  bool Ended(WebSocketClient& c) {
    return c.ReadUntil([&] { return c.closed(); }) && c.ReadUntil([&] { return c.eof(); }, 3s);
  }
  bool Detached() {
    return script_->WaitFor([&] { return script_->detached; });
  }
  // A client that left: the process is detached and its stdin closed (§6.7).
  bool DetachedAndStdinClosed() {
    return script_->WaitFor([&] { return script_->detached && script_->stdin_closed; });
  }

  EchoServer echo_;
  std::mutex mu_;
  std::vector<std::string> dials_;
  std::shared_ptr<Script> script_ = std::make_shared<Script>();
  absl::Status backend_error_;
  std::unique_ptr<StreamingServer> server_;
};

TEST_F(WebSocketServerTest, ExecEchoesStdinAndEndsWithTheV4Status) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  // The connected signal: an empty message on stdout, first of all.
  ASSERT_TRUE(c.ReadUntil([&] { return !c.messages().empty(); }));
  EXPECT_EQ(c.messages()[0], (std::pair<uint8_t, std::string>{1, ""}));
  ASSERT_TRUE(c.Send(0, "hello\n"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data == "hello\n"; }));
  ASSERT_TRUE(c.Ping("are you there"));
  ASSERT_TRUE(c.ReadUntil([&] { return !c.pongs().empty(); }));
  EXPECT_EQ(c.pongs()[0], "are you there");
  script_->Exit(0);
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.channel(3).data, kSuccess);
  EXPECT_EQ(c.close_code(), 1000);
  EXPECT_EQ(script_->stdin_data, "hello\n");
  EXPECT_EQ(c.violation(), "");
}

TEST_F(WebSocketServerTest, NonZeroExitIsTheNonZeroExitCodeStatusAfterTheOutput) {
  WebSocketClient c;
  Open(c, ExecUrl(false, true, true, false), "v4.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  script_->Emit(StreamType::kStdout, "out-data\n");
  script_->Emit(StreamType::kStderr, "err-data\n");
  script_->Exit(3);
  ASSERT_TRUE(Ended(c));
  // §9.2: 01, 01 out, 02 err, 03 status, Close(1000).
  ASSERT_EQ(c.messages().size(), 4u);
  EXPECT_EQ(c.messages()[0], (std::pair<uint8_t, std::string>{1, ""}));
  EXPECT_EQ(c.messages()[1], (std::pair<uint8_t, std::string>{1, "out-data\n"}));
  EXPECT_EQ(c.messages()[2], (std::pair<uint8_t, std::string>{2, "err-data\n"}));
  EXPECT_EQ(c.messages()[3].first, 3);
  EXPECT_EQ(c.channel(3).data,
            "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with "
            "non-zero exit code: error executing command [sh -c exit 3], exit code 3\","
            "\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
            "\"message\":\"3\"}]}}");
  EXPECT_EQ(c.close_code(), 1000);
}

TEST_F(WebSocketServerTest, LegacyProtocolsWriteTextOnFailureOnly) {
  {
    WebSocketClient c;  // no sub-protocol: binary channel.k8s.io
    Open(c, ExecUrl(false, true, false, false), "");
    ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
    script_->Exit(0);
    ASSERT_TRUE(Ended(c));
    EXPECT_EQ(c.channel(3).messages.size(), 0u);
  }
  script_ = std::make_shared<Script>();
  {
    WebSocketClient c;
    Open(c, ExecUrl(false, true, false, false), "channel.k8s.io");
    ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
    script_->Exit(2);
    ASSERT_TRUE(Ended(c));
    // v1: the Status message as plain text (§6.6), the exit code only inside the text.
    EXPECT_EQ(c.channel(3).data,
              "command terminated with non-zero exit code: error executing command "
              "[sh -c exit 3], exit code 2");
  }
}

TEST_F(WebSocketServerTest, Base64ProtocolsUseTextFrames) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.base64.channel.k8s.io");
  ASSERT_TRUE(c.Send(0, std::string("bin\0ary\xff", 8)));
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data.size() == 8; }));
  EXPECT_EQ(c.channel(1).data, std::string("bin\0ary\xff", 8));
  script_->Exit(0);
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.channel(3).data, kSuccess);
  EXPECT_EQ(c.violation(), "");

  // Old base64 without a version: signal "1", nothing on success.
  script_ = std::make_shared<Script>();
  WebSocketClient old;
  Open(old, ExecUrl(false, true, false, false), "base64.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  script_->Exit(0);
  ASSERT_TRUE(Ended(old));
  EXPECT_THAT(old.messages(), ElementsAre(std::pair<uint8_t, std::string>{1, ""}));
}

TEST_F(WebSocketServerTest, V5CloseOfStdinIsTheEndOfInput) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false, {"cat"}), "v5.channel.k8s.io");
  ASSERT_TRUE(c.Send(0, "last words"));
  ASSERT_TRUE(c.SendStreamClose(0));
  // The fake process exits with 0 when its stdin closes, after echoing what came first.
  ASSERT_TRUE(Ended(c));
  EXPECT_TRUE(script_->stdin_closed);
  EXPECT_EQ(c.channel(1).data, "last words");
  EXPECT_EQ(c.channel(3).data, kSuccess);
  EXPECT_EQ(c.close_code(), 1000);
}

TEST_F(WebSocketServerTest, ResizesReachATtyAndV5StdinEndStopsItsOutput) {
  script_->echo = false;
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, true), "v5.channel.k8s.io");
  ASSERT_TRUE(c.Send(4, "{\"Width\":100,\"Height\":40}\n"));
  ASSERT_TRUE(c.Send(4, "{\"width\":0,\"height\":5}{\"Width\":80,"));
  ASSERT_TRUE(c.Send(4, "\"Height\":24}"));
  ASSERT_TRUE(script_->WaitFor([&] { return script_->sizes.size() == 2; }));
  EXPECT_THAT(script_->sizes, ElementsAre(TerminalSize{100, 40}, TerminalSize{80, 24}));
  script_->Emit(StreamType::kStdout, "prompt$ ");
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data == "prompt$ "; }));
  // With a tty the end of input stops the output relay, not the process's stdin (§6.4).
  ASSERT_TRUE(c.SendStreamClose(0));
  std::this_thread::sleep_for(200ms);
  script_->Emit(StreamType::kStdout, "not relayed");
  script_->Exit(0);
  ASSERT_TRUE(Ended(c));
  EXPECT_FALSE(script_->stdin_closed);
  EXPECT_EQ(c.channel(1).data, "prompt$ ");
  EXPECT_EQ(c.channel(3).data, kSuccess);
}

TEST_F(WebSocketServerTest, ResizesWithoutATtyAreIgnored) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(c.Send(4, "{\"Width\":100,\"Height\":40}"));
  ASSERT_TRUE(c.Send(0, "sync"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data == "sync"; }));
  EXPECT_TRUE(script_->sizes.empty());
  script_->Exit(0);
  ASSERT_TRUE(Ended(c));
}

TEST_F(WebSocketServerTest, AttachIsASuccessWhateverTheExitCode) {
  WebSocketClient c;
  Open(c, AttachUrl(false, true, false), "v4.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  script_->Emit(StreamType::kStdout, "log line\n");
  script_->Emit(StreamType::kStderr, "not asked for\n");
  script_->Exit(7);
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.channel(1).data, "log line\n");
  EXPECT_EQ(c.channel(2).messages.size(), 0u);
  EXPECT_EQ(c.channel(3).data, kSuccess);
}

TEST_F(WebSocketServerTest, ABackendErrorIsAnInternalErrorStatus) {
  backend_error_ = absl::FailedPreconditionError("container c1 is exited, not running");
  WebSocketClient c;
  Open(c, ExecUrl(false, false, true, false), "v4.channel.k8s.io");
  ASSERT_TRUE(Ended(c));
  // The signal goes on stderr, the lowest writable channel here.
  EXPECT_EQ(c.messages()[0], (std::pair<uint8_t, std::string>{2, ""}));
  EXPECT_THAT(c.channel(3).data,
              HasSubstr("\"message\":\"Internal error occurred: error executing command in "
                        "container: container c1 is exited, not running\",\"reason\":"
                        "\"InternalError\""));
}

TEST_F(WebSocketServerTest, AnUnmaskedFrameIsAProtocolErrorAndTheServerGoesOn) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  ASSERT_TRUE(
      c.SendFrame(WebSocketClient::kBinary, std::string("\x00oops", 5), true, /*masked=*/false));
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 1002);
  EXPECT_THAT(c.close_reason(), HasSubstr("unmasked"));
  EXPECT_TRUE(DetachedAndStdinClosed());
  EXPECT_EQ(c.channel(3).messages.size(), 0u);  // a client that broke the protocol: no status

  script_ = std::make_shared<Script>();
  WebSocketClient next;
  Open(next, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(next.Send(0, "still here"));
  ASSERT_TRUE(next.ReadUntil([&] { return next.channel(1).data == "still here"; }));
}

TEST_F(WebSocketServerTest, AnOversizeMessageIsClosedWith1009) {
  StreamingServerOptions options;
  options.websocket_max_message_bytes = 4096;
  StartServer(options);
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(c.Send(0, std::string(4000, 'a')));  // under the limit
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data.size() == 4000; }));
  // A fragmented message whose parts add up to more than the limit.
  ASSERT_TRUE(
      c.SendFrame(WebSocketClient::kBinary, std::string(1, '\0') + std::string(3000, 'b'), false));
  ASSERT_TRUE(c.SendFrame(0, std::string(3000, 'c')));
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 1009);
  EXPECT_TRUE(Detached());
}

TEST_F(WebSocketServerTest, AHugeFrameHeaderIsRefusedBeforeItsPayload) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  // 1 GiB announced, nothing sent: the default limit (32 MiB) answers at once.
  ASSERT_TRUE(
      c.WriteRaw(std::string("\x82\xFF\x00\x00\x00\x00\x40\x00\x00\x00\x01\x02\x03\x04", 14)));
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 1009);
}

TEST_F(WebSocketServerTest, AMalformedV5CloseSignalEndsTheSession) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v5.channel.k8s.io");
  ASSERT_TRUE(c.SendFrame(WebSocketClient::kBinary, std::string("\xFF\x00\x00", 3)));
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 1002);
  EXPECT_TRUE(Detached());
}

TEST_F(WebSocketServerTest, AClientThatVanishesDetachesTheProcess) {
  WebSocketClient c;
  Open(c, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(c.Send(0, "x"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(1).data == "x"; }));
  c.Drop();
  EXPECT_TRUE(DetachedAndStdinClosed());
}

TEST_F(WebSocketServerTest, TheClientsCloseIsEchoedAndDetaches) {
  WebSocketClient c;
  Open(c, ExecUrl(false, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  ASSERT_TRUE(c.Close(4001, "done here"));
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 4001);
  EXPECT_TRUE(Detached());
}

TEST_F(WebSocketServerTest, StopAndIdleTimeoutEndSessions) {
  WebSocketClient c;
  Open(c, ExecUrl(false, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  const auto before = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  EXPECT_TRUE(script_->detached);

  StreamingServerOptions options;
  options.idle_timeout = absl::Milliseconds(400);
  StartServer(options);
  script_ = std::make_shared<Script>();
  WebSocketClient idle;
  Open(idle, ExecUrl(false, true, false, false), "v4.channel.k8s.io");
  ASSERT_TRUE(idle.ReadUntil([&] { return idle.closed(); }, 5s));
  EXPECT_EQ(idle.close_code(), 1001);
}

TEST_F(WebSocketServerTest, RefusalsBeforeTheUpgrade) {
  WebSocketClient post;
  ASSERT_TRUE(post.Connect(ExecUrl(false, true, false, false)));
  EXPECT_THAT(post.Handshake("v4.channel.k8s.io", "POST"), StartsWith("HTTP/1.1 405"));
  WebSocketClient v3;
  ASSERT_TRUE(v3.Connect(ExecUrl(false, true, false, false)));
  EXPECT_THAT(v3.Handshake("v3.channel.k8s.io"), StartsWith("HTTP/1.1 403"));
  WebSocketClient used;
  const std::string url = ExecUrl(false, true, false, false);
  ASSERT_TRUE(used.Connect(url));
  ASSERT_THAT(used.Handshake("v4.channel.k8s.io"), StartsWith("HTTP/1.1 101"));
  WebSocketClient again;
  ASSERT_TRUE(again.Connect(url));
  EXPECT_THAT(again.Handshake("v4.channel.k8s.io"), StartsWith("HTTP/1.1 404"));
  EXPECT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
}

// ---- Port forward -----------------------------------------------------------------------

TEST_F(WebSocketServerTest, PortForwardRoundTripWithThePortPrefix) {
  WebSocketClient c;
  Open(c, PortForwardUrl({80}), "v4.channel.k8s.io");
  ASSERT_TRUE(c.ReadUntil([&] { return c.messages().size() >= 2; }));
  // §9.4: port 80 as 2 bytes little-endian on the data channel, then on the error channel.
  EXPECT_EQ(c.messages()[0], (std::pair<uint8_t, std::string>{0, std::string("\x50\x00", 2)}));
  EXPECT_EQ(c.messages()[1], (std::pair<uint8_t, std::string>{1, std::string("\x50\x00", 2)}));
  ASSERT_TRUE(c.Send(0, "GET / HTTP/1.0\r\n\r\n"));
  const std::string big(200000, 'q');
  ASSERT_TRUE(c.Send(0, big));
  const size_t want = 2 + 18 + big.size();
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(0).data.size() >= want; }));
  EXPECT_EQ(c.channel(0).data, std::string("\x50\x00", 2) + "GET / HTTP/1.0\r\n\r\n" + big);
  EXPECT_EQ(c.channel(1).data, std::string("\x50\x00", 2));
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(dials_, (std::vector<std::string>{"sb1:80"}));
  }
  ASSERT_TRUE(c.Close(1000));
  ASSERT_TRUE(Ended(c));
  // The target connection is closed with the session.
  for (int i = 0; i < 50 && echo_.open_connections() > 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(echo_.open_connections(), 0u);
}

TEST_F(WebSocketServerTest, PortForwardPortsFromTheQueryAndDialErrors) {
  WebSocketClient c;
  std::string url = PortForwardUrl({}) + "?port=80,81";
  Open(c, url, "v4.base64.channel.k8s.io");
  ASSERT_TRUE(
      c.ReadUntil([&] { return !c.channel(3).data.empty() && c.channel(3).messages.size() >= 2; }));
  EXPECT_EQ(c.channel(2).messages[0], std::string("\x51\x00", 2));
  EXPECT_EQ(c.channel(3).messages[0], std::string("\x51\x00", 2));
  EXPECT_EQ(c.channel(3).messages[1],
            "error forwarding port 81 to pod sb1, uid : dial tcp 127.0.0.1:81: connect: "
            "connection refused");
  ASSERT_TRUE(c.Send(0, "port 80 works"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.channel(0).data.size() >= 2 + 13; }));
  EXPECT_EQ(c.channel(0).data.substr(2), "port 80 works");
  EXPECT_EQ(c.violation(), "");
}

TEST_F(WebSocketServerTest, PortForwardEndsWhenEveryPortHasEnded) {
  WebSocketClient c;
  Open(c, PortForwardUrl({81}), "");
  ASSERT_TRUE(Ended(c));
  EXPECT_EQ(c.close_code(), 1000);
  EXPECT_THAT(c.channel(1).data, HasSubstr("error forwarding port 81 to pod sb1"));
}

TEST_F(WebSocketServerTest, PortForwardRefusals) {
  WebSocketClient none;
  ASSERT_TRUE(none.Connect(PortForwardUrl({})));
  EXPECT_THAT(none.Handshake("v4.channel.k8s.io"), StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(none.response_body(), HasSubstr("query parameter \"port\" is required"));
  WebSocketClient v5;
  ASSERT_TRUE(v5.Connect(PortForwardUrl({80})));
  EXPECT_THAT(v5.Handshake("v5.channel.k8s.io"), StartsWith("HTTP/1.1 403"));
}

TEST_F(WebSocketServerTest, SpdyOverWebSocketTunnelsThePortForwardSession) {
  WebSocketClient c;
  Open(c, PortForwardUrl({}), "SPDY/3.1+portforward.k8s.io");
  spdy::testing::TestClient spdy;
  // One request as client-go makes it: error stream (FIN at once), then data stream.
  std::string out =
      spdy.SynStream(1, {{"port", "80"}, {"requestid", "0"}, {"streamtype", "error"}});
  out += spdy.Fin(1);
  ASSERT_TRUE(c.SendStream(out));
  // Message boundaries mean nothing: a frame split over two messages.
  const std::string data_open =
      spdy.SynStream(3, {{"streamtype", "data"}, {"port", "80"}, {"requestid", "0"}});
  ASSERT_TRUE(c.SendStream(data_open.substr(0, 5)));
  ASSERT_TRUE(c.SendStream(data_open.substr(5) + spdy.Data(3, "through the tunnel")));
  std::string echoed;
  size_t parsed = 0;
  std::vector<spdy::Frame> frames;
  ASSERT_TRUE(c.ReadUntil([&] {
    if (c.stream_bytes().size() > parsed) {
      for (spdy::Frame& f : spdy.Read(absl::string_view(c.stream_bytes()).substr(parsed))) {
        if (auto* d = std::get_if<spdy::DataFrame>(&f); d != nullptr && d->stream_id == 3) {
          echoed += d->data;
        }
        frames.push_back(std::move(f));
      }
      parsed = c.stream_bytes().size();
    }
    return echoed == "through the tunnel";
  }));
  ASSERT_TRUE(c.Close(1000));
  ASSERT_TRUE(Ended(c));
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(dials_, (std::vector<std::string>{"sb1:80"}));
  }
}

TEST_F(WebSocketServerTest, ManySessionsLeaveNoDescriptorsBehind) {
  auto open_fds = [] {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  {
    WebSocketClient warm;
    Open(warm, ExecUrl(true, true, false, false), "v4.channel.k8s.io");
    warm.Close(1000);
    ASSERT_TRUE(Ended(warm));
  }
  std::this_thread::sleep_for(200ms);
  const int before = open_fds();
  for (int i = 0; i < 10; ++i) {
    script_ = std::make_shared<Script>();
    WebSocketClient c;
    Open(c, ExecUrl(true, true, false, false), "v5.channel.k8s.io");
    ASSERT_TRUE(c.Send(0, "n"));
    ASSERT_TRUE(c.SendStreamClose(0));
    ASSERT_TRUE(Ended(c));
    WebSocketClient pf;
    Open(pf, PortForwardUrl({80}), "v4.channel.k8s.io");
    ASSERT_TRUE(pf.Send(0, "p"));
    ASSERT_TRUE(pf.ReadUntil([&] { return pf.channel(0).data.size() == 3; }));
    pf.Drop();
  }
  std::this_thread::sleep_for(1500ms);
  EXPECT_LE(open_fds(), before + 2);
}

}  // namespace
}  // namespace berth::cri::streaming
