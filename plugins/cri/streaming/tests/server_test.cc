// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/tests/echo_server.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"

namespace berth::cri::streaming {
namespace {

using spdy::testing::PortForwardClient;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::EchoServer;
using namespace std::chrono_literals;

absl::StatusOr<sdk::UniqueFd> DialLoopback(int port) {
  sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("dial tcp 127.0.0.1:", port, ": connection refused"));
  }
  return fd;
}

class StreamingServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<StreamingServer>(
        StreamingServerOptions{},
        [this](const std::string& sandbox, int port) -> absl::StatusOr<sdk::UniqueFd> {
          {
            std::lock_guard<std::mutex> lock(mu_);
            dials_.push_back(sandbox + ":" + std::to_string(port));
          }
          if (port == 80) return DialLoopback(echo_.port());
          return absl::UnavailableError(
              absl::StrCat("dial tcp 127.0.0.1:", port, ": connect: connection refused"));
        });
    ASSERT_TRUE(server_->Start().ok());
  }

  std::string NewUrl(const std::string& sandbox = "sb1") {
    runtime::v1::PortForwardRequest req;
    req.set_pod_sandbox_id(sandbox);
    absl::StatusOr<std::string> url = server_->PortForwardUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.ok() ? *url : "";
  }

  // Connects and upgrades; the response head.
  std::string Upgrade(PortForwardClient* c, const std::string& url) {
    EXPECT_TRUE(c->Connect(url));
    return c->Upgrade();
  }

  // One forwarded connection: send, read the echo, half-close, expect FIN on both streams.
  void EchoOnce(PortForwardClient* c, int request_id, const std::string& payload) {
    const uint32_t data = c->OpenPair(80, request_id);
    const uint32_t error = data - 2;
    ASSERT_TRUE(c->Send(data, payload));
    ASSERT_TRUE(c->ReadUntil([&] { return c->stream(data).data.size() >= payload.size(); }))
        << "got \"" << c->stream(data).data << "\"";
    EXPECT_TRUE(c->stream(data).replied);
    EXPECT_TRUE(c->stream(error).replied);
    EXPECT_EQ(c->stream(data).data, payload);
    ASSERT_TRUE(c->Fin(data));
    ASSERT_TRUE(c->ReadUntil([&] { return c->stream(data).fin && c->stream(error).fin; }));
    EXPECT_EQ(c->stream(error).data, "");  // success: nothing on the error stream
  }

  EchoServer echo_;
  std::mutex mu_;
  std::vector<std::string> dials_;
  std::unique_ptr<StreamingServer> server_;
};

TEST_F(StreamingServerTest, UrlNamesTheBoundAddressAndAToken) {
  const std::string url = NewUrl();
  EXPECT_THAT(url, StartsWith(absl::StrCat("http://127.0.0.1:", server_->port(), "/portforward/")));
  EXPECT_EQ(url.size(),
            absl::StrCat("http://127.0.0.1:", server_->port(), "/portforward/").size() + 8);
}

TEST_F(StreamingServerTest, ForwardsTwoRequestsOnOneConnection) {
  PortForwardClient c;
  const std::string head = Upgrade(&c, NewUrl());
  ASSERT_THAT(head, StartsWith("HTTP/1.1 101"));
  EXPECT_THAT(head, HasSubstr("X-Stream-Protocol-Version: portforward.k8s.io\r\n"));
  EchoOnce(&c, 0, "hello through the pod");
  // The session stays open for more requests (§7.1); PINGs are echoed.
  ASSERT_TRUE(c.Ping(1));
  EchoOnce(&c, 1, std::string(100000, 'x'));
  EXPECT_FALSE(c.goaway());
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(dials_, (std::vector<std::string>{"sb1:80", "sb1:80"}));
  }
  bool pinged = false;
  for (const auto& f : c.frames()) {
    if (auto* p = std::get_if<spdy::PingFrame>(&f)) pinged = pinged || p->id == 1;
  }
  EXPECT_TRUE(pinged);
  // The client leaves: the server answers with GOAWAY and closes.
  ASSERT_TRUE(c.GoAway());
  EXPECT_TRUE(c.ReadUntil([&] { return c.eof(); }) || c.eof());
  EXPECT_TRUE(c.goaway());
}

// Many requests on one long-lived connection leave no sockets or threads behind.
TEST_F(StreamingServerTest, FinishedRequestsReleaseTheirSockets) {
  auto open_fds = [] {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  EchoOnce(&c, 0, "warm-up");
  const int before = open_fds();
  for (int i = 1; i <= 20; ++i) EchoOnce(&c, i, "request " + std::to_string(i));
  std::this_thread::sleep_for(500ms);  // the echo server's side closes too
  EXPECT_LE(open_fds(), before + 2);
  EXPECT_EQ(echo_.accepted(), 21);
}

TEST_F(StreamingServerTest, ClientResetOfTheDataStreamEndsThePair) {
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  const uint32_t data = c.OpenPair(80, 0);
  ASSERT_TRUE(c.Send(data, "ping"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(data).data == "ping"; }));
  ASSERT_TRUE(c.Rst(data));
  // The error stream gets its FIN once the target connection is torn down.
  EXPECT_TRUE(c.ReadUntil([&] { return c.stream(data - 2).fin; }));
}

TEST_F(StreamingServerTest, TokensAreSingleUseAndOfOneKind) {
  const std::string url = NewUrl();
  PortForwardClient first;
  ASSERT_THAT(Upgrade(&first, url), StartsWith("HTTP/1.1 101"));
  PortForwardClient again;
  EXPECT_THAT(Upgrade(&again, url), StartsWith("HTTP/1.1 404"));

  // A port-forward token presented at /exec/: 404, and the token is gone.
  const std::string other = NewUrl();
  std::string exec_url = other;
  exec_url.replace(exec_url.find("/portforward/"), 13, "/exec/");
  PortForwardClient wrong;
  EXPECT_THAT(Upgrade(&wrong, exec_url), StartsWith("HTTP/1.1 404"));
  PortForwardClient after;
  EXPECT_THAT(Upgrade(&after, other), StartsWith("HTTP/1.1 404"));

  PortForwardClient unknown;
  EXPECT_THAT(Upgrade(&unknown, server_->BaseUrl() + "/portforward/AAAAAAAA"),
              StartsWith("HTTP/1.1 404"));
  PortForwardClient path;
  EXPECT_THAT(Upgrade(&path, server_->BaseUrl() + "/nothing/here"), StartsWith("HTTP/1.1 404"));
}

TEST_F(StreamingServerTest, MethodsAndNegotiation) {
  PortForwardClient put;
  ASSERT_TRUE(put.Connect(NewUrl()));
  EXPECT_THAT(put.Upgrade("PUT"), StartsWith("HTTP/1.1 405"));
  PortForwardClient get;
  ASSERT_TRUE(get.Connect(NewUrl()));
  EXPECT_THAT(get.Upgrade("GET"), StartsWith("HTTP/1.1 101"));
  PortForwardClient exec_protocol;
  ASSERT_TRUE(exec_protocol.Connect(NewUrl()));
  EXPECT_THAT(exec_protocol.Upgrade("POST", "v4.channel.k8s.io"), StartsWith("HTTP/1.1 403"));
  PortForwardClient none;
  ASSERT_TRUE(none.Connect(NewUrl()));
  EXPECT_THAT(none.Upgrade("POST", ""), StartsWith("HTTP/1.1 400"));
}

TEST_F(StreamingServerTest, DialFailureIsReportedOnTheErrorStream) {
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl("sb1")), StartsWith("HTTP/1.1 101"));
  const uint32_t data = c.OpenPair(81, 0);
  const uint32_t error = data - 2;
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(error).fin && c.stream(data).reset; }));
  EXPECT_EQ(c.stream(error).data,
            "error forwarding port 81 to pod sb1, uid : dial tcp 127.0.0.1:81: connect: "
            "connection refused");
  // The session goes on: a working request afterwards.
  EchoOnce(&c, 1, "still here");
}

TEST_F(StreamingServerTest, BadStreamsAreReset) {
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  // No port header: RST_STREAM, no SYN_REPLY (§7.3). Sent by hand through a pair with port 0.
  const uint32_t data = c.OpenPair(0, 0);
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(data).reset && c.stream(data - 2).reset; }));
  EXPECT_FALSE(c.stream(data).replied);
}

TEST_F(StreamingServerTest, StopEndsOpenSessionsPromptly) {
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  const uint32_t data = c.OpenPair(80, 0);
  ASSERT_TRUE(c.Send(data, "ping"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(data).data == "ping"; }));
  // An idle second connection that never upgraded.
  PortForwardClient idle;
  ASSERT_TRUE(idle.Connect(NewUrl()));
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  c.ReadUntil([&] { return c.eof(); }, 2s);
  EXPECT_TRUE(c.eof());
}

TEST_F(StreamingServerTest, IncompletePairsTimeOut) {
  server_->Stop();
  StreamingServerOptions options;
  options.stream_creation_timeout = absl::Milliseconds(300);
  server_ = std::make_unique<StreamingServer>(
      options, [](const std::string&, int) -> absl::StatusOr<sdk::UniqueFd> {
        return absl::UnavailableError("unused");
      });
  ASSERT_TRUE(server_->Start().ok());
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  const uint32_t error = c.OpenStream("error", 80, 7);
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(error).fin; }, 5s));
  EXPECT_THAT(c.stream(error).data, HasSubstr("request=7) timed out waiting for streams"));
  // A second error stream for one request is reported on the first.
  const uint32_t e1 = c.OpenStream("error", 80, 8);
  const uint32_t e2 = c.OpenStream("error", 80, 8);
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(e2).reset; }, 5s));
  ASSERT_TRUE(c.ReadUntil([&] { return !c.stream(e1).data.empty(); }, 5s));
  EXPECT_THAT(c.stream(e1).data,
              HasSubstr("error processing stream for request 8: error stream already assigned"));
}

TEST_F(StreamingServerTest, IdleSessionsAreClosed) {
  server_->Stop();
  StreamingServerOptions options;
  options.idle_timeout = absl::Milliseconds(500);
  server_ = std::make_unique<StreamingServer>(
      options, [](const std::string&, int) -> absl::StatusOr<sdk::UniqueFd> {
        return absl::UnavailableError("unused");
      });
  ASSERT_TRUE(server_->Start().ok());
  PortForwardClient c;
  ASSERT_THAT(Upgrade(&c, NewUrl()), StartsWith("HTTP/1.1 101"));
  ASSERT_TRUE(c.Ping(1));
  EXPECT_TRUE(c.ReadUntil([&] { return c.eof(); }, 5s) || c.eof());
  EXPECT_TRUE(c.goaway());
}

}  // namespace
}  // namespace berth::cri::streaming
