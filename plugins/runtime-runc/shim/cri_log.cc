// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/cri_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace berth::shim {
namespace {

// Formatted entries are written once this many bytes have gathered within one Write().
constexpr size_t kOutBatchBytes = 64 * 1024;

int OpenLogFile(const std::filesystem::path& path) {
  int fd;
  do {
    fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Length of `s` without a trailing '\r', which may yet turn out to be half of a "\r\n".
size_t ContentLength(std::string_view s) {
  return (!s.empty() && s.back() == '\r') ? s.size() - 1 : s.size();
}

}  // namespace

std::string FormatTimestamp(std::chrono::system_clock::time_point t) {
  using std::chrono::nanoseconds;
  const int64_t ns = std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
  int64_t secs = ns / 1'000'000'000;
  int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {  // floor for instants before the epoch
    frac += 1'000'000'000;
    --secs;
  }
  const time_t tt = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[64];
  int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string out(buf, n > 0 ? static_cast<size_t>(n) : 0);
  if (frac != 0) {
    char digits[10];
    snprintf(digits, sizeof(digits), "%09lld", static_cast<long long>(frac));
    size_t len = 9;
    while (len > 0 && digits[len - 1] == '0') --len;
    out.push_back('.');
    out.append(digits, len);
  }
  out.push_back('Z');
  return out;
}

// ---- CriLogWriter ----

absl::StatusOr<std::unique_ptr<CriLogWriter>> CriLogWriter::Open(const std::filesystem::path& path,
                                                                 size_t max_line_bytes) {
  if (max_line_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("container log ", path.string(), ": max_line_bytes must be at least 1"));
  }
  int fd = OpenLogFile(path);
  if (fd < 0) {
    return core::ErrnoToStatus(
        errno, absl::StrCat("open container log ", path.string(), " (does its directory exist?)"));
  }
  return std::unique_ptr<CriLogWriter>(new CriLogWriter(path, fd, max_line_bytes));
}

CriLogWriter::CriLogWriter(std::filesystem::path path, int fd, size_t max_line_bytes)
    : path_(std::move(path)),
      max_line_bytes_(max_line_bytes),
      fd_(fd),
      out_(this, "stdout"),
      err_(this, "stderr") {}

CriLogWriter::~CriLogWriter() {
  (void)out_.Close();
  (void)err_.Close();
  std::lock_guard<std::mutex> lock(fd_mu_);
  if (fd_ >= 0) close(fd_);
}

absl::Status CriLogWriter::Reopen() {
  int new_fd = OpenLogFile(path_);
  if (new_fd < 0) {
    return core::ErrnoToStatus(
        errno, absl::StrCat("reopen container log ", path_.string(),
                            " (still writing to the previous file; does the directory exist?)"));
  }
  int old_fd;
  {
    std::lock_guard<std::mutex> lock(fd_mu_);
    old_fd = fd_;
    fd_ = new_fd;
  }
  if (old_fd >= 0) close(old_fd);
  return absl::OkStatus();
}

absl::Status CriLogWriter::WriteEntries(std::string_view entries) {
  std::lock_guard<std::mutex> lock(fd_mu_);
  // A regular file opened O_APPEND takes the whole buffer in one write(2) unless the disk is
  // full or a signal interrupts it; the loop finishes such a short write under the lock, so
  // no other entry can get in between.
  while (!entries.empty()) {
    ssize_t n = write(fd_, entries.data(), entries.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return core::ErrnoToStatus(
          errno, absl::StrCat("write container log ", path_.string(), " (", entries.size(),
                              " bytes of log entries dropped)"));
    }
    entries.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// ---- CriLogWriter::Stream ----

void CriLogWriter::Stream::EmitEntry(char tag, std::string_view message) {
  out_.append(FormatTimestamp(std::chrono::system_clock::now()));
  out_.push_back(' ');
  out_.append(name_);
  out_.push_back(' ');
  out_.push_back(tag);
  out_.push_back(' ');
  out_.append(message);
  out_.push_back('\n');
  if (out_.size() >= kOutBatchBytes) {
    absl::Status s = DrainOut(/*force=*/true);
    if (!s.ok() && out_error_.ok()) out_error_ = s;
  }
}

absl::Status CriLogWriter::Stream::DrainOut(bool force) {
  if (out_.empty() || (!force && out_.size() < kOutBatchBytes)) return absl::OkStatus();
  absl::Status s = writer_->WriteEntries(out_);
  out_.clear();
  return s;
}

// Adds bytes that contain no '\n' to the tail, cutting P entries of max bytes whenever more
// than max content bytes are known. A trailing '\r' is held back from the count because a
// '\n' may follow it in the next Write().
void CriLogWriter::Stream::AppendTail(std::string_view rest) {
  const size_t max = writer_->max_line_bytes_;
  while (!rest.empty()) {
    if (pending_.empty() && rest.size() > max + 1) {
      // Fast path: the byte at index max exists and is not the last one, so the first max
      // bytes are a P entry for sure; cut it straight from the input.
      EmitEntry('P', rest.substr(0, max));
      rest.remove_prefix(max);
      continue;
    }
    size_t take = std::min(rest.size(), max + 2 - pending_.size());
    pending_.append(rest.substr(0, take));
    rest.remove_prefix(take);
    while (ContentLength(pending_) > max) {
      EmitEntry('P', std::string_view(pending_).substr(0, max));
      pending_.erase(0, max);
    }
  }
}

absl::Status CriLogWriter::Stream::Write(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("write to ", std::string(name_),
                                                      " of container log ", writer_->path_.string(),
                                                      " after the stream was closed"));
  }
  for (const auto& [id, hook] : hooks_) hook(bytes);

  out_error_ = absl::OkStatus();
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      AppendTail(bytes);
      break;
    }
    std::string_view segment = bytes.substr(0, nl);
    bytes.remove_prefix(nl + 1);
    std::string_view line;
    if (pending_.empty() && ContentLength(segment) <= writer_->max_line_bytes_) {
      line = segment;  // the common case: a whole short line inside this chunk, no copy
    } else {
      AppendTail(segment);
      line = pending_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // "\r\n" terminator
    EmitEntry('F', line);
    pending_.clear();
  }
  absl::Status s = DrainOut(/*force=*/true);
  if (!s.ok() && out_error_.ok()) out_error_ = s;
  return out_error_;
}

absl::Status CriLogWriter::Stream::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  return FlushLocked();
}

absl::Status CriLogWriter::Stream::FlushLocked() {
  if (pending_.empty()) return absl::OkStatus();
  out_error_ = absl::OkStatus();
  // The tail can be max + 1 bytes when it ends in a '\r' held back for a possible "\r\n";
  // at the end that '\r' is content, so it goes into an entry of its own.
  std::string_view tail = pending_;
  while (tail.size() > writer_->max_line_bytes_) {
    EmitEntry('P', tail.substr(0, writer_->max_line_bytes_));
    tail.remove_prefix(writer_->max_line_bytes_);
  }
  EmitEntry('P', tail);
  pending_.clear();
  absl::Status s = DrainOut(/*force=*/true);
  if (!s.ok() && out_error_.ok()) out_error_ = s;
  return out_error_;
}

absl::Status CriLogWriter::Stream::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status s = FlushLocked();
  closed_ = true;
  return s;
}

void CriLogWriter::Stream::Attach(uint64_t id, Hook fn) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [hook_id, hook] : hooks_) {
    if (hook_id == id) {
      hook = std::move(fn);
      return;
    }
  }
  hooks_.emplace_back(id, std::move(fn));
}

bool CriLogWriter::Stream::Detach(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (it->first == id) {
      hooks_.erase(it);
      return true;
    }
  }
  return false;
}

}  // namespace berth::shim
