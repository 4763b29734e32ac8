// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace berth::cri::streaming {
namespace {

int Dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

TEST(HttpTest, ParsesARequestHeadAndKeepsWhatFollows) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::string req =
      "POST /exec/abcdEFGH HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
      "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
      "X-Stream-Protocol-Version: v3.channel.k8s.io\r\nContent-Length: 0\r\n\r\n\x80\x03";
  ASSERT_TRUE(WriteAll(sv[1], req));
  std::string rest;
  absl::StatusOr<HttpRequest> r = ReadRequest(sv[0], 16384, absl::Seconds(5), &rest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->target, "/exec/abcdEFGH");
  EXPECT_EQ(r->Header("upgrade"), "SPDY/3.1");
  EXPECT_EQ(r->Headers("x-stream-protocol-version"),
            (std::vector<std::string>{"v4.channel.k8s.io", "v3.channel.k8s.io"}));
  EXPECT_EQ(rest, "\x80\x03");
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(HttpTest, RefusesMalformedOversizedAndSlowRequests) {
  int sv[2];
  std::string rest;
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_TRUE(WriteAll(sv[1], "GARBAGE\r\n\r\n"));
  EXPECT_EQ(ReadRequest(sv[0], 16384, absl::Seconds(5), &rest).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteAll(sv[1], "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a')));
  EXPECT_EQ(ReadRequest(sv[0], 16384, absl::Seconds(5), &rest).status().code(),
            absl::StatusCode::kResourceExhausted);
  ::close(sv[0]);
  ::close(sv[1]);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_TRUE(WriteAll(sv[1], "GET / HTTP/1.1\r\n"));
  EXPECT_EQ(ReadRequest(sv[0], 16384, absl::Milliseconds(200), &rest).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(WriteAll(sv[1], "Content-Length: 5\r\n\r\nhello"));
  EXPECT_EQ(ReadRequest(sv[0], 16384, absl::Seconds(5), &rest).status().code(),
            absl::StatusCode::kInvalidArgument);  // no bodies
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(HttpTest, ServerAnswersOnLoopbackAndStopsWithOpenConnections) {
  HttpServer server;
  ASSERT_TRUE(server
                  .Start("127.0.0.1", 0,
                         [](int fd) {
                           std::string rest;
                           absl::StatusOr<HttpRequest> r =
                               ReadRequest(fd, 16384, absl::Seconds(5), &rest);
                           if (!r.ok()) return;
                           WriteAll(fd, HttpResponse(404, {{"Content-Type", "text/plain"}},
                                                     "404 page not found"));
                           // Hold the connection until the client or Stop ends it.
                           char c;
                           while (::read(fd, &c, 1) > 0) {
                           }
                         })
                  .ok());
  ASSERT_GT(server.port(), 0);
  int fd = Dial(server.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, "GET /exec/nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  ::shutdown(fd, SHUT_WR);
  std::string resp = ReadAll(fd);
  EXPECT_EQ(resp,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n"
            "404 page not found");
  ::close(fd);
  int idle = Dial(server.port());  // left open: Stop must still return
  ASSERT_GE(idle, 0);
  ASSERT_TRUE(WriteAll(idle, "GET / HTTP/1.1\r\n\r\n"));
  server.Stop();
  ::close(idle);
  EXPECT_LT(Dial(server.port()), 0);
}

TEST(HttpTest, BadAddressesAreRefused) {
  HttpServer server;
  EXPECT_EQ(server.Start("localhost", 0, [](int) {}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cri::streaming
