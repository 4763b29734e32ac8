// SPDX-License-Identifier: Apache-2.0
// Running one CNI plugin binary (SPEC.md section 2): the CNI environment and nothing else
// of berthd's, the request configuration on stdin, stdout and stderr captured with caps, a
// deadline after which the plugin's whole process group is killed, and the CNI error
// object of a failing plugin turned into a status an operator can act on.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace berth::cni {

// What a finished process left.
struct ProcessResult {
  int exit_code = 0;    // WEXITSTATUS, or 128 + the signal
  int term_signal = 0;  // the signal that ended it, 0 when it exited
  std::string out;      // stdout, at most kMaxStdout bytes
  bool out_truncated = false;
  std::string err;  // the last kMaxStderr bytes of stderr
};

inline constexpr size_t kMaxStdout = 4 << 20;
inline constexpr size_t kMaxStderr = 64 << 10;

// Runs `path` (argv = {path}) with exactly `env`, `input` on stdin (a memory file, so
// a plugin that does not read it cannot block), in a new process group, and waits for it.
// After `timeout` the process group is killed (SIGKILL) and DEADLINE_EXCEEDED returned.
// FAILED_PRECONDITION when the binary cannot be executed.
[[nodiscard]] absl::StatusOr<ProcessResult> RunProcess(const std::string& path,
                                                       const std::vector<std::string>& env,
                                                       std::string_view input,
                                                       absl::Duration timeout);

// The attachment parameters of one invocation (empty for STATUS, GC and VERSION).
struct Invocation {
  std::string command;       // CNI_COMMAND: ADD, DEL, CHECK, STATUS, GC, VERSION
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS
};

// Finds and runs plugins from a fixed set of directories with a fixed deadline. Immutable;
// usable from any number of threads.
class PluginRunner {
 public:
  PluginRunner(std::vector<std::string> bin_dirs, absl::Duration timeout)
      : bin_dirs_(std::move(bin_dirs)), timeout_(timeout) {}

  // The environment of an invocation: CNI_COMMAND, CNI_PATH and, for the attachment
  // commands (ADD, DEL, CHECK), CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_ARGS; plus
  // PATH=/usr/sbin:/usr/bin:/sbin:/bin so that plugins find iptables, ip and tc.
  std::vector<std::string> Environment(const Invocation& inv) const;

  // Runs plugin `type` of network `network` with `config` on stdin and returns its stdout.
  // A non-zero exit becomes an error
  //   plugin "bridge" (ADD, network "x"): <msg>: <details> (CNI error code N)
  // from the CNI error object it printed (stderr appended when it said something else),
  // with code UNAVAILABLE for the "try again" codes (11, 50, 51) and INTERNAL otherwise.
  // DEADLINE_EXCEEDED when the plugin ran out of time (and was killed);
  // FAILED_PRECONDITION when the binary is missing or cannot be executed.
  [[nodiscard]] absl::StatusOr<std::string> Run(std::string_view type, std::string_view network,
                                                const Invocation& inv,
                                                std::string_view config) const;

  const std::vector<std::string>& bin_dirs() const { return bin_dirs_; }
  absl::Duration timeout() const { return timeout_; }

 private:
  std::vector<std::string> bin_dirs_;
  absl::Duration timeout_;
};

// The status for a plugin that exited non-zero (what Run returns in that case); `what` is
// "plugin \"bridge\" (ADD, network \"x\")".
[[nodiscard]] absl::Status PluginFailure(const std::string& what, const ProcessResult& result);

}  // namespace berth::cni
