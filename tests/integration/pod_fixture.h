// SPDX-License-Identifier: Apache-2.0
// The GoogleTest fixture of the pod suites: one docker-registry with the test images per
// suite, one berthd (PodHarness) per test, and the harness's cleanup after each test, with the
// berthd log shown when the test failed. BERTH_TEST_HOLD=<seconds> keeps a failed test's
// directory that long before cleaning up.
#pragma once

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/pod_harness.h"

// gRPC status checks that print the call and the status.
#define ASSERT_OK(expr)                                            \
  do {                                                             \
    grpc::Status s_ok_ = (expr);                                   \
    ASSERT_TRUE(s_ok_.ok()) << #expr << " -> " << Describe(s_ok_); \
  } while (0)
#define EXPECT_OK(expr)                                            \
  do {                                                             \
    grpc::Status s_ok_ = (expr);                                   \
    EXPECT_TRUE(s_ok_.ok()) << #expr << " -> " << Describe(s_ok_); \
  } while (0)
#define EXPECT_CODE(expr, code)                             \
  do {                                                      \
    grpc::Status s_code_ = (expr);                          \
    EXPECT_EQ(s_code_.error_code(), grpc::StatusCode::code) \
        << #expr << " -> " << Describe(s_code_);            \
  } while (0)

namespace berth::testing {

template <typename Base = ::testing::Test>
class PodFixture : public Base {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    registry_ = new ImageRegistry;
    registry_error_ = new std::string;
    if (!registry_->Start(registry_error_)) {
      delete registry_;
      registry_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    delete registry_error_;
    registry_error_ = nullptr;
  }

  // A berthd of the test's own, its temporary directory named after `what`.
  void StartHarness(const std::string& what) {
    if (geteuid() != 0) GTEST_SKIP() << "berthd, runc, namespaces and cgroups need root";
    ASSERT_NE(registry_, nullptr) << *registry_error_;
    h_ = std::make_unique<PodHarness>(registry_->images(), what);
    std::string error;
    ASSERT_TRUE(h_->Start(&error)) << error;
  }

  void TearDown() override {
    if (!h_) return;
    if (this->HasFailure()) {
      std::cerr << "---- berthd log (last lines) ----\n" << h_->LogTail() << "\n----\n";
      if (const char* hold = std::getenv("BERTH_TEST_HOLD"); hold != nullptr) {
        std::cerr << "holding " << h_->root() << " for " << hold << " s\n";
        std::this_thread::sleep_for(seconds(std::atoi(hold)));
      }
    }
    std::string forced = h_->Cleanup();
    if (!forced.empty()) std::cerr << forced;
    h_.reset();
  }

  // What is on the node, berthd itself left out (its pid changes when it restarts).
  Footprint FootprintWithoutBerthd() {
    Footprint f = h_->TakeFootprint();
    pid_t d = h_->daemon().pid();
    f.processes.erase(std::remove(f.processes.begin(), f.processes.end(), d), f.processes.end());
    return f;
  }
  // Waits (bounded) until the node is back to `before`, then says what is left.
  void ExpectBackTo(const Footprint& before) {
    auto deadline = std::chrono::steady_clock::now() + seconds(15);
    Footprint after = FootprintWithoutBerthd();
    while (!(after == before) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(100));
      after = FootprintWithoutBerthd();
    }
    EXPECT_TRUE(after == before) << "left on the node:\n" << FootprintDiff(before, after);
  }

  // The memory limit and CPU shares in the cgroup files of container `id` (cgroupfs driver,
  // the harness's parent): v1 memory and cpu hierarchies, or v2 memory.max.
  void ExpectContainerCgroupLimits(const std::string& id, int64_t memory, int64_t shares) {
    const std::string cg = h_->cgroup_parent().substr(1) + "/" + id;
    if (fs::exists("/sys/fs/cgroup/memory")) {
      EXPECT_EQ(ReadFile("/sys/fs/cgroup/memory/" + cg + "/memory.limit_in_bytes"),
                std::to_string(memory) + "\n");
      EXPECT_EQ(ReadFile("/sys/fs/cgroup/cpu/" + cg + "/cpu.shares"),
                std::to_string(shares) + "\n");
    } else {
      EXPECT_EQ(ReadFile("/sys/fs/cgroup/" + cg + "/memory.max"), std::to_string(memory) + "\n");
    }
  }

  static inline ImageRegistry* registry_ = nullptr;
  static inline std::string* registry_error_ = nullptr;
  std::unique_ptr<PodHarness> h_;
};

}  // namespace berth::testing
