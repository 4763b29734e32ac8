// SPDX-License-Identifier: Apache-2.0
// Exec and attach end to end: the CRI Exec/Attach RPCs of a real berthd return URLs on its
// streaming server; a SPDY client written from the protocol reference (as client-go drives
// it: upgrade, error/stdin/stdout/stderr/resize streams) runs commands in busybox containers
// started by runc through berth-shim, with and without a terminal.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"
#include "plugins/cri/streaming/tests/websocket_client.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using StreamClient = cri::spdy::testing::PortForwardClient;

constexpr char kV4[] = "v4.channel.k8s.io";

struct Streams {
  uint32_t error = 0, in = 0, out = 0, err = 0, resize = 0;
};

class PodStreamTest : public PodFixture<> {
 protected:
  void SetUp() override {
    StartHarness("stream");
    if (h_ == nullptr) return;
    pod_ = h_->NewPod("stream");
    grpc::Status s = h_->RunPod(pod_, &pod_id_);
    ASSERT_TRUE(s.ok()) << Describe(s) << h_->LogTail();
  }

  // Creates and starts a container of the pod; its id.
  std::string Run(v1::ContainerConfig c) {
    std::string id;
    grpc::Status s = h_->RunContainer(pod_id_, pod_, c, &id);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (!s.ok()) return "";
    EXPECT_TRUE(h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10)));
    return id;
  }
  std::string RunSleeper() {
    return Run(h_->NewContainer(pod_, "sleeper", {"sleep", "1000"}));
  }

  std::string ExecUrl(const std::string& id, std::vector<std::string> cmd, bool in, bool out,
                      bool err, bool tty) {
    v1::ExecRequest req;
    req.set_container_id(id);
    for (auto& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(out);
    req.set_stderr(err);
    req.set_tty(tty);
    v1::ExecResponse resp;
    grpc::Status s = h_->rt().Exec(CriContext().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp.url();
  }

  // Connects, upgrades with `protocol` and opens the streams as client-go does (error first).
  Streams Open(StreamClient& c, const std::string& url, bool in, bool out, bool err, bool tty,
               const std::string& protocol = kV4) {
    Streams s;
    EXPECT_TRUE(c.Connect(url)) << url;
    const std::string head = c.Upgrade("POST", protocol);
    EXPECT_THAT(head, StartsWith("HTTP/1.1 101")) << head;
    s.error = c.OpenTyped("error");
    if (in) s.in = c.OpenTyped("stdin");
    if (out) s.out = c.OpenTyped("stdout");
    if (err) s.err = c.OpenTyped("stderr");
    if (tty && protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io") {
      s.resize = c.OpenTyped("resize");
    }
    return s;
  }

  // Reads until the session is over (GOAWAY or EOF).
  void ReadToEnd(StreamClient& c, seconds timeout = seconds(20)) {
    EXPECT_TRUE(c.ReadUntil([&] { return c.goaway(); }, timeout) || c.eof())
        << "the session did not end";
  }

  // The exec FIFOs in berthd's state, once none is left or after 5 s.
  std::vector<std::string> FifosLeft() {
    const fs::path fifos = h_->daemon().state() / "io.berth.cri" / "exec";
    std::vector<std::string> left;
    for (int i = 0; i < 100; ++i) {
      left.clear();
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(fifos, ec)) left.push_back(e.path().filename());
      if (left.empty()) break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return left;
  }

  v1::PodSandboxConfig pod_;
  std::string pod_id_;
};

TEST_F(PodStreamTest, ExecRelaysStdoutStderrAndTheExitCode) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  const std::vector<std::string> cmd = {"sh", "-c", "echo out-data; echo err-data >&2; exit 3"};
  const std::string url = ExecUrl(id, cmd, false, true, true, false);
  EXPECT_THAT(url, StartsWith("http://127.0.0.1:"));
  EXPECT_THAT(url, HasSubstr("/exec/"));
  StreamClient c;
  Streams s = Open(c, url, false, true, true, false);
  ReadToEnd(c);
  EXPECT_EQ(c.stream(s.out).data, "out-data\n");
  EXPECT_EQ(c.stream(s.err).data, "err-data\n");
  EXPECT_TRUE(c.stream(s.out).fin);
  EXPECT_TRUE(c.stream(s.err).fin);
  // The exact v4 Status of the reference server (kubernetes-streaming.md §6.6).
  EXPECT_EQ(c.stream(s.error).data,
            "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with "
            "non-zero exit code: error executing command [sh -c echo out-data; echo err-data "
            "\\u003e\\u00262; exit 3], exit code 3\",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":"
            "[{\"reason\":\"ExitCode\",\"message\":\"3\"}]}}");
  EXPECT_TRUE(c.stream(s.error).reset);

  // Success, and exit code 255.
  StreamClient ok;
  Streams o = Open(ok, ExecUrl(id, {"true"}, false, true, true, false), false, true, true, false);
  ReadToEnd(ok);
  EXPECT_EQ(ok.stream(o.error).data, "{\"metadata\":{},\"status\":\"Success\"}");
  StreamClient high;
  Streams hs = Open(high, ExecUrl(id, {"sh", "-c", "exit 255"}, false, true, false, false), false,
                    true, false, false);
  ReadToEnd(high);
  EXPECT_THAT(high.stream(hs.error).data,
              HasSubstr("{\"reason\":\"ExitCode\",\"message\":\"255\"}"));

  // The URL was used: 404 now.
  StreamClient again;
  ASSERT_TRUE(again.Connect(url));
  EXPECT_THAT(again.Upgrade("POST", kV4), StartsWith("HTTP/1.1 404"));
  // Every exec ended: no FIFO is left (the server side finishes just after the client).
  EXPECT_THAT(FifosLeft(), ::testing::IsEmpty());
}

TEST_F(PodStreamTest, ExecStdinReachesTheProcessAndItsEndClosesIt) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  StreamClient c;
  Streams s = Open(c, ExecUrl(id, {"cat"}, true, true, true, false), true, true, true, false);
  ASSERT_TRUE(c.Send(s.in, "hello\n"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(s.out).data == "hello\n"; }))
      << c.stream(s.out).data;
  ASSERT_TRUE(c.Send(s.in, "world\n"));
  ASSERT_TRUE(c.Fin(s.in));  // echo x | kubectl exec -i: cat ends with its input
  ReadToEnd(c);
  EXPECT_EQ(c.stream(s.out).data, "hello\nworld\n");
  EXPECT_EQ(c.stream(s.error).data, "{\"metadata\":{},\"status\":\"Success\"}");
}

TEST_F(PodStreamTest, ExecLargeOutputArrivesWhole) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  // 20 MB: far more than any pipe, FIFO or shim buffer holds.
  StreamClient c;
  Streams s = Open(c, ExecUrl(id, {"sh", "-c", "seq 1 2400000"}, false, true, false, false),
                   false, true, false, false);
  ReadToEnd(c, seconds(60));
  std::string expected;
  for (int i = 1; i <= 2400000; ++i) absl::StrAppend(&expected, i, "\n");
  EXPECT_EQ(c.stream(s.out).data.size(), expected.size());
  EXPECT_TRUE(c.stream(s.out).data == expected) << "the output differs";
  EXPECT_EQ(c.stream(s.error).data, "{\"metadata\":{},\"status\":\"Success\"}");
}

// The client leaves before the command ends: the command runs on (as with containerd), and
// its exec is cleaned up once it exits.
TEST_F(PodStreamTest, ExecOutlivesAClientThatLeaves) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  StreamClient c;
  Streams s = Open(c, ExecUrl(id, {"sh", "-c", "sleep 1; echo finished > /tmp/marker"}, false,
                              true, false, false),
                   false, true, false, false);
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(s.out).replied; }));
  ASSERT_TRUE(c.GoAway());
  v1::ExecSyncResponse r;
  bool finished = false;
  for (int i = 0; i < 50 && !finished; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(h_->ExecSync(id, {"cat", "/tmp/marker"}, 5, &r).ok());
    finished = r.stdout() == "finished\n";
  }
  EXPECT_TRUE(finished) << "the exec was stopped with its client";
  EXPECT_THAT(FifosLeft(), ::testing::IsEmpty());
}

TEST_F(PodStreamTest, ExecWithATerminalAppliesResizesAndSetsTerm) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  StreamClient c;
  Streams s = Open(c,
                   ExecUrl(id, {"sh", "-c", "stty size; echo term=$TERM; tty"}, true,
                           true, false, true),
                   true, true, false, true);
  ASSERT_NE(s.resize, 0u);
  ASSERT_TRUE(c.Send(s.resize, "{\"Width\":100,\"Height\":40}\n"));
  ReadToEnd(c);
  const std::string& out = c.stream(s.out).data;
  EXPECT_THAT(out, HasSubstr("40 100\r\n"));
  EXPECT_THAT(out, HasSubstr("term=xterm\r\n"));
  EXPECT_THAT(out, HasSubstr("/dev/pts/"));
  EXPECT_EQ(c.stream(s.error).data, "{\"metadata\":{},\"status\":\"Success\"}");
}

TEST_F(PodStreamTest, OlderProtocolsWriteFailuresAsText) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  StreamClient c;
  Streams s = Open(c, ExecUrl(id, {"sh", "-c", "echo v2; exit 4"}, false, true, true, false),
                   false, true, true, false, "v2.channel.k8s.io");
  ReadToEnd(c);
  EXPECT_EQ(c.stream(s.out).data, "v2\n");
  EXPECT_EQ(c.stream(s.error).data,
            "command terminated with non-zero exit code: error executing command [sh -c echo "
            "v2; exit 4], exit code 4");
  StreamClient ok;
  Streams o = Open(ok, ExecUrl(id, {"true"}, false, true, true, false), false, true, true, false,
                   "v3.channel.k8s.io");
  ReadToEnd(ok);
  EXPECT_EQ(ok.stream(o.error).data, "");
}

TEST_F(PodStreamTest, ExecOfAMissingProgramIsAnInternalError) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  StreamClient c;
  Streams s = Open(c, ExecUrl(id, {"/no/such/program"}, false, true, true, false), false, true,
                   true, false);
  ReadToEnd(c);
  const std::string& status = c.stream(s.error).data;
  EXPECT_THAT(status, HasSubstr("\"reason\":\"InternalError\""));
  EXPECT_THAT(status, HasSubstr("error executing command in container: "));
  EXPECT_THAT(status, HasSubstr("/no/such/program"));
  EXPECT_THAT(status, HasSubstr("\"code\":500"));
}

TEST_F(PodStreamTest, RpcsRefuseBadRequests) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  auto exec = [&](const std::string& cid, std::vector<std::string> cmd, bool in, bool out,
                  bool err, bool tty) {
    v1::ExecRequest req;
    req.set_container_id(cid);
    for (auto& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(out);
    req.set_stderr(err);
    req.set_tty(tty);
    v1::ExecResponse resp;
    return h_->rt().Exec(CriContext().get(), req, &resp);
  };
  grpc::Status s = exec(id, {"true"}, false, true, true, true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tty and stderr cannot both be true"));
  s = exec(id, {"true"}, false, false, false, false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("one of stdin, stdout, or stderr must be set"));
  EXPECT_EQ(exec(id, {}, false, true, false, false).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(exec("", {"true"}, false, true, false, false).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(exec("0123456789abcdef-none", {"true"}, false, true, false, false).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::AttachRequest a;
  a.set_container_id(id);
  a.set_stdout(true);
  a.set_tty(true);  // the container has no terminal
  v1::AttachResponse ar;
  s = h_->rt().Attach(CriContext().get(), a, &ar);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tty"));

  // A stopped container: FAILED_PRECONDITION for both.
  ASSERT_TRUE(h_->StopContainer(id, 2).ok());
  s = exec(id, {"true"}, false, true, false, false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("not running"));
  a.set_tty(false);
  EXPECT_EQ(h_->rt().Attach(CriContext().get(), a, &ar).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(PodStreamTest, AttachRelaysTheContainersOutputAndStdin) {
  v1::ContainerConfig cfg = h_->NewContainer(
      pod_, "reader", {"sh", "-c", "echo ready; while read l; do echo got:$l; done; echo bye"});
  cfg.set_stdin(true);
  cfg.set_stdin_once(false);
  const std::string id = Run(cfg);
  ASSERT_FALSE(id.empty());
  auto attach_url = [&] {
    v1::AttachRequest a;
    a.set_container_id(id);
    a.set_stdin(true);
    a.set_stdout(true);
    a.set_stderr(true);
    v1::AttachResponse r;
    grpc::Status s = h_->rt().Attach(CriContext().get(), a, &r);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return r.url();
  };
  StreamClient c;
  Streams s = Open(c, attach_url(), true, true, true, false);
  ASSERT_TRUE(c.Send(s.in, "one\n"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(s.out).data == "got:one\n"; }))
      << c.stream(s.out).data;
  // The client leaves: the container goes on (its stdin is not stdin_once).
  ASSERT_TRUE(c.Fin(s.in));
  ASSERT_TRUE(c.GoAway());
  std::this_thread::sleep_for(milliseconds(300));
  v1::ContainerStatus st;
  ASSERT_TRUE(h_->ContainerStatus(id, &st).ok());
  EXPECT_EQ(st.state(), v1::CONTAINER_RUNNING);

  // A second attachment; the container's exit ends it with Success.
  StreamClient c2;
  Streams s2 = Open(c2, attach_url(), true, true, true, false);
  ASSERT_TRUE(c2.Send(s2.in, "two\n"));
  ASSERT_TRUE(c2.ReadUntil([&] { return c2.stream(s2.out).data == "got:two\n"; }))
      << c2.stream(s2.out).data;
  ASSERT_TRUE(h_->StopContainer(id, 2).ok());
  ReadToEnd(c2);
  EXPECT_EQ(c2.stream(s2.error).data, "{\"metadata\":{},\"status\":\"Success\"}");
}

TEST_F(PodStreamTest, AttachToAStdinOnceContainerClosesItsStdinWithTheClients) {
  v1::ContainerConfig cfg = h_->NewContainer(pod_, "once", {"sh", "-c", "cat; echo eof-seen"});
  cfg.set_stdin(true);
  cfg.set_stdin_once(true);
  const std::string id = Run(cfg);
  ASSERT_FALSE(id.empty());
  v1::AttachRequest a;
  a.set_container_id(id);
  a.set_stdin(true);
  a.set_stdout(true);
  v1::AttachResponse r;
  ASSERT_TRUE(h_->rt().Attach(CriContext().get(), a, &r).ok());
  StreamClient c;
  Streams s = Open(c, r.url(), true, true, false, false);
  ASSERT_TRUE(c.Send(s.in, "payload\n"));
  ASSERT_TRUE(c.ReadUntil([&] { return c.stream(s.out).data == "payload\n"; }));
  ASSERT_TRUE(c.Fin(s.in));
  ReadToEnd(c);
  EXPECT_EQ(c.stream(s.out).data, "payload\neof-seen\n");
  EXPECT_TRUE(h_->WaitForState(id, v1::CONTAINER_EXITED, seconds(10)));
}

// The same exec over WebSocket (v5.channel.k8s.io, as kubectl >= 1.30 speaks to an API
// server, and crictl --transport websocket): stdin, the v5 CLOSE of stdin, output, status.
TEST_F(PodStreamTest, ExecOverWebSocketV5) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  cri::websocket::testing::WebSocketClient ws;
  ASSERT_TRUE(ws.Connect(ExecUrl(id, {"sh", "-c", "cat; echo err >&2; exit 7"}, true, true, true,
                                 false)));
  ASSERT_THAT(ws.Handshake("v5.channel.k8s.io"), StartsWith("HTTP/1.1 101"));
  EXPECT_TRUE(ws.accept_ok());
  ASSERT_TRUE(ws.Send(0, "over websocket\n"));
  ASSERT_TRUE(ws.SendStreamClose(0));
  ASSERT_TRUE(ws.ReadUntil([&] { return ws.closed(); }, seconds(20)));
  EXPECT_EQ(ws.channel(1).data, "over websocket\n");
  EXPECT_EQ(ws.channel(2).data, "err\n");
  EXPECT_THAT(ws.channel(3).data, HasSubstr("{\"reason\":\"ExitCode\",\"message\":\"7\"}"));
  EXPECT_EQ(ws.close_code(), 1000);
}

}  // namespace
}  // namespace berth::testing
