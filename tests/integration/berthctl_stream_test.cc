// SPDX-License-Identifier: Apache-2.0
// berthctl exec, attach and port-forward end to end: the berthctl binary, as an operator runs
// it, against a real berthd (CRI Exec/Attach/PortForward, its streaming server) and busybox
// containers started by runc through berth-shim. Terminal cases run berthctl under a pty of
// the test's own (forkpty), which plays the operator's terminal.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "berth/unique_fd.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One berthctl process: its stdin, stdout and stderr on pipes, or all three on a pty.
class Ctl {
 public:
  // Starts `argv` (argv[0] is the program). With `pty`, the child gets a new session on a pty
  // of size `ws` (its controlling terminal); the master side is ours.
  static std::unique_ptr<Ctl> Start(const std::vector<std::string>& argv, bool pty = false,
                                    winsize ws = {40, 100, 0, 0}) {
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    auto c = std::unique_ptr<Ctl>(new Ctl);
    if (pty) {
      int master = -1;
      c->pid_ = ::forkpty(&master, nullptr, nullptr, &ws);
      if (c->pid_ == 0) {
        ::execv(cargv[0], cargv.data());
        ::_exit(127);
      }
      ::fcntl(master, F_SETFD, FD_CLOEXEC);
      c->out_.Reset(master);
      return c;
    }
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      return c;
    }
    c->pid_ = ::fork();
    if (c->pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    c->in_.Reset(in[1]);
    c->out_.Reset(out[0]);
    c->err_.Reset(err[0]);
    return c;
  }
  ~Ctl() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }

  // To stdin (the pty master: as typed).
  void Write(const std::string& data) {
    const int fd = in_.valid() ? in_.get() : out_.get();
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  void CloseStdin() { in_.Reset(); }
  void Resize(winsize ws) { ::ioctl(out_.get(), TIOCSWINSZ, &ws); }
  void Signal(int sig) { ::kill(pid_, sig); }

  // Reads stdout and stderr until `done()` holds or both end; false on timeout.
  bool ReadUntil(const std::function<bool()>& done, seconds timeout = seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (!out_.valid() && !err_.valid()) return done();
      pollfd p[2] = {{out_.get(), POLLIN, 0}, {err_.get(), POLLIN, 0}};
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      if (::poll(p, 2, static_cast<int>(left.count())) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (p[i].revents == 0) continue;
        char buffer[65536];
        berth::sdk::UniqueFd& fd = i == 0 ? out_ : err_;
        const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
        if (n <= 0) {
          fd.Reset();  // EOF (a pty master reads EIO once the child is gone)
          continue;
        }
        (i == 0 ? out : err).append(buffer, static_cast<size_t>(n));
      }
    }
    return true;
  }
  // Reads to the end, then reaps: the exit code (128+N for signal N), -1 on timeout.
  int Wait(seconds timeout = seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    ReadUntil([] { return false; }, timeout);
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  std::string out, err;

 private:
  Ctl() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  berth::sdk::UniqueFd in_, out_, err_;
};

struct Result {
  int code = -1;
  std::string out, err;
};

class BerthctlStreamTest : public PodFixture<> {
 protected:
  void SetUp() override {
    StartHarness("ctlstream");
    if (h_ == nullptr) return;
    pod_ = h_->NewPod("ctlstream");
    grpc::Status s = h_->RunPod(pod_, &pod_id_);
    ASSERT_TRUE(s.ok()) << Describe(s) << h_->LogTail();
  }

  std::string Run(v1::ContainerConfig c) {
    std::string id;
    grpc::Status s = h_->RunContainer(pod_id_, pod_, c, &id);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (!s.ok()) return "";
    EXPECT_TRUE(h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10)));
    return id;
  }
  std::string RunSleeper() { return Run(h_->NewContainer(pod_, "sleeper", {"sleep", "1000"})); }

  std::vector<std::string> Argv(std::vector<std::string> args) {
    std::vector<std::string> argv = {BERTHCTL_BIN, "--socket", h_->daemon().socket().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // berthctl ARGS with `input` on stdin, to its end.
  Result RunCtl(std::vector<std::string> args, const std::string& input = "") {
    std::unique_ptr<Ctl> c = Ctl::Start(Argv(std::move(args)));
    std::thread writer([&] {
      c->Write(input);
      c->CloseStdin();
    });
    Result r;
    r.code = c->Wait();
    writer.join();
    r.out = c->out;
    r.err = c->err;
    return r;
  }

  v1::PodSandboxConfig pod_;
  std::string pod_id_;
};

TEST_F(BerthctlStreamTest, ExecRelaysOutputAndExitsWithTheRemoteCode) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  Result r = RunCtl({"exec", id, "--", "echo", "hello", "from", "the", "container"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello from the container\n");
  EXPECT_EQ(r.err, "");

  // stdout and stderr stay apart; the exit code is berthctl's.
  r = RunCtl({"exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");  // no "command terminated" line of our own
  r = RunCtl({"exec", id, "--", "sh", "-c", "exit 255"});
  EXPECT_EQ(r.code, 255) << r.err;
  // Without "--" (as docker and crictl take it), and with an ID prefix.
  r = RunCtl({"exec", id.substr(0, 12), "sh", "-c", "echo $0 $1; exit 3", "a", "-b"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "a -b\n");

  // Failures are berthctl's, with exit code 1 and the reason.
  r = RunCtl({"exec", id, "--", "/no/such/program"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("berthctl: exec in " + id + ": "));
  EXPECT_THAT(r.err, HasSubstr("error executing command in container"));
  EXPECT_THAT(r.err, HasSubstr("/no/such/program"));
  r = RunCtl({"exec", "0123456789abcdef-none", "--", "true"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("Exec failed"));
  r = RunCtl({"exec", id});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("exec takes a container and a command"));

  // A signal ends berthctl (128+N) and leaves the command running, as kubectl does.
  std::unique_ptr<Ctl> c = Ctl::Start(
      Argv({"exec", id, "--", "sh", "-c", "echo started; sleep 1; echo finished > /tmp/marker"}));
  ASSERT_TRUE(c->ReadUntil([&] { return c->out.find("started") != std::string::npos; }));
  c->Signal(SIGTERM);
  EXPECT_EQ(c->Wait(seconds(10)), 128 + SIGTERM) << c->err;
  v1::ExecSyncResponse sync;
  bool finished = false;
  for (int i = 0; i < 50 && !finished; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(h_->ExecSync(id, {"cat", "/tmp/marker"}, 5, &sync).ok());
    finished = sync.stdout() == "finished\n";
  }
  EXPECT_TRUE(finished) << "the exec was stopped with berthctl";
}

TEST_F(BerthctlStreamTest, ExecCopiesStdinAndItsEndEndsTheCommand) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  Result r = RunCtl({"exec", "-i", id, "--", "cat"}, "line one\nline two\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "line one\nline two\n");
  // Far more than any buffer on the way.
  std::string big;
  for (int i = 0; big.size() < 4 * 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
  r = RunCtl({"exec", "-i", id, "--", "sh", "-c", "cat | wc -c"}, big);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, std::to_string(big.size()) + "\n");
  // Without -i the command's stdin is closed.
  r = RunCtl({"exec", id, "--", "cat"}, "ignored");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

// The server starts the exec, then applies the first size (a resize of the running terminal,
// as containerd does): a command that reads its size at once may still see 0x0. Commands wait
// for a size first.
constexpr char kWaitForSize[] =
    "i=0; until [ -n \"$(stty size 2>/dev/null)\" ] || [ $i -ge 100 ]; do sleep 0.05; "
    "i=$((i+1)); done; ";

TEST_F(BerthctlStreamTest, ExecWithATerminal) {
  const std::string id = RunSleeper();
  ASSERT_FALSE(id.empty());
  // Under the test's pty (40 rows, 100 columns): the remote terminal has its size; the local
  // terminal is raw during the session and restored after it.
  std::vector<std::string> argv = {"/bin/sh", "-c", "\"$0\" \"$@\"; echo rc=$?; stty -a"};
  for (const std::string& a :
       Argv({"exec", "-i", "-t", id, "--", "sh", "-c",
             std::string(kWaitForSize) + "stty size; tty; echo term=$TERM; exit 7"})) {
    argv.push_back(a);
  }
  std::unique_ptr<Ctl> c = Ctl::Start(argv, /*pty=*/true);
  EXPECT_EQ(c->Wait(), 0);
  EXPECT_THAT(c->out, HasSubstr("40 100\r\n"));
  EXPECT_THAT(c->out, HasSubstr("/dev/pts/"));
  EXPECT_THAT(c->out, HasSubstr("term=xterm\r\n"));
  EXPECT_THAT(c->out, HasSubstr("rc=7"));
  const std::string after = c->out.substr(c->out.find("rc=7"));
  EXPECT_THAT(after, HasSubstr(" icanon"));  // cooked again
  EXPECT_THAT(after, Not(HasSubstr("-icanon")));

  // A resize of the local terminal (SIGWINCH) reaches the remote one.
  c = Ctl::Start(Argv({"exec", "-it", id, "--", "sh", "-c",
                       std::string(kWaitForSize) +
                           "stty size; i=0; while [ \"$(stty size)\" = \"40 100\" ] && "
                           "[ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; stty size"}),
                 /*pty=*/true);
  ASSERT_TRUE(c->ReadUntil([&] { return c->out.find("40 100") != std::string::npos; })) << c->out;
  c->Resize({50, 120, 0, 0});
  EXPECT_EQ(c->Wait(), 0);
  EXPECT_THAT(c->out, HasSubstr("50 120\r\n"));

  // Typing: the keys go to the remote shell as they are (raw), which runs them.
  c = Ctl::Start(Argv({"exec", "-i", "-t", id, "--", "sh"}), /*pty=*/true);
  ASSERT_TRUE(c->ReadUntil([&] { return c->out.find("# ") != std::string::npos; })) << c->out;
  c->Write("echo typed-$((1+2))\r");
  ASSERT_TRUE(c->ReadUntil([&] { return c->out.find("typed-3") != std::string::npos; })) << c->out;
  c->Write("exit 5\r");
  EXPECT_EQ(c->Wait(), 5) << c->out;

  // -t without a local terminal: the remote side still has one (CRLF line ends).
  Result r = RunCtl({"exec", "-t", id, "--", "sh", "-c", "tty; echo done"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
  EXPECT_THAT(r.out, HasSubstr("done\r\n"));
}

TEST_F(BerthctlStreamTest, AttachRelaysTheMainProcess) {
  // Output only: attach, and the container's exit ends the session with code 0.
  const std::string talker =
      Run(h_->NewContainer(pod_, "talker", {"sh", "-c", "sleep 2; echo one; echo two"}));
  ASSERT_FALSE(talker.empty());
  Result r = RunCtl({"attach", talker});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "one\ntwo\n");

  // stdin (a stdin_once container: our EOF is its EOF).
  v1::ContainerConfig cfg = h_->NewContainer(pod_, "reader", {"sh", "-c", "cat; echo eof-seen"});
  cfg.set_stdin(true);
  cfg.set_stdin_once(true);
  const std::string reader = Run(cfg);
  ASSERT_FALSE(reader.empty());
  r = RunCtl({"attach", "-i", reader}, "payload\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "payload\neof-seen\n");
  EXPECT_TRUE(h_->WaitForState(reader, v1::CONTAINER_EXITED, seconds(10)));

  // -t must match the container's terminal.
  const std::string id = RunSleeper();
  r = RunCtl({"attach", "-t", id});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("tty"));
}

// An HTTP GET through a forwarded local port: the response, or "" when the connection closed
// without one (the pod port refused it).
std::string HttpGet(int port) {
  berth::sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return "<refused>";
  const std::string req = "GET / HTTP/1.0\r\n\r\n";
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return "";
  }
  std::string got;
  char buffer[4096];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 15000) <= 0) return got + "<timeout>";
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n <= 0) return got;
    got.append(buffer, static_cast<size_t>(n));
  }
}

TEST_F(BerthctlStreamTest, PortForwardServesLocalConnectionsUntilInterrupted) {
  const std::string httpd =
      Run(h_->NewContainer(pod_, "httpd",
                           {"sh", "-c",
                            "mkdir -p /www && echo hello-through-berthctl > /www/index.html && "
                            "exec httpd -f -p 8080 -h /www"}));
  ASSERT_FALSE(httpd.empty());
  const int fixed = FreeLoopbackPort();
  std::unique_ptr<Ctl> c = Ctl::Start(
      Argv({"port-forward", pod_id_.substr(0, 12), ":8080", std::to_string(fixed) + ":8081"}));
  std::smatch m;
  const std::regex forwarding("Forwarding from 127\\.0\\.0\\.1:(\\d+) -> 8080\n");
  ASSERT_TRUE(c->ReadUntil([&] {
    return std::regex_search(c->out, m, forwarding) &&
           c->out.find("-> 8081\n") != std::string::npos;
  })) << c->out
      << c->err;
  const int port = std::stoi(m[1]);
  EXPECT_THAT(c->out,
              HasSubstr("Forwarding from 127.0.0.1:" + std::to_string(fixed) + " -> 8081\n"));

  // httpd may still be starting: a refused dial in the pod closes the local connection.
  std::string page;
  for (int i = 0; i < 50 && page.find("200 OK") == std::string::npos; ++i) {
    page = HttpGet(port);
    if (page.empty()) std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_THAT(page, HasSubstr("200 OK"));
  EXPECT_THAT(page, HasSubstr("hello-through-berthctl"));
  EXPECT_THAT(HttpGet(port), HasSubstr("hello-through-berthctl"));  // again, same session
  ASSERT_TRUE(c->ReadUntil([&] {
    return c->out.find("Handling connection for " + std::to_string(port)) != std::string::npos;
  }));

  // Nothing listens on 8081 in the pod: the connection is closed and the error said.
  EXPECT_EQ(HttpGet(fixed), "");
  ASSERT_TRUE(c->ReadUntil([&] { return c->err.find("8081") != std::string::npos; })) << c->err;
  EXPECT_THAT(c->err, HasSubstr("berthctl: port-forward: an error occurred forwarding " +
                                std::to_string(fixed) + " -> 8081: error forwarding port 8081"));

  // Ctrl-C: a clean end.
  c->Signal(SIGINT);
  EXPECT_EQ(c->Wait(seconds(10)), 0) << c->err;
  EXPECT_EQ(HttpGet(port), "<refused>");

  // Errors before anything is forwarded.
  Result r = RunCtl({"port-forward", "no-such-pod", "8080"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("PortForward failed"));
  r = RunCtl({"port-forward", pod_id_, "80:http"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad port pair"));
}

}  // namespace
}  // namespace berth::testing
