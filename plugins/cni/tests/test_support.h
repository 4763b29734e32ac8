// SPDX-License-Identifier: Apache-2.0
// Helpers of the CNI tests: temporary directories, files, and fake CNI plugins (shell
// scripts) that record what they were given and answer what the test prepared.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace berth::cni::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/berth-cni-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteTextFile(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  }
  ::chmod(path.c_str(), mode);
}

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Lines of a file, without the newline.
inline std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// `env` output as a map; PWD (which the shell adds) is left out.
inline std::map<std::string, std::string> ReadEnv(const std::string& path) {
  std::map<std::string, std::string> env;
  for (const std::string& line : ReadLines(path)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    if (key == "PWD" || key == "SHLVL" || key == "_") continue;
    env[key] = line.substr(eq + 1);
  }
  return env;
}

// A fake CNI plugin. Every run appends "<type> <command>" to <ctl>/calls and saves its
// environment and stdin as <ctl>/<type>.<command>.env and .stdin. Then, by files the test
// puts in <ctl>: <type>.<command>.sh is sourced (a hook); .sleep makes it exec sleep that
// many seconds; .err is copied to stderr; .out to stdout (ADD prints a default result
// without it); .exit is the exit status.
inline std::string FakePluginScript(const std::string& ctl) {
  return "#!/bin/sh\n"
         "ctl='" +
         ctl +
         "'\n"
         "t=${0##*/}\n"
         "c=$CNI_COMMAND\n"
         "echo \"$t $c\" >> \"$ctl/calls\"\n"
         "env > \"$ctl/$t.$c.env\"\n"
         "cat > \"$ctl/$t.$c.stdin\"\n"
         "if [ -f \"$ctl/$t.$c.sh\" ]; then . \"$ctl/$t.$c.sh\"; fi\n"
         "if [ -f \"$ctl/$t.$c.sleep\" ]; then echo $$ > \"$ctl/$t.$c.pid\"; "
         "exec sleep \"$(cat \"$ctl/$t.$c.sleep\")\"; fi\n"
         "if [ -f \"$ctl/$t.$c.err\" ]; then cat \"$ctl/$t.$c.err\" >&2; fi\n"
         "if [ -f \"$ctl/$t.$c.out\" ]; then cat \"$ctl/$t.$c.out\";\n"
         "elif [ \"$c\" = ADD ]; then printf '{\"cniVersion\":\"1.0.0\",\"interfaces\":"
         "[{\"name\":\"eth0\",\"sandbox\":\"%s\"}],\"ips\":[{\"address\":\"10.0.0.2/24\","
         "\"interface\":0}]}' \"$CNI_NETNS\"; fi\n"
         "if [ -f \"$ctl/$t.$c.exit\" ]; then exit \"$(cat \"$ctl/$t.$c.exit\")\"; fi\n"
         "exit 0\n";
}

// Installs fake plugin `type` in bin_dir, recording into ctl.
inline void InstallFakePlugin(const std::string& bin_dir, const std::string& ctl,
                              const std::string& type) {
  WriteTextFile(bin_dir + "/" + type, FakePluginScript(ctl), 0755);
}

}  // namespace berth::cni::testing
