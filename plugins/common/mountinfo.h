// SPDX-License-Identifier: Apache-2.0
// Small helpers for /proc/<pid>/mountinfo (proc(5)), shared by the plugins and berth-shim.
#pragma once

#include <string>
#include <string_view>

namespace berth::plugins {

// Decodes a mountinfo field: the kernel writes space, tab, newline and backslash in mount
// points and roots as \ooo (three octal digits). Anything else is kept as it is.
inline std::string UnescapeMountinfo(std::string_view s) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) &&
        octal(s[i + 3])) {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace berth::plugins
