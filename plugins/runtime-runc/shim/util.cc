// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/runtime-runc/shim/cri_log.h"

namespace berth::shim {
namespace {

constexpr std::array<uint32_t, 64> kK = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void Compress(std::array<uint32_t, 8>& h, const unsigned char* block) {
  uint32_t w[64];
  for (size_t i = 0; i < 16; ++i) {
    const unsigned char* b = block + 4 * i;
    w[i] = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  }
  for (int i = 16; i < 64; ++i) {
    uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; ++i) {
    uint32_t s1 = Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = hh + s1 + ch + kK[i] + w[i];
    uint32_t s0 = Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22);
    uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = s0 + maj;
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  std::array<uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string msg(data);
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  for (size_t off = 0; off < msg.size(); off += 64) {
    Compress(h, reinterpret_cast<const unsigned char*>(msg.data()) + off);
  }
  std::string out;
  char buf[9];
  for (uint32_t v : h) {
    snprintf(buf, sizeof(buf), "%08x", v);
    out += buf;
  }
  return out;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return core::ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return core::ErrnoToStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteFileDurably(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  {
    sdk::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return core::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return core::ErrnoToStatus(errno, absl::StrCat("write ", tmp));
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return core::ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  sdk::UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return absl::OkStatus();
}

std::string FormatRfc3339Nano(std::chrono::system_clock::time_point t) {
  return FormatTimestamp(t);
}

absl::StatusOr<std::chrono::system_clock::time_point> ParseRfc3339Nano(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction]Z (what FormatRfc3339Nano writes).
  struct tm tm {};
  int consumed = 0;
  std::string s(text);
  if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return absl::InvalidArgumentError(absl::StrCat("not an RFC 3339 time: '", s, "'"));
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t nanos = 0;
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (s[i] - '0');
        ++digits;
      }
      ++i;
    }
    while (digits++ < 9) nanos *= 10;
  }
  if (i >= s.size() || (s[i] != 'Z' && s[i] != 'z')) {
    return absl::InvalidArgumentError(absl::StrCat("RFC 3339 time is not UTC: '", s, "'"));
  }
  const time_t secs = timegm(&tm);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos)));
}

absl::StatusOr<std::string> ResolveBinary(const std::string& name) {
  auto check = [](const std::string& path) -> absl::Status {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("OCI runtime binary ", path, " is not usable: ", strerror(errno),
                       " (install it or fix the handler's `binary` option)"));
    }
    if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("OCI runtime binary ", path, " is not an executable file (check its mode)"));
    }
    return absl::OkStatus();
  };
  if (name.find('/') != std::string::npos) {
    RETURN_IF_ERROR(check(name));
    return name;
  }
  const char* path_env = std::getenv("PATH");
  std::string path_list = path_env != nullptr && *path_env != '\0'
                              ? path_env
                              : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (absl::string_view dir : absl::StrSplit(path_list, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (check(candidate).ok()) return candidate;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("OCI runtime binary ", name, " not found in PATH (", path_list, ")"));
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    cur += "/";
    cur.append(part.data(), part.size());
    if (::mkdir(cur.c_str(), 0711) != 0 && errno != EEXIST) {
      return core::ErrnoToStatus(errno, absl::StrCat("mkdir ", cur));
    }
  }
  return absl::OkStatus();
}

void LogLine(absl::string_view line) {
  std::string out =
      absl::StrCat(FormatTimestamp(std::chrono::system_clock::now()), " ", line, "\n");
  ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
  (void)ignored;
}

}  // namespace berth::shim
