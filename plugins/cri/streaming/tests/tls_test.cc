// SPDX-License-Identifier: Apache-2.0
// The streaming server over TLS: a certificate made with the openssl command, https:// URLs,
// a port-forward round trip through a TLS client (OpenSSL, the relay of tls.h on the client
// side), plain HTTP refused, and bad certificate configuration refused at start.
#include "plugins/cri/streaming/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/server.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"

namespace berth::cri::streaming {
namespace {

namespace fs = std::filesystem;
using spdy::testing::PortForwardClient;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cert_ = (dir_ / "cert.pem").string();
    key_ = (dir_ / "key.pem").string();
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " + key_ +
        " -out " + cert_ + " >" + (dir_ / "openssl.log").string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl req failed";
    // An echo server as the pod.
    listener_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
    ASSERT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    echo_port_ = ntohs(a.sin_port);
    echo_ = std::thread([this] {
      sdk::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      char buf[4096];
      ssize_t n;
      while (c.valid() && (n = ::read(c.get(), buf, sizeof(buf))) > 0) {
        if (::send(c.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
      }
    });
  }
  void TearDown() override {
    if (server_) server_->Stop();
    ::shutdown(listener_.get(), SHUT_RDWR);
    if (echo_.joinable()) echo_.join();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<StreamingServer> NewServer(const std::string& cert, const std::string& key) {
    StreamingServerOptions o;
    o.tls_cert_file = cert;
    o.tls_key_file = key;
    return std::make_unique<StreamingServer>(
        o, [this](const std::string&, int) -> absl::StatusOr<sdk::UniqueFd> {
          sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<uint16_t>(echo_port_));
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
            return absl::UnavailableError("refused");
          }
          return fd;
        });
  }

  fs::path dir_;
  std::string cert_, key_;
  sdk::UniqueFd listener_;
  int echo_port_ = 0;
  std::thread echo_;
  std::unique_ptr<StreamingServer> server_;
};

TEST_F(TlsTest, PortForwardOverTlsWithAVerifiedCertificate) {
  server_ = NewServer(cert_, key_);
  ASSERT_TRUE(server_->Start().ok());
  runtime::v1::PortForwardRequest req;
  req.set_pod_sandbox_id("sb1");
  absl::StatusOr<std::string> url = server_->PortForwardUrl(req);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(*url, StartsWith("https://127.0.0.1:"));

  // The client: TCP, a TLS handshake that verifies the server's certificate, and a relay to
  // a socketpair that the SPDY test client speaks on.
  sdk::UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(server_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(tcp.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, cert_.c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, tcp.get());
  ASSERT_EQ(SSL_set1_host(ssl, "127.0.0.1"), 1);
  ASSERT_EQ(SSL_connect(ssl), 1) << "the server's certificate did not verify";
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  sdk::UniqueFd relay_end(pair[0]);
  std::thread relay([&] { RelayTls(ssl, tcp.get(), relay_end.get()); });

  PortForwardClient c;
  ASSERT_TRUE(c.Adopt(sdk::UniqueFd(pair[1]), *url));
  ASSERT_THAT(c.Upgrade(), StartsWith("HTTP/1.1 101"));
  const uint32_t data = c.OpenPair(80, 0);
  ASSERT_TRUE(c.Send(data, "through TLS"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(data).data == "through TLS"; }));
  ASSERT_TRUE(c.GoAway());
  ::shutdown(c.fd(), SHUT_RDWR);
  relay.join();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

TEST_F(TlsTest, PlainHttpOnATlsPortGetsNothing) {
  server_ = NewServer(cert_, key_);
  ASSERT_TRUE(server_->Start().ok());
  runtime::v1::PortForwardRequest req;
  absl::StatusOr<std::string> url = server_->PortForwardUrl(req);
  ASSERT_TRUE(url.ok());
  PortForwardClient c;
  ASSERT_TRUE(c.Connect(*url));
  EXPECT_THAT(c.Upgrade(), ::testing::Not(HasSubstr("HTTP/1.1")));
}

TEST_F(TlsTest, BadCertificateConfigurationIsRefusedAtStart) {
  absl::Status s = NewServer(cert_, "")->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("both a certificate and a key"));
  s = NewServer((dir_ / "missing.pem").string(), key_)->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("missing.pem"));
  // A key of another certificate.
  const std::string other = (dir_ / "other.pem").string();
  ASSERT_EQ(std::system(("openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out " +
                         other + " 2>/dev/null")
                            .c_str()),
            0);
  s = NewServer(cert_, other)->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("other.pem"));
  EXPECT_THAT(s.message(), ::testing::AnyOf(HasSubstr("does not match"), HasSubstr("mismatch")));
}

}  // namespace
}  // namespace berth::cri::streaming
