// SPDX-License-Identifier: Apache-2.0
//
// The conformance suite of berth.snapshotter.v1 (berth/kinds.h): containerd's snapshot
// semantics, error codes, key rules, and, as root, real mounts (writes, commits, whiteouts,
// read-only views, a chain of 130 layers). Any implementation runs it:
//
//   #include "tests/conformance/snapshotter_conformance.h"
//
//   std::unique_ptr<berth::conformance::SnapshotterUnderTest> StartMine(
//       const std::filesystem::path& dir, std::string* error) { ... }
//
//   using berth::conformance::SnapshotterConformance;
//   INSTANTIATE_TEST_SUITE_P(Mine, SnapshotterConformance,
//       ::testing::Values(berth::conformance::SnapshotterConformanceParam{"mine", &StartMine}),
//       berth::conformance::SnapshotterConformanceName);
//
// and links snapshotter_conformance.cc, GoogleTest and nlohmann_json (docs/snapshotter.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "berth/kinds.h"
#include "gtest/gtest.h"

namespace berth::conformance {

// A running implementation. Destroying it shuts the implementation down; it must leave its
// storage in place (the suite restarts implementations on the same directory).
class SnapshotterUnderTest {
 public:
  virtual ~SnapshotterUnderTest() = default;
  virtual const berth_snapshotter_v1* table() const = 0;
  virtual void* instance() const = 0;
};

// Starts an implementation that keeps all its state under `dir` (an existing, empty
// directory the suite owns and removes afterwards). Called again with the same directory
// after the previous instance was destroyed, it must find the snapshots made before. On
// failure returns nullptr with the reason in *error.
using SnapshotterFactory = std::function<std::unique_ptr<SnapshotterUnderTest>(
    const std::filesystem::path& dir, std::string* error)>;

struct SnapshotterConformanceParam {
  std::string name;  // the instantiation's test name suffix: [A-Za-z0-9_]+
  SnapshotterFactory factory;
};

void PrintTo(const SnapshotterConformanceParam& param, std::ostream* os);
std::string SnapshotterConformanceName(
    const ::testing::TestParamInfo<SnapshotterConformanceParam>& info);

// The result of one table call.
struct Call {
  int32_t code = BERTH_UNKNOWN;
  std::string out;  // what the call wrote to its output sink
  std::string err;  // its error message
  bool ok() const { return code == BERTH_OK; }
};
// Prints a Call in assertion messages.
std::ostream& operator<<(std::ostream& os, const Call& call);

// The table with C++ arguments.
class SnapshotterClient {
 public:
  SnapshotterClient(const berth_snapshotter_v1* table, void* instance)
      : t_(table), inst_(instance) {}
  Call Status() const;
  std::string Name() const;
  Call Prepare(std::string_view key, std::string_view parent = "",
               std::string_view labels_json = "") const;
  Call View(std::string_view key, std::string_view parent = "",
            std::string_view labels_json = "") const;
  Call Mounts(std::string_view key) const;
  Call Commit(std::string_view name, std::string_view key, std::string_view labels_json = "") const;
  Call Remove(std::string_view key) const;
  Call Stat(std::string_view key) const;
  Call Usage(std::string_view key) const;
  Call Walk() const;
  Call FsUsage() const;

 private:
  const berth_snapshotter_v1* t_;
  void* inst_;
};

// Scratch directory, implementation life cycle and mounts, for the suite and for
// implementation-specific tests. Everything is undone in TearDown, also after failures:
// mounts are unmounted (anything still mounted under the scratch directory too), the
// implementation is shut down, and the scratch directory (/tmp/berth-conformance-*) is
// removed unless something could not be unmounted.
class SnapshotterTestBase : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts the implementation on dir() (call once in the test or SetUp).
  void Start(const SnapshotterFactory& factory);
  // Shuts the implementation down and starts it again on the same directory.
  void Restart();
  // Shuts the implementation down (Start or Restart brings it back).
  void Stop();
  SnapshotterClient& snap() { return *client_; }
  const std::filesystem::path& dir() const { return impl_dir_; }
  const std::filesystem::path& scratch() const { return scratch_; }

  // Mounts a snapshotter's mounts JSON on a fresh directory and returns it; "" (with a
  // test failure) when mounting fails.
  std::string Mount(const std::string& mounts_json);
  // Unmounts what Mount returned.
  void Unmount(const std::string& target);
  static bool IsRoot();

  // Files. WriteFile and MakeDir return 0 or the errno of the failure.
  static int WriteFile(const std::filesystem::path& p, std::string_view content);
  static int MakeDir(const std::filesystem::path& p);
  static std::string ReadFile(const std::filesystem::path& p);  // "<errno N>" on failure
  static bool Exists(const std::filesystem::path& p);           // lstat succeeds

  // Prepare(key, parent), mount it, write `files` (name -> content), unmount, commit as
  // `name`. Root only.
  void CommitLayer(const std::string& name, const std::string& parent,
                   const std::vector<std::pair<std::string, std::string>>& files);

 private:
  std::filesystem::path scratch_, impl_dir_;
  SnapshotterFactory factory_;
  std::unique_ptr<SnapshotterUnderTest> sut_;
  std::unique_ptr<SnapshotterClient> client_;
  std::vector<std::string> mounted_;
  int next_mount_ = 0;
};

class SnapshotterConformance : public SnapshotterTestBase,
                               public ::testing::WithParamInterface<SnapshotterConformanceParam> {
 protected:
  void SetUp() override;
};

}  // namespace berth::conformance
