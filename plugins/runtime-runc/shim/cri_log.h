// SPDX-License-Identifier: Apache-2.0
#pragma once

// The CRI container log writer used by berth-shim.
//
// The shim, not berthd, owns a container's log file, so container output never blocks and
// is never lost while berthd restarts. Each stream (stdout, stderr) is copied by its own
// thread into one CriLogWriter, which writes the kubelet's CRI log format:
//
//   <RFC3339Nano timestamp> <stdout|stderr> <F|P> <message>\n
//
// Rules (they match containerd's CRI logger, pkg/cri/io/logger.go, so that `kubectl logs`
// and log agents see the same thing on berth as on containerd):
//  - A line ends at '\n'. The '\n' is not part of the message; a "\r\n" terminator is
//    dropped as a whole (so a '\r' right before '\n' is not part of the message). Any other
//    '\r' is content and kept.
//  - The message of one entry holds at most max_line_bytes bytes. A longer line is written
//    as P entries of exactly max_line_bytes bytes followed by an F entry with the rest. A
//    line of exactly max_line_bytes bytes is a single F entry (the terminator of a "\r\n"
//    line does not count towards the limit).
//  - An empty line is an F entry with an empty message ("<ts> stdout F \n").
//  - When a stream ends (Close) or is flushed (Flush) with bytes that have no '\n' yet,
//    they are written as a single P entry and no F entry follows. containerd does this
//    (containerd/cri#1026, containerd/containerd#4813) and so does CRI-O's conmon
//    (containers/conmon#252); the kubelet shows such a trailing P entry (kubernetes#55631).
//  - The timestamp of an entry is taken when the entry is emitted: when its '\n' arrives,
//    when a P chunk is cut, or at Flush/Close. Timestamps are UTC with a 'Z' suffix,
//    formatted like Go's time.RFC3339Nano (see FormatTimestamp). Within one stream they are
//    non-decreasing in file order.
//
// Thread safety: every method may be called from any thread. Writes to one Stream are
// serialized; entries are written with write(2) calls that contain whole entries only, so
// stdout and stderr entries never interleave inside a line, and a Reopen never splits an
// entry across two files.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::shim {

// Formats `t` like Go's t.UTC().Format(time.RFC3339Nano):
// "2006-01-02T15:04:05.999999999Z". Trailing zeros of the fraction are trimmed and the
// fraction (with its '.') is left out when it is zero.
std::string FormatTimestamp(std::chrono::system_clock::time_point t);

class CriLogWriter {
 public:
  static constexpr size_t kDefaultMaxLineBytes = 16 * 1024;

  // One source of container output ("stdout" or "stderr").
  class Stream {
   public:
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    // Appends container output. Complete lines (and P chunks of over-long lines) are
    // written to the log file before this returns; an unterminated tail is buffered (at
    // most max_line_bytes + 1 bytes). On a write error the affected entries are dropped
    // (output must never block the container) and the error is returned; the caller should
    // log it and keep draining. After Close() this returns FAILED_PRECONDITION.
    [[nodiscard]] absl::Status Write(std::string_view bytes);

    // Writes a buffered unterminated tail, if any, as one P entry. Writes nothing when
    // nothing is buffered.
    [[nodiscard]] absl::Status Flush();

    // End of stream: Flush(), then refuse further writes. Idempotent.
    [[nodiscard]] absl::Status Close();

    // Output hooks for attach/streaming. Every chunk passed to Write() is handed, raw and
    // unmodified (no framing, no timestamps, newlines included), to every attached hook of
    // this stream, in Write() order, before it is written to the file. Hooks run on the
    // writing thread while the stream's lock is held: they must be quick, must not block
    // (queue the bytes and return), and must not call Write/Flush/Close/Attach/Detach on
    // this stream. Once Detach(id) has returned, the hook is not running and is never
    // called again. Attach with an id already attached replaces that hook.
    using Hook = std::function<void(std::string_view chunk)>;
    void Attach(uint64_t id, Hook fn);
    // Returns false when no hook with that id was attached.
    bool Detach(uint64_t id);

    std::string_view name() const { return name_; }

   private:
    friend class CriLogWriter;
    Stream(CriLogWriter* writer, std::string_view name) : writer_(writer), name_(name) {}

    // All of these run with mu_ held.
    void AppendTail(std::string_view rest);
    void EmitEntry(char tag, std::string_view message);
    [[nodiscard]] absl::Status DrainOut(bool force);
    [[nodiscard]] absl::Status FlushLocked();

    CriLogWriter* const writer_;
    const std::string_view name_;
    std::mutex mu_;
    std::string pending_;  // unterminated tail; never more than max_line_bytes + 1 bytes
    std::string out_;      // formatted entries not yet written
    absl::Status out_error_;
    bool closed_ = false;
    std::vector<std::pair<uint64_t, Hook>> hooks_;
  };

  // Opens (creating it with mode 0640 if needed) `path` for appending. `max_line_bytes`
  // must be at least 1.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CriLogWriter>> Open(
      const std::filesystem::path& path, size_t max_line_bytes = kDefaultMaxLineBytes);

  CriLogWriter(const CriLogWriter&) = delete;
  CriLogWriter& operator=(const CriLogWriter&) = delete;
  // Closes both streams (a buffered tail becomes a P entry; errors are dropped) and the fd.
  ~CriLogWriter();

  Stream& Out() { return out_; }
  Stream& Err() { return err_; }

  // For log rotation (the kubelet renames the file away and asks for a reopen): opens the
  // path anew first, then swaps it in under the fd lock, so every entry lands whole in
  // either the old or the new file. On failure the writer keeps writing to the old fd and
  // the error is returned.
  [[nodiscard]] absl::Status Reopen();

  const std::filesystem::path& path() const { return path_; }
  size_t max_line_bytes() const { return max_line_bytes_; }

 private:
  CriLogWriter(std::filesystem::path path, int fd, size_t max_line_bytes);

  // Writes whole entries to the current fd, under fd_mu_.
  [[nodiscard]] absl::Status WriteEntries(std::string_view entries);

  const std::filesystem::path path_;
  const size_t max_line_bytes_;
  std::mutex fd_mu_;  // lock order: Stream::mu_ before fd_mu_
  int fd_;
  Stream out_;
  Stream err_;
};

}  // namespace berth::shim
