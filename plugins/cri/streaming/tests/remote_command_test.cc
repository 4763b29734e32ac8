// SPDX-License-Identifier: Apache-2.0
// Exec and attach sessions (remote_command.h) through a real StreamingServer on 127.0.0.1,
// driven by the SPDY test client, with a scripted process behind them: the stream wait of
// §6.2, stdin and resize delivery, the exit status and closing sequence of §6.6-§6.7, and
// what happens when the client or the server goes away.
#include "plugins/cri/streaming/remote_command.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/server.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"

namespace berth::cri::streaming {
namespace {

using spdy::testing::PortForwardClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

constexpr char kSuccess[] = "{\"metadata\":{},\"status\":\"Success\"}";

// What the test scripts and observes of the one process behind a session.
struct Script {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
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

class ScriptedProcess : public StreamedProcess {
 public:
  explicit ScriptedProcess(std::shared_ptr<Script> s) : s_(std::move(s)) {}
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
    s_->stdin_data.append(data.data(), data.size());
    s_->cv.notify_all();
    return absl::OkStatus();
  }
  void CloseStdin() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->stdin_closed = true;
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

class RemoteCommandTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(StreamingServerOptions{}); }

  void StartServer(StreamingServerOptions options) {
    if (server_) server_->Stop();
    auto start = [this]() -> absl::StatusOr<std::unique_ptr<StreamedProcess>> {
      if (!backend_error_.ok()) return backend_error_;
      {
        std::lock_guard<std::mutex> lock(script_->mu);
        script_->started++;
        script_->cv.notify_all();
      }
      return std::make_unique<ScriptedProcess>(script_);
    };
    server_ = std::make_unique<StreamingServer>(
        options,
        [](const std::string&, int) -> absl::StatusOr<sdk::UniqueFd> {
          return absl::UnavailableError("no port-forward here");
        },
        [start](const runtime::v1::ExecRequest&) { return start(); },
        [start](const runtime::v1::AttachRequest&) { return start(); });
    ASSERT_TRUE(server_->Start().ok());
  }

  std::string ExecUrl(bool in, bool out, bool err, bool tty,
                      std::vector<std::string> cmd = {"sh", "-c", "exit 3"}) {
    runtime::v1::ExecRequest req;
    req.set_container_id("c1");
    for (auto& a : cmd) req.add_cmd(a);
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
  void Upgrade(PortForwardClient& c, const std::string& url,
               const std::string& protocol = "v4.channel.k8s.io") {
    ASSERT_TRUE(c.Connect(url));
    ASSERT_THAT(c.Upgrade("POST", protocol), StartsWith("HTTP/1.1 101"));
  }
  bool Started() {
    std::lock_guard<std::mutex> lock(script_->mu);
    return script_->started > 0;
  }

  std::shared_ptr<Script> script_ = std::make_shared<Script>();
  absl::Status backend_error_;
  std::unique_ptr<StreamingServer> server_;
};

TEST_F(RemoteCommandTest, StartsOnceEveryStreamIsThereAndEndsWithTheStatus) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(true, true, true, false));
  const uint32_t error = c.OpenTyped("error");
  const uint32_t in = c.OpenTyped("stdin");
  const uint32_t out = c.OpenTyped("stdout");
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(out).replied; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(Started()) << "started before the stderr stream was there";
  const uint32_t err = c.OpenTyped("stderr");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));

  script_->Emit(StreamType::kStdout, "out-data\n");
  script_->Emit(StreamType::kStderr, "err-data\n");
  script_->Exit(3);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(out).data, "out-data\n");
  EXPECT_EQ(c.stream(err).data, "err-data\n");
  EXPECT_TRUE(c.stream(out).fin);
  EXPECT_TRUE(c.stream(err).fin);
  EXPECT_THAT(c.stream(error).data,
              HasSubstr("\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":"
                        "\"ExitCode\",\"message\":\"3\"}]}"));
  EXPECT_THAT(c.stream(error).data, HasSubstr("error executing command [sh -c exit 3]"));
  // §6.7: what we did not finish is reset (error, stdin); stdout/stderr ended with FIN.
  EXPECT_TRUE(c.stream(error).reset);
  EXPECT_TRUE(c.stream(in).reset);
  EXPECT_FALSE(c.stream(out).reset);
  EXPECT_TRUE(c.ReadUntil([&] { return c.eof(); }, 3s) || c.eof()) << "connection not closed";
}

TEST_F(RemoteCommandTest, StdinSentBeforeTheStartIsDeliveredAndItsEndClosesStdin) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(true, true, false, false));
  c.OpenTyped("error");
  const uint32_t in = c.OpenTyped("stdin");
  ASSERT_TRUE(c.Send(in, "early "));
  c.OpenTyped("stdout");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->stdin_data == "early "; }));
  ASSERT_TRUE(c.Send(in, "late"));
  ASSERT_TRUE(c.Fin(in));
  ASSERT_TRUE(script_->WaitFor([&] { return script_->stdin_closed; }));
  EXPECT_EQ(script_->stdin_data, "early late");
  script_->Exit(0);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(1).data, kSuccess);
}

TEST_F(RemoteCommandTest, ResizesReachTheProcessAndTtyStdinEndStopsTheOutput) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(true, true, false, true));
  c.OpenTyped("error");
  const uint32_t in = c.OpenTyped("stdin");
  const uint32_t out = c.OpenTyped("stdout");
  const uint32_t resize = c.OpenTyped("resize");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  ASSERT_TRUE(c.Send(resize, "{\"Width\":100,"));
  ASSERT_TRUE(c.Send(resize, "\"Height\":40}\n{\"width\":0,\"height\":5}{\"Width\":80,\"Height\":24}"));
  ASSERT_TRUE(script_->WaitFor([&] { return script_->sizes.size() == 2; }));
  EXPECT_THAT(script_->sizes, ElementsAre(TerminalSize{100, 40}, TerminalSize{80, 24}));

  script_->Emit(StreamType::kStdout, "prompt$ ");
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(out).data == "prompt$ "; }));
  // With a tty the end of input ends the output relay (FIN), not the process's stdin (§6.4).
  ASSERT_TRUE(c.Fin(in));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(out).fin; }));
  EXPECT_FALSE(script_->stdin_closed);
  script_->Emit(StreamType::kStdout, "not relayed");
  script_->Exit(0);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(out).data, "prompt$ ");
  EXPECT_EQ(c.stream(1).data, kSuccess);
}

// A terminal session starts once the client's first size is there (or after a second
// without one): the process is created with it.
TEST_F(RemoteCommandTest, ATerminalSessionStartsWithTheFirstSize) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(false, true, false, true));
  c.OpenTyped("error");
  c.OpenTyped("stdout");
  const uint32_t resize = c.OpenTyped("resize");
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(resize).replied; }));
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(Started()) << "started before the first size";
  ASSERT_TRUE(c.Send(resize, "{\"Width\":120,\"Height\":50}"));
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  ASSERT_TRUE(script_->WaitFor([&] { return !script_->sizes.empty(); }));
  EXPECT_EQ(script_->sizes.front(), (TerminalSize{120, 50}));
  script_->Exit(0);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));

  // No size at all: it starts anyway after a second.
  auto other = std::make_shared<Script>();
  script_ = other;
  PortForwardClient late;
  Upgrade(late, ExecUrl(false, true, false, true));
  late.OpenTyped("error");
  late.OpenTyped("stdout");
  late.OpenTyped("resize");
  ASSERT_TRUE(other->WaitFor([&] { return other->started == 1; }, 3s));
  other->Exit(0);
  ASSERT_TRUE(late.ReadUntil([&] { return late.goaway(); }));
}

TEST_F(RemoteCommandTest, MissingStreamsTimeOutWithoutStartingAnything) {
  StreamingServerOptions options;
  options.stream_creation_timeout = absl::Milliseconds(300);
  StartServer(options);
  PortForwardClient c;
  Upgrade(c, ExecUrl(false, true, true, false));
  c.OpenTyped("error");
  c.OpenTyped("stdout");  // no stderr ever
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }, 5s));
  EXPECT_FALSE(Started());
}

TEST_F(RemoteCommandTest, ASecondStreamOfATypeIsResetAndUnaskedStreamsGetNothing) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(false, true, false, false));
  const uint32_t error = c.OpenTyped("error");
  const uint32_t stderr_stream = c.OpenTyped("stderr");  // not asked for: accepted, unused
  const uint32_t unknown = c.OpenTyped("telemetry");     // unknown type: accepted, not counted
  const uint32_t out = c.OpenTyped("stdout");
  const uint32_t out2 = c.OpenTyped("stdout");
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(out2).reset; }));
  EXPECT_TRUE(c.stream(stderr_stream).replied);
  EXPECT_TRUE(c.stream(unknown).replied);
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  script_->Emit(StreamType::kStderr, "must not appear");
  script_->Emit(StreamType::kStdout, "ok");
  script_->Exit(0);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(out).data, "ok");
  EXPECT_EQ(c.stream(stderr_stream).data, "");
  EXPECT_TRUE(c.stream(stderr_stream).reset);
  EXPECT_EQ(c.stream(error).data, kSuccess);
}

TEST_F(RemoteCommandTest, ABackendErrorIsAnInternalErrorStatus) {
  backend_error_ = absl::FailedPreconditionError("container c1 is exited, not running");
  PortForwardClient c;
  Upgrade(c, ExecUrl(false, true, false, false));
  const uint32_t error = c.OpenTyped("error");
  const uint32_t out = c.OpenTyped("stdout");
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(error).data,
            "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error occurred: error "
            "executing command in container: container c1 is exited, not running\",\"reason\":"
            "\"InternalError\",\"details\":{\"causes\":[{\"message\":\"error executing command "
            "in container: container c1 is exited, not running\"}]},\"code\":500}");
  EXPECT_TRUE(c.stream(out).fin);

  PortForwardClient a;
  Upgrade(a, AttachUrl(false, true, false));
  a.OpenTyped("error");
  a.OpenTyped("stdout");
  ASSERT_TRUE(a.ReadUntil([&] { return a.goaway(); }));
  EXPECT_THAT(a.stream(1).data, HasSubstr("error attaching to container: container c1"));
}

TEST_F(RemoteCommandTest, AttachEndsWithSuccessWhateverTheExitCode) {
  PortForwardClient c;
  Upgrade(c, AttachUrl(false, true, false));
  c.OpenTyped("error");
  const uint32_t out = c.OpenTyped("stdout");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  script_->Emit(StreamType::kStdout, "log line\n");
  script_->Exit(7);
  ASSERT_TRUE(c.ReadUntil([&] { return c.goaway(); }));
  EXPECT_EQ(c.stream(out).data, "log line\n");
  EXPECT_EQ(c.stream(1).data, kSuccess);
}

TEST_F(RemoteCommandTest, AClientThatLeavesDetachesTheProcessAndGetsNoStatus) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(true, true, false, false));
  c.OpenTyped("error");
  c.OpenTyped("stdin");
  c.OpenTyped("stdout");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  ASSERT_TRUE(c.GoAway());
  ASSERT_TRUE(script_->WaitFor([&] { return script_->detached; }));
  EXPECT_TRUE(script_->stdin_closed);
  c.ReadUntil([&] { return c.eof(); }, 3s);
  EXPECT_EQ(c.stream(1).data, "");
}

TEST_F(RemoteCommandTest, StoppingTheServerEndsARunningSession) {
  PortForwardClient c;
  Upgrade(c, ExecUrl(false, true, false, false));
  c.OpenTyped("error");
  c.OpenTyped("stdout");
  ASSERT_TRUE(script_->WaitFor([&] { return script_->started == 1; }));
  const auto before = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  EXPECT_TRUE(script_->detached);
}

TEST_F(RemoteCommandTest, TokensAreOfOneKindAndSingleUse) {
  const std::string url = ExecUrl(false, true, false, false);
  // An exec token presented at the attach path: 404, and it is gone.
  std::string attach_path = url;
  attach_path.replace(attach_path.find("/exec/"), 6, "/attach/");
  PortForwardClient wrong;
  ASSERT_TRUE(wrong.Connect(attach_path));
  EXPECT_THAT(wrong.Upgrade("POST", "v4.channel.k8s.io"), StartsWith("HTTP/1.1 404"));
  PortForwardClient late;
  ASSERT_TRUE(late.Connect(url));
  EXPECT_THAT(late.Upgrade("POST", "v4.channel.k8s.io"), StartsWith("HTTP/1.1 404"));
  // A port-forward protocol on an exec URL: 403 naming the remote-command protocols.
  PortForwardClient proto;
  ASSERT_TRUE(proto.Connect(ExecUrl(false, true, false, false)));
  const std::string head = proto.Upgrade("POST", "portforward.k8s.io");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(head, HasSubstr("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));
}

}  // namespace
}  // namespace berth::cri::streaming
