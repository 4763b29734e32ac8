// SPDX-License-Identifier: Apache-2.0
// ExecSync: run a command to completion with captured output and a hard deadline. berth-shim
// uses it for CRI ExecSync (wrapping `runc exec`), but it works for any command.
//
// Semantics:
//  - The command runs in a NEW session (setsid), so it leads its own process group; on timeout
//    or drain-grace expiry the whole group is killed with SIGKILL. A descendant that calls
//    setsid/setpgid itself escapes the group kill (it still loses our pipes once we stop
//    reading).
//  - The child starts with an empty signal mask and default dispositions for every signal, so
//    a daemon that ignores SIGPIPE does not pass that on.
//  - `timeout` covers both the process and the output drain. When it expires the group is
//    killed, reading stops, `timed_out` is set and the call returns OK.
//  - Without a timeout the call returns when the direct child has exited and both output
//    pipes reached EOF. A background process that keeps the pipes open would block that
//    forever, so after the direct child exits we wait at most `drain_grace` for EOF; then the
//    group is killed, reading stops and `drain_cut_short` is set (exit_code is still the
//    child's). The same grace applies when a timeout is set (whichever comes first).
//  - The direct child is always reaped before returning (on every error path too); the
//    process-group kill happens while the child is still an unreaped zombie, so its pid (and
//    group id) cannot have been recycled. Processes that the command left behind and that were
//    not killed are reparented to init (or a subreaper) as usual.
//  - Every fd is O_CLOEXEC; only the three stdio pipes reach the child.
//  - Do not run this in a process whose SIGCHLD handler reaps with waitpid(-1): it would steal
//    the exit status.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::shim {

struct ExecSyncOptions {
  // argv[0] is an absolute/relative path (contains '/') or a name looked up in the caller's
  // PATH. Must not be empty.
  std::vector<std::string> argv;
  // "KEY=VALUE" entries; empty: inherit the caller's environment.
  std::vector<std::string> env;
  // Working directory of the child; empty: inherit.
  std::string cwd;
  // Hard deadline for process + output drain; 0: none.
  std::chrono::milliseconds timeout{0};
  // Per stream; bytes beyond are read and discarded (the child is never blocked on a full
  // pipe) and the matching *_truncated flag is set.
  size_t max_output_bytes = 16 << 20;
  // Written to the child's stdin (poll-driven, never deadlocks on large inputs), then closed.
  // If the child exits or closes stdin early, the rest is dropped silently.
  std::string stdin_data;
  // How long to keep reading after the direct child exited while something (a background
  // descendant) still holds the output pipes open. On expiry the process group is killed.
  std::chrono::milliseconds drain_grace{1000};
};

struct ExecSyncResult {
  // Exit status of the direct child: its exit code (0..255) when it exited, 128+N when it was
  // killed by signal N (shell convention: SIGKILL → 137). -1 when the deadline expired before
  // the direct child exited (we killed it; see timed_out).
  int exit_code = 0;
  // The timeout expired (before the child exited, or while draining its output); the process
  // group was killed and the captured output may be incomplete.
  bool timed_out = false;
  // The direct child exited but its output pipes were still held open after drain_grace; the
  // process group was killed and the captured output may be incomplete.
  bool drain_cut_short = false;
  std::string stdout_data, stderr_data;
  bool stdout_truncated = false, stderr_truncated = false;
  // Wall time from spawn to return.
  std::chrono::milliseconds duration{0};
  // Pid of the direct child (already reaped; for logging and tests).
  int pid = -1;
};

// Runs `options.argv` to completion. Returns an error only when the command could not be run
// at all: INVALID_ARGUMENT for an empty argv, NOT_FOUND (naming the path) for a missing
// binary, PERMISSION_DENIED for a non-executable one, other codes for syscall failures. A
// command that fails, is killed or times out is an OK result.
[[nodiscard]] absl::StatusOr<ExecSyncResult> ExecSync(const ExecSyncOptions& options);

}  // namespace berth::shim
