// SPDX-License-Identifier: Apache-2.0
// Exec and attach sessions over SPDY (kubernetes-streaming.md §6): the streams the client
// opens are collected (30 s), the process is started or attached through the backend, its
// output is relayed to the stdout/stderr streams, the client's stdin and resizes to the
// process, and at the end the exit status goes on the error stream in the negotiated
// protocol's form, followed by the closing sequence of §6.7.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cri/v1/api.pb.h"
#include "plugins/cri/streaming/k8s_remotecommand.h"
#include "plugins/cri/streaming/spdy.h"

namespace berth::cri::streaming {

// A process whose stdio a session relays: an exec started for the session, or a container's
// process for attach. Read() and Wait() are called by the session's output thread;
// WriteStdin(), CloseStdin() and Resize() by its read loop; Detach() by either.
class StreamedProcess {
 public:
  virtual ~StreamedProcess() = default;

  struct Chunk {
    StreamType stream = StreamType::kStdout;  // kStdout or kStderr
    std::string data;
  };
  // The next piece of output; std::nullopt once the output has ended (and promptly after
  // Detach()).
  [[nodiscard]] virtual absl::StatusOr<std::optional<Chunk>> Read() = 0;
  // After Read() returned std::nullopt: the process's exit status (attach: 0 when the
  // attachment simply ended). CANCELLED after Detach().
  [[nodiscard]] virtual absl::StatusOr<int> Wait() = 0;
  // Blocks while the process does not read; fails after Detach().
  [[nodiscard]] virtual absl::Status WriteStdin(absl::string_view data) = 0;
  // The client has no more input for the process.
  virtual void CloseStdin() = 0;
  virtual void Resize(TerminalSize size) = 0;
  // The client went away or the server stops: Read(), Wait() and WriteStdin() return
  // promptly from now on. The process itself is left to run to its end.
  virtual void Detach() = 0;
};

// Starts the exec the stored request describes / attaches to the container's process. The
// error's message is what the client reads ("error executing command in container: ..." is
// added by the session).
using ExecBackend = std::function<absl::StatusOr<std::unique_ptr<StreamedProcess>>(
    const runtime::v1::ExecRequest& request)>;
using AttachBackend = std::function<absl::StatusOr<std::unique_ptr<StreamedProcess>>(
    const runtime::v1::AttachRequest& request)>;

struct RemoteCommandOptions {
  absl::Duration idle_timeout = absl::Hours(4);
  absl::Duration stream_creation_timeout = absl::Seconds(30);
  StatusFlavor status_flavor = StatusFlavor::kMetav1;
};

// What a session serves: an exec or an attach request, as stored with its token.
struct RemoteCommandRequest {
  bool attach = false;
  runtime::v1::ExecRequest exec;
  runtime::v1::AttachRequest attach_request;

  bool stdin() const { return attach ? attach_request.stdin() : exec.stdin(); }
  bool stdout() const { return attach ? attach_request.stdout() : exec.stdout(); }
  bool stderr() const { return attach ? attach_request.stderr() : exec.stderr(); }
  bool tty() const { return attach ? attach_request.tty() : exec.tty(); }
};

// Runs one upgraded exec/attach connection on the calling thread until it ends; `initial`
// holds bytes read past the request head. A socket shut down by someone else (the server
// stopping) ends it early: the process is detached, streams reset, GOAWAY sent. The caller
// closes `fd` afterwards.
void RunRemoteCommandSession(int fd, spdy::ServerSession session, RemoteCommandProtocol protocol,
                             RemoteCommandRequest request, const RemoteCommandOptions& options,
                             const ExecBackend& exec, const AttachBackend& attach,
                             std::string initial);

}  // namespace berth::cri::streaming
