// SPDX-License-Identifier: Apache-2.0
// The streaming clients (stream_client.h) against our own StreamingServer on 127.0.0.1, in
// process, with fake backends: scripted processes behind exec and attach, a TCP echo server
// behind port-forward.
#include "plugins/cri/streaming/stream_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/server.h"
#include "plugins/cri/streaming/tests/echo_server.h"

namespace berth::cri::streaming {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// ---- a scripted process ----

// What the exec backend starts, by cmd[0]:
//   echo ARGS...   ARGS joined on stdout, exit 0
//   both CODE      "out\n" on stdout, "err\n" on stderr, exit CODE
//   cat            stdin to stdout until stdin closes, exit 0
//   sizes N        "WxH\n" on stdout for each resize, exit 0 after N of them
//   big N          N bytes on stdout in 32 KiB chunks
//   hang           nothing until detached
class FakeProcess : public StreamedProcess {
 public:
  explicit FakeProcess(std::vector<std::string> cmd) : cmd_(std::move(cmd)) {
    const std::string& what = cmd_[0];
    if (what == "echo") {
      Emit(StreamType::kStdout, absl::StrJoin(cmd_.begin() + 1, cmd_.end(), " ") + "\n");
      Finish(0);
    } else if (what == "both") {
      Emit(StreamType::kStdout, "out\n");
      Emit(StreamType::kStderr, "err\n");
      Finish(std::stoi(cmd_[1]));
    } else if (what == "big") {
      size_t left = std::stoul(cmd_[1]);
      char c = 'a';
      while (left > 0) {
        const size_t n = std::min<size_t>(left, size_t{32} * 1024);
        Emit(StreamType::kStdout, std::string(n, c));
        c = c == 'z' ? 'a' : static_cast<char>(c + 1);
        left -= n;
      }
      Finish(0);
    }
  }

  absl::StatusOr<std::optional<Chunk>> Read() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !output_.empty() || finished_ || detached_; });
    if (detached_ || output_.empty()) return std::nullopt;
    Chunk c = std::move(output_.front());
    output_.pop_front();
    return c;
  }
  absl::StatusOr<int> Wait() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (detached_) return absl::CancelledError("detached");
    return exit_code_;
  }
  absl::Status WriteStdin(absl::string_view data) override {
    if (cmd_[0] == "cat") Emit(StreamType::kStdout, std::string(data));
    std::lock_guard<std::mutex> lock(mu_);
    absl::StrAppend(&stdin_, data);
    return absl::OkStatus();
  }
  void CloseStdin() override {
    if (cmd_[0] == "cat") Finish(0);
    std::lock_guard<std::mutex> lock(mu_);
    stdin_closed_ = true;
  }
  void Resize(TerminalSize size) override {
    if (cmd_[0] != "sizes") return;
    Emit(StreamType::kStdout, absl::StrCat(size.width, "x", size.height, "\n"));
    std::lock_guard<std::mutex> lock(mu_);
    if (++resizes_ == std::stoi(cmd_[1])) {
      finished_ = true;
      cv_.notify_all();
    }
  }
  void Detach() override {
    std::lock_guard<std::mutex> lock(mu_);
    detached_ = true;
    cv_.notify_all();
  }

 private:
  void Emit(StreamType stream, std::string data) {
    std::lock_guard<std::mutex> lock(mu_);
    output_.push_back({stream, std::move(data)});
    cv_.notify_all();
  }
  void Finish(int code) {
    std::lock_guard<std::mutex> lock(mu_);
    exit_code_ = code;
    finished_ = true;
    cv_.notify_all();
  }

  const std::vector<std::string> cmd_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk> output_;
  bool finished_ = false;
  bool detached_ = false;
  int exit_code_ = 0;
  int resizes_ = 0;
  std::string stdin_;
  bool stdin_closed_ = false;
};

// ---- a TCP echo server (echo_server.h): what port 80 of the fake pod is ----

using testing::EchoServer;

absl::StatusOr<sdk::UniqueFd> DialLoopback(int port) {
  sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("dial tcp 127.0.0.1:", port, ": connect: connection refused"));
  }
  return fd;
}

// An in-memory file: output that never blocks, read back after the session.
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("stream-client-test", MFD_CLOEXEC)) {}
  explicit MemFile(absl::string_view content) : MemFile() {
    EXPECT_EQ(::write(fd_.get(), content.data(), content.size()),
              static_cast<ssize_t>(content.size()));
    ::lseek(fd_.get(), 0, SEEK_SET);
  }
  int fd() const { return fd_.get(); }
  std::string Read() const {
    std::string out;
    char buffer[65536];
    ssize_t n;
    off_t offset = 0;
    while ((n = ::pread(fd_.get(), buffer, sizeof(buffer), offset)) > 0) {
      out.append(buffer, static_cast<size_t>(n));
      offset += n;
    }
    return out;
  }

 private:
  sdk::UniqueFd fd_;
};

class StreamClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(StreamingServerOptions{}); }

  void StartServer(const StreamingServerOptions& options) {
    if (server_) server_->Stop();
    server_ = std::make_unique<StreamingServer>(
        options,
        [this](const std::string&, int port) -> absl::StatusOr<sdk::UniqueFd> {
          if (port == 80) return DialLoopback(echo_.port());
          return absl::UnavailableError(
              absl::StrCat("dial tcp 127.0.0.1:", port, ": connect: connection refused"));
        },
        [this](const runtime::v1::ExecRequest& req)
            -> absl::StatusOr<std::unique_ptr<StreamedProcess>> {
          if (req.cmd(0) == "missing") {
            return absl::NotFoundError("exec: \"missing\": executable file not found in $PATH");
          }
          auto p = std::make_unique<FakeProcess>(
              std::vector<std::string>(req.cmd().begin(), req.cmd().end()));
          std::lock_guard<std::mutex> lock(mu_);
          execs_.push_back(req);
          return p;
        },
        [](const runtime::v1::AttachRequest&) -> absl::StatusOr<std::unique_ptr<StreamedProcess>> {
          return std::make_unique<FakeProcess>(std::vector<std::string>{"cat"});
        });
    ASSERT_TRUE(server_->Start().ok());
  }

  std::string ExecUrl(const std::vector<std::string>& cmd, bool in, bool tty) {
    runtime::v1::ExecRequest req;
    req.set_container_id("c1");
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(true);
    req.set_stderr(!tty);
    req.set_tty(tty);
    absl::StatusOr<std::string> url = server_->ExecUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.ok() ? *url : "";
  }
  std::string PortForwardUrl() {
    runtime::v1::PortForwardRequest req;
    req.set_pod_sandbox_id("sb1");
    absl::StatusOr<std::string> url = server_->PortForwardUrl(req);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.ok() ? *url : "";
  }

  EchoServer echo_;
  std::unique_ptr<StreamingServer> server_;
  std::mutex mu_;
  std::vector<runtime::v1::ExecRequest> execs_;
};

// ---- URLs and the upgrade ----

TEST(ParseStreamUrlTest, AcceptsWhatTheServerReturns) {
  absl::StatusOr<StreamUrl> u = ParseStreamUrl("http://127.0.0.1:35417/exec/aPKC3sAj");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 35417);
  EXPECT_EQ(u->path, "/exec/aPKC3sAj");
  EXPECT_EQ(u->host_header, "127.0.0.1:35417");
  u = ParseStreamUrl("http://[::1]:8080/portforward/x");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8080);
  u = ParseStreamUrl("http://localhost");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->path, "/");
  EXPECT_EQ(ParseStreamUrl("https://127.0.0.1:1/exec/x").status().code(),
            absl::StatusCode::kUnimplemented);
  for (const char* bad : {"127.0.0.1:1/exec/x", "http://:1/x", "http://h:0/x", "http://h:x/",
                          "http://[::1/x", "ftp://h/x"}) {
    EXPECT_EQ(ParseStreamUrl(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(StreamClientTest, UpgradeFailuresSayWhy) {
  static constexpr absl::string_view kV4[] = {kStreamProtocolV4};
  const std::string url = ExecUrl({"echo"}, false, false);
  // The wrong kind of URL for the token: 404, and the token is gone.
  std::string wrong = url;
  wrong.replace(wrong.find("/exec/"), 6, "/attach/");
  absl::StatusOr<UpgradedConnection> c = DialAndUpgrade(wrong, kV4, absl::Seconds(5));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("404 Not Found: 404 page not found"));
  // A protocol the server does not speak: 403.
  static constexpr absl::string_view kPf[] = {kPortForwardProtocolV1};
  c = DialAndUpgrade(ExecUrl({"echo"}, false, false), kPf, absl::Seconds(5));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("403"));
  // Nothing listens.
  const std::string base = server_->BaseUrl();
  server_->Stop();
  c = DialAndUpgrade(base + "/exec/AAAAAAAA", kV4, absl::Seconds(5));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("cannot connect to the streaming server"));
}

// ---- exec ----

TEST_F(StreamClientTest, ExecRelaysStdoutAndReturnsZero) {
  MemFile out, err;
  ExecClient exec(ExecUrl({"echo", "hello", "world"}, false, false),
                  {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
  absl::StatusOr<int> code = exec.Run();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(out.Read(), "hello world\n");
  EXPECT_EQ(err.Read(), "");
  EXPECT_EQ(exec.protocol(), RemoteCommandProtocol::kV4);
}

TEST_F(StreamClientTest, ExecReturnsTheRemoteExitCode) {
  for (int expected : {1, 3, 255}) {
    MemFile out, err;
    ExecClient exec(ExecUrl({"both", std::to_string(expected)}, false, false),
                    {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
    absl::StatusOr<int> code = exec.Run();
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, expected);
    EXPECT_EQ(out.Read(), "out\n");
    EXPECT_EQ(err.Read(), "err\n");
  }
}

TEST_F(StreamClientTest, ExecCopiesStdinAndItsEndClosesTheProcessStdin) {
  // More than the connection's output buffer: Write() has to wait for the socket.
  std::string input;
  for (int i = 0; input.size() < size_t{3} * 1024 * 1024; ++i)
    absl::StrAppend(&input, "line ", i, "\n");
  MemFile in(input), out, err;
  ExecClient exec(ExecUrl({"cat"}, true, false),
                  {.stdin_fd = in.fd(), .stdout_fd = out.fd(), .stderr_fd = err.fd()});
  absl::StatusOr<int> code = exec.Run();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  const std::string got = out.Read();
  EXPECT_EQ(got.size(), input.size());
  EXPECT_TRUE(got == input);
}

TEST_F(StreamClientTest, ExecLargeOutputArrivesWhole) {
  MemFile out, err;
  ExecClient exec(ExecUrl({"big", "5000000"}, false, false),
                  {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
  absl::StatusOr<int> code = exec.Run();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(out.Read().size(), 5000000u);
}

TEST_F(StreamClientTest, ExecWithATerminalSendsSizesOnTheResizeStream) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  sdk::UniqueFd read_end(fds[0]), write_end(fds[1]);
  TerminalSizeQueue sizes;
  sizes.Push({100, 40});
  ExecClient exec(ExecUrl({"sizes", "2"}, false, true),
                  {.stdout_fd = write_end.get(), .tty = true, .sizes = &sizes});
  std::future<absl::StatusOr<int>> result =
      std::async(std::launch::async, [&] { return exec.Run(); });
  std::string out;
  auto read_until = [&](const std::string& want) {
    char buffer[256];
    while (out.find(want) == std::string::npos) {
      pollfd p{read_end.get(), POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return false;
      const ssize_t n = ::read(read_end.get(), buffer, sizeof(buffer));
      if (n <= 0) return false;
      out.append(buffer, static_cast<size_t>(n));
    }
    return true;
  };
  ASSERT_TRUE(read_until("100x40\n")) << out;
  sizes.Push({120, 50});  // SIGWINCH
  ASSERT_TRUE(read_until("120x50\n")) << out;
  absl::StatusOr<int> code = result.get();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(out, "100x40\n120x50\n");
  EXPECT_FALSE(sizes.Next().has_value());  // Run closed the queue
}

TEST_F(StreamClientTest, ExecThatCannotStartIsAnInternalError) {
  MemFile out, err;
  ExecClient exec(ExecUrl({"missing"}, false, false),
                  {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
  absl::StatusOr<int> code = exec.Run();
  EXPECT_EQ(code.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(code.status().message()),
              HasSubstr("error executing command in container: exec: \"missing\""));
}

TEST_F(StreamClientTest, AUsedUrlIsNotFound) {
  const std::string url = ExecUrl({"echo"}, false, false);
  MemFile out, err;
  ASSERT_TRUE(ExecClient(url, {.stdout_fd = out.fd(), .stderr_fd = err.fd()}).Run().ok());
  absl::StatusOr<int> again = ExecClient(url, {.stdout_fd = out.fd(), .stderr_fd = err.fd()}).Run();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
}

// The request asked for stderr but the client opens no stderr stream: the server waits for
// it, gives up and closes without a status. That is no success.
TEST_F(StreamClientTest, AServerThatGivesUpWithoutAStatusIsAnError) {
  StreamingServerOptions options;
  options.stream_creation_timeout = absl::Milliseconds(300);
  StartServer(options);
  MemFile out;
  absl::StatusOr<int> code =
      ExecClient(ExecUrl({"echo"}, false, false), {.stdout_fd = out.fd()}).Run();
  EXPECT_EQ(code.status().code(), absl::StatusCode::kUnavailable) << code.status();
  EXPECT_THAT(std::string(code.status().message()), HasSubstr("without an exit status"));
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(execs_.empty());  // nothing ran
}

TEST_F(StreamClientTest, CancelEndsTheSessionAndLeavesTheProcessDetached) {
  MemFile out, err;
  ExecClient exec(ExecUrl({"hang"}, false, false), {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
  std::future<absl::StatusOr<int>> result =
      std::async(std::launch::async, [&] { return exec.Run(); });
  std::this_thread::sleep_for(300ms);
  const auto start = std::chrono::steady_clock::now();
  exec.Cancel();
  absl::StatusOr<int> code = result.get();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(code.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(StreamClientTest, TheConnectionEndingWithoutAStatusIsUnavailable) {
  MemFile out, err;
  ExecClient exec(ExecUrl({"hang"}, false, false), {.stdout_fd = out.fd(), .stderr_fd = err.fd()});
  std::future<absl::StatusOr<int>> result =
      std::async(std::launch::async, [&] { return exec.Run(); });
  std::this_thread::sleep_for(300ms);
  server_->Stop();  // berthd goes away mid-session
  absl::StatusOr<int> code = result.get();
  EXPECT_EQ(code.status().code(), absl::StatusCode::kUnavailable) << code.status();
  EXPECT_THAT(std::string(code.status().message()),
              HasSubstr("ended before the exec's status arrived"));
}

// ---- attach ----

TEST_F(StreamClientTest, AttachRelaysStdinAndEndsWithSuccess) {
  runtime::v1::AttachRequest req;
  req.set_container_id("c1");
  req.set_stdin(true);
  req.set_stdout(true);
  req.set_stderr(true);
  absl::StatusOr<std::string> url = server_->AttachUrl(req);
  ASSERT_TRUE(url.ok());
  MemFile in("typed\n"), out, err;
  AttachClient attach(*url, {.stdin_fd = in.fd(), .stdout_fd = out.fd(), .stderr_fd = err.fd()});
  absl::StatusOr<int> code = attach.Run();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(out.Read(), "typed\n");
}

// ---- the status on the error stream (§6.6) ----

TEST(DecodeRemoteCommandStatusTest, DecodesAsClientGoDoes) {
  using P = RemoteCommandProtocol;
  for (StatusFlavor flavor : {StatusFlavor::kMetav1, StatusFlavor::kCriStreaming}) {
    EXPECT_EQ(*DecodeRemoteCommandStatus(*V4StatusJson(ExecStatus::Success(), flavor), P::kV4), 0);
    for (int code : {1, 42, 255}) {
      absl::StatusOr<int> got = DecodeRemoteCommandStatus(
          *V4StatusJson(ExecStatus::NonZeroExit(code, "exit"), flavor), P::kV4);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, code);
    }
    absl::StatusOr<int> internal = DecodeRemoteCommandStatus(
        *V4StatusJson(ExecStatus::InternalError("error attaching to container: gone"), flavor),
        P::kV4);
    EXPECT_EQ(internal.status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(internal.status().message(),
              "Internal error occurred: error attaching to container: gone");
  }
  EXPECT_EQ(*DecodeRemoteCommandStatus("", P::kV4), 0);
  // Go's decoder matches keys case-insensitively.
  EXPECT_EQ(*DecodeRemoteCommandStatus(
                R"({"Status":"Failure","Reason":"NonZeroExitCode","Details":{"Causes":)"
                R"([{"Reason":"ExitCode","Message":"7"}]}})",
                P::kV4),
            7);
  for (const char* bad :
       {"not json", R"({"status":"Weird"})", R"({"status":"Failure","reason":"NonZeroExitCode"})",
        R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[]}})",
        R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":)"
        R"([{"reason":"ExitCode","message":"256"}]}})",
        R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":)"
        R"([{"reason":"ExitCode","message":"-1"}]}})"}) {
    absl::StatusOr<int> got = DecodeRemoteCommandStatus(bad, P::kV4);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal) << bad;
    EXPECT_THAT(std::string(got.status().message()), StartsWith("error stream protocol error"))
        << bad;
  }
  absl::StatusOr<int> other =
      DecodeRemoteCommandStatus(R"({"status":"Failure","message":"no such container"})", P::kV4);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(other.status().message(), "no such container");
  // v1-v3: text, failures only.
  absl::StatusOr<int> text = DecodeRemoteCommandStatus("command terminated with ...", P::kV2);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(text.status().message(), "error executing remote command: command terminated with ...");
}

// ---- port forward ----

// A local client of a forwarded port.
std::string RoundTrip(int port, const std::string& payload) {
  absl::StatusOr<sdk::UniqueFd> fd = DialLoopback(port);
  if (!fd.ok()) return "<" + std::string(fd.status().message()) + ">";
  size_t sent = 0;
  while (sent < payload.size()) {
    const ssize_t n = ::send(fd->get(), payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return "<send failed>";
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd->get(), SHUT_WR);  // our EOF: the data stream's FIN
  std::string got;
  char buffer[65536];
  for (;;) {
    pollfd p{fd->get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return got + "<timeout>";
    const ssize_t n = ::read(fd->get(), buffer, sizeof(buffer));
    if (n <= 0) return got;  // the forwarder closed the connection
    got.append(buffer, static_cast<size_t>(n));
  }
}

TEST_F(StreamClientTest, PortForwardCarriesConnectionsBothWays) {
  std::mutex mu;
  std::vector<std::string> errors;
  int connections = 0;
  PortForwardCallbacks callbacks;
  callbacks.on_connection = [&](const PortForwardSpec&) {
    std::lock_guard<std::mutex> lock(mu);
    ++connections;
  };
  callbacks.on_error = [&](const absl::Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    errors.emplace_back(s.message());
  };
  StreamClientOptions options;
  options.ping_period = absl::Milliseconds(20);  // pings interleave with the data
  absl::StatusOr<std::unique_ptr<PortForwardClient>> pf =
      PortForwardClient::Start(PortForwardUrl(), {{0, 80}, {0, 81}}, callbacks, options);
  ASSERT_TRUE(pf.ok()) << pf.status();
  const int port = (*pf)->ports()[0].local_port;
  const int refused = (*pf)->ports()[1].local_port;
  EXPECT_NE(port, 0);
  EXPECT_EQ((*pf)->ports()[0].remote_port, 80);

  EXPECT_EQ(RoundTrip(port, "hello through the pod"), "hello through the pod");
  // Several at once, one of them large.
  std::string big(size_t{2} * 1024 * 1024, 'x');
  for (size_t i = 0; i < big.size(); i += 1000) big[i] = static_cast<char>('a' + i % 26);
  std::vector<std::future<std::string>> parallel;
  parallel.reserve(4);
  for (int i = 0; i < 4; ++i) {
    parallel.push_back(std::async(std::launch::async, [&, i] {
      return RoundTrip(port, i == 0 ? big : "request " + std::to_string(i));
    }));
  }
  EXPECT_TRUE(parallel[0].get() == big);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(parallel[i].get(), "request " + std::to_string(i));

  // A port nothing listens on in the pod: the local connection is closed and the error
  // reported; the forwarder goes on.
  EXPECT_EQ(RoundTrip(refused, "anyone?"), "");
  EXPECT_EQ(RoundTrip(port, "still here"), "still here");
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(connections, 7);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0], absl::StrCat("an error occurred forwarding ", refused,
                                      " -> 81: error forwarding port 81 to pod sb1, uid : dial "
                                      "tcp 127.0.0.1:81: connect: connection refused"));
  }
  (*pf)->Stop();
  EXPECT_TRUE((*pf)->Wait().ok());
  EXPECT_FALSE(DialLoopback(port).ok());  // no longer listening
}

TEST_F(StreamClientTest, PortForwardWaitReturnsWhenTheServerGoesAway) {
  absl::StatusOr<std::unique_ptr<PortForwardClient>> pf =
      PortForwardClient::Start(PortForwardUrl(), {{0, 80}});
  ASSERT_TRUE(pf.ok()) << pf.status();
  std::future<absl::Status> waited = std::async(std::launch::async, [&] { return (*pf)->Wait(); });
  EXPECT_EQ(waited.wait_for(200ms), std::future_status::timeout);
  server_->Stop();
  ASSERT_EQ(waited.wait_for(5s), std::future_status::ready);
  absl::Status s = waited.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ended the port-forward session"));
}

TEST_F(StreamClientTest, PortForwardRefusesABusyLocalPortBeforeDialling) {
  absl::StatusOr<std::unique_ptr<PortForwardClient>> first =
      PortForwardClient::Start(PortForwardUrl(), {{0, 80}});
  ASSERT_TRUE(first.ok()) << first.status();
  const int busy = (*first)->ports()[0].local_port;
  absl::StatusOr<std::unique_ptr<PortForwardClient>> second =
      PortForwardClient::Start(PortForwardUrl(), {{busy, 80}});
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("cannot listen on 127.0.0.1:", busy)));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("EADDRINUSE"));
  EXPECT_EQ(PortForwardClient::Start(PortForwardUrl(), {{0, 0}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cri::streaming
