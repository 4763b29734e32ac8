// SPDX-License-Identifier: Apache-2.0
// Framing (byte-exact against containerd/ttrpc PROTOCOL.md) and client/server loopback.
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "berth/ttrpc/client.h"
#include "berth/ttrpc/frame.h"
#include "berth/ttrpc/server.h"
#include "gtest/gtest.h"
#include "shim/task/v2/shim.pb.h"
#include "shim/ttrpc/request.pb.h"
#include "tests/support/test_support.h"

namespace berth::ttrpc {
namespace {

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

TEST(FrameTest, EncodesRequestByteExact) {
  ::ttrpc::Request req;
  req.set_service("svc");
  req.set_method("m");
  req.set_payload(std::string("\x01", 1));
  req.set_timeout_nano(1000000000);
  Frame f{1, kTypeRequest, 0, {}};
  ASSERT_TRUE(req.SerializeToString(&f.data));
  absl::StatusOr<std::string> bytes = EncodeFrame(f);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // length=17 (BE) | stream 1 (BE) | type 0x01 request | flags 0 |
  // 0a 03 "svc" | 12 01 "m" | 1a 01 01 | 20 varint(1e9)
  EXPECT_EQ(Hex(*bytes),
            "00000011"
            "00000001"
            "01"
            "00"
            "0a03737663"
            "12016d"
            "1a0101"
            "208094ebdc03");
}

TEST(FrameTest, EncodesResponseHeaderWithHighStreamId) {
  Frame f{0x01020305, kTypeResponse, 0, "ab"};
  absl::StatusOr<std::string> bytes = EncodeFrame(f);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(Hex(*bytes),
            "00000002"
            "01020305"
            "02"
            "00"
            "6162");
}

TEST(FrameTest, ShimConnectRequestEncoding) {
  containerd::task::v2::ConnectRequest req;
  req.set_id("c1");
  std::string out;
  ASSERT_TRUE(req.SerializeToString(&out));
  EXPECT_EQ(Hex(out), "0a026331");
}

TEST(FrameTest, DecodeRoundTrip) {
  Frame f{7, kTypeData, kFlagRemoteClosed | kFlagNoData, ""};
  absl::StatusOr<std::string> bytes = EncodeFrame(f);
  ASSERT_TRUE(bytes.ok());
  std::size_t consumed = 0;
  absl::StatusOr<Frame> back = DecodeFrame(*bytes + "trailing", &consumed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(consumed, kHeaderSize);
  EXPECT_EQ(back->stream_id, 7u);
  EXPECT_EQ(back->type, kTypeData);
  EXPECT_EQ(back->flags, kFlagRemoteClosed | kFlagNoData);
  EXPECT_TRUE(back->data.empty());
}

TEST(FrameTest, TruncatedHeaderIsAnError) {
  std::string bytes("\x00\x00\x00\x01\x00", 5);
  absl::StatusOr<Frame> f = DecodeFrame(bytes);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(DecodeFrame("").ok());
}

TEST(FrameTest, TruncatedDataIsAnError) {
  std::string bytes(
      "\x00\x00\x00\x05\x00\x00\x00\x01\x01\x00"
      "abc",
      13);
  absl::StatusOr<Frame> f = DecodeFrame(bytes);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("truncated"), std::string_view::npos);
}

TEST(FrameTest, OversizedHeaderIsRejected) {
  // 4 MiB + 1 declared.
  std::string bytes("\x00\x40\x00\x01\x00\x00\x00\x03\x02\x00", 10);
  FrameHeader h;
  absl::StatusOr<FrameHeader> parsed = DecodeHeader(bytes, &h);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(h.length, kMaxDataSize + 1);
  EXPECT_EQ(h.stream_id, 3u);
  EXPECT_EQ(DecodeFrame(bytes).status().code(), absl::StatusCode::kResourceExhausted);
  // Exactly 4 MiB is allowed.
  std::string max("\x00\x40\x00\x00\x00\x00\x00\x03\x02\x00", 10);
  EXPECT_TRUE(DecodeHeader(max).ok());
}

TEST(FrameTest, OversizedEncodeIsRejected) {
  Frame f{1, kTypeRequest, 0, std::string(kMaxDataSize + 1, 'x')};
  absl::StatusOr<std::string> bytes = EncodeFrame(f);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(bytes.status().message().find("4 MiB"), std::string_view::npos);
}

// A temporary directory under /tmp/berth-*, removed with its contents.
class TempDir : public berth::testing::TempDir {
 public:
  TempDir() : berth::testing::TempDir("ttrpc") {}
};

constexpr char kService[] = "berth.test.Echo";

class LoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    socket_ = dir_.File("ttrpc.sock");
    server_ = std::make_unique<Server>();
    server_->Register(kService, "Echo",
                      [](const std::string& payload,
                         const CallContext&) -> absl::StatusOr<std::string> { return payload; });
    server_->Register(kService, "Fail",
                      [](const std::string&, const CallContext&) -> absl::StatusOr<std::string> {
                        return absl::NotFoundError("container c1 not found");
                      });
    server_->Register(
        kService, "Sleep",
        [this](const std::string& payload, const CallContext& ctx) -> absl::StatusOr<std::string> {
          last_deadline_ = ctx.deadline;
          ++sleeping_;
          absl::SleepFor(absl::Milliseconds(std::stoi(payload)));
          return std::string("slept");
        });
    server_->Register(kService, "Big",
                      [](const std::string&, const CallContext&) -> absl::StatusOr<std::string> {
                        return std::string(kMaxDataSize, 'x');
                      });
    ASSERT_TRUE(server_->Listen(socket_).ok());
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(1));
  }

  absl::StatusOr<std::unique_ptr<Client>> Dial() {
    return Client::Connect(socket_, absl::Seconds(5));
  }

  TempDir dir_;
  std::string socket_;
  std::unique_ptr<Server> server_;
  // Waits until `n` Sleep handlers have started.
  bool WaitForSleepers(int n) {
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (sleeping_.load() < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  std::atomic<int> sleeping_{0};
  std::atomic<absl::Time> last_deadline_;
};

TEST_F(LoopbackTest, UnaryCall) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Echo", "hello", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "hello");
  // Empty payloads work too.
  r = (*client)->CallRaw(kService, "Echo", "", absl::InfiniteFuture());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "");
}

TEST_F(LoopbackTest, TypedCall) {
  server_->Shutdown(absl::ZeroDuration());
  server_ = std::make_unique<Server>();
  server_->Register(
      "containerd.task.v2.Task", "Connect",
      [](const std::string& payload, const CallContext&) -> absl::StatusOr<std::string> {
        containerd::task::v2::ConnectRequest req;
        if (!req.ParseFromString(payload)) return absl::InvalidArgumentError("x");
        containerd::task::v2::ConnectResponse resp;
        resp.set_shim_pid(42);
        resp.set_version(req.id());
        return resp.SerializeAsString();
      });
  ASSERT_TRUE(server_->Listen(socket_).ok());
  ASSERT_TRUE(server_->Start().ok());
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  containerd::task::v2::ConnectRequest req;
  req.set_id("c1");
  auto resp =
      (*client)->Call<containerd::task::v2::ConnectRequest, containerd::task::v2::ConnectResponse>(
          "containerd.task.v2.Task", "Connect", req, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->shim_pid(), 42u);
  EXPECT_EQ(resp->version(), "c1");
}

TEST_F(LoopbackTest, FiftyConcurrentCallsFromEightThreads) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  std::atomic<int> ok{0};
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < 50; i = next++) {
        std::string payload = absl::StrCat("call-", i, std::string(i * 1000, 'p'));
        absl::StatusOr<std::string> r =
            (*client)->CallRaw(kService, "Echo", payload, absl::Now() + absl::Seconds(10));
        if (r.ok() && *r == payload) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 50);
}

TEST_F(LoopbackTest, DeadlineExceeded) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Sleep", "500", start + absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(400));
  // The server saw the deadline through timeout_nano.
  ASSERT_TRUE(WaitForSleepers(1));
  EXPECT_LT(last_deadline_.load(), start + absl::Milliseconds(200));
  // The connection is still usable; the late response is dropped.
  absl::SleepFor(absl::Milliseconds(500));
  r = (*client)->CallRaw(kService, "Echo", "still", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "still");
}

TEST_F(LoopbackTest, ServerErrorPropagatesCodeAndMessage) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Fail", "", absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "container c1 not found");
}

TEST_F(LoopbackTest, UnknownMethodIsUnimplemented) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Nope", "", absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented) << r.status();
  r = (*client)->CallRaw("no.such.Service", "Echo", "", absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented) << r.status();
}

TEST_F(LoopbackTest, OversizedResponseFailsOnlyThatCall) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Big", "", absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  r = (*client)->CallRaw(kService, "Echo", "after", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  // An oversized request is refused before anything is sent.
  r = (*client)->CallRaw(kService, "Echo", std::string(kMaxDataSize, 'x'),
                         absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  r = (*client)->CallRaw(kService, "Echo", "after", absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST_F(LoopbackTest, StreamingRequestIsRefused) {
  // A raw client sends a request with the `remote open` flag.
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", socket_.c_str());
  sdk::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
  ::ttrpc::Request req;
  req.set_service(kService);
  req.set_method("Echo");
  Frame f{1, kTypeRequest, kFlagRemoteOpen, req.SerializeAsString()};
  ASSERT_TRUE(WriteFrame(fd.get(), f).ok());
  absl::StatusOr<Frame> resp = ReadFrame(fd.get());
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->type, kTypeResponse);
  EXPECT_EQ(resp->stream_id, 1u);
  ::ttrpc::Response parsed;
  ASSERT_TRUE(parsed.ParseFromString(resp->data));
  EXPECT_EQ(parsed.status().code(), static_cast<int>(absl::StatusCode::kUnimplemented));
}

TEST_F(LoopbackTest, ConnectionDropFailsPendingCallsPromptly) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::thread> threads;
  std::atomic<int> unavailable{0};
  absl::Time start = absl::Now();
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      absl::StatusOr<std::string> r =
          (*client)->CallRaw(kService, "Sleep", "3000", absl::Now() + absl::Seconds(30));
      if (r.status().code() == absl::StatusCode::kUnavailable) ++unavailable;
    });
  }
  ASSERT_TRUE(WaitForSleepers(4));
  // Drop the server side: its connections close (handlers keep running until they finish).
  std::thread stopper([&] { server_->Shutdown(absl::ZeroDuration()); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(unavailable.load(), 4);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(2500));
  EXPECT_FALSE((*client)->connected());
  absl::StatusOr<std::string> r =
      (*client)->CallRaw(kService, "Echo", "x", absl::Now() + absl::Seconds(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  stopper.join();
  server_.reset();
}

TEST_F(LoopbackTest, ClientCloseFailsPendingCalls) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  std::thread caller([&] {
    absl::StatusOr<std::string> r =
        (*client)->CallRaw(kService, "Sleep", "1000", absl::InfiniteFuture());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  });
  ASSERT_TRUE(WaitForSleepers(1));
  (*client)->Close();
  caller.join();
}

// Many calls in flight without a thread each: answered on the reader thread, in any order;
// those still pending when the connection goes fail with UNAVAILABLE, each exactly once.
TEST_F(LoopbackTest, AsyncCallsCompleteOnceWithoutThreads) {
  auto client = Dial();
  ASSERT_TRUE(client.ok()) << client.status();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> answers;
  int unavailable = 0, calls = 0;
  auto done = [&](absl::StatusOr<std::string> r) {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    if (r.ok()) answers.push_back(*r);
    if (r.status().code() == absl::StatusCode::kUnavailable) ++unavailable;
    cv.notify_all();
  };
  for (int i = 0; i < 20; ++i) (*client)->CallRawAsync(kService, "Echo", std::to_string(i), done);
  (*client)->CallRawAsync(kService, "Fail", "", [&](absl::StatusOr<std::string> r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
    done(std::move(r));
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return calls == 21; }));
  }
  EXPECT_EQ(answers.size(), 20u);
  // Two long calls pending when the client closes.
  (*client)->CallRawAsync(kService, "Sleep", "2000", done);
  (*client)->CallRawAsync(kService, "Sleep", "2000", done);
  ASSERT_TRUE(WaitForSleepers(2));
  (*client)->Close();
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return calls == 23; }));
  }
  EXPECT_EQ(unavailable, 2);
  // After the close, a call fails at once, on the caller's thread.
  bool called = false;
  (*client)->CallRawAsync(kService, "Echo", "x", [&](absl::StatusOr<std::string> r) {
    called = true;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  });
  EXPECT_TRUE(called);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(calls, 23);  // nothing completed twice
}

TEST(ClientTest, ConnectTimesOutWhenNoServer) {
  TempDir dir;
  absl::Time start = absl::Now();
  auto client = Client::Connect(dir.File("none.sock"), absl::Milliseconds(200));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded) << client.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

TEST(ClientTest, ConnectWaitsForLateServer) {
  TempDir dir;
  std::string path = dir.File("late.sock");
  Server server;
  server.Register(
      kService, "Echo",
      [](const std::string& p, const CallContext&) -> absl::StatusOr<std::string> { return p; });
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(server.Listen(path).ok());
    ASSERT_TRUE(server.Start().ok());
  });
  auto client = Client::Connect("unix://" + path, absl::Seconds(5));
  starter.join();
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->CallRaw(kService, "Echo", "late", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "late");
  server.Shutdown(absl::Seconds(1));
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace berth::ttrpc
