// SPDX-License-Identifier: Apache-2.0
// What the benchmarks share: reading a process's memory figures, and summary statistics.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace berth::bench {

// A "Name:  value kB" field of /proc/<pid>/<file> ("status", "smaps_rollup"), in kB; -1 if
// absent.
inline long ProcField(pid_t pid, const std::string& file, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

struct Stats {
  double median, min, max, p99;
};

inline Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back(), v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

}  // namespace berth::bench
