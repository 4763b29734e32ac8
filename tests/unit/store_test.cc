// SPDX-License-Identifier: Apache-2.0
#include "core/store.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace berth::core {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;  // NOLINT(build/namespaces): "a\0b"s keeps the NUL

absl::Status ToStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status status_ = ToStatus((expr)); \
    ASSERT_TRUE(status_.ok()) << status_;          \
  } while (0)
#define EXPECT_OK(expr)                            \
  do {                                             \
    const absl::Status status_ = ToStatus((expr)); \
    EXPECT_TRUE(status_.ok()) << status_;          \
  } while (0)

// Assigns the value of a StatusOr or fails the test.
#define STORE_CONCAT_INNER(a, b) a##b
#define STORE_CONCAT(a, b) STORE_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr)               \
  auto STORE_CONCAT(statusor_, __LINE__) = (expr);    \
  ASSERT_TRUE(STORE_CONCAT(statusor_, __LINE__).ok()) \
      << STORE_CONCAT(statusor_, __LINE__).status();  \
  lhs = std::move(*STORE_CONCAT(statusor_, __LINE__))

std::string StatusMessage(const absl::Status& s) { return std::string(s.message()); }

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "berth-store-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    file_ = dir_ / "state" / "meta.db";
  }

  // Runs even when the test failed.
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Writes one key in its own transaction.
  static absl::Status PutOne(Store& store, std::string_view bucket, std::string_view key,
                             std::string_view value) {
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = store.Begin(true);
    if (!txn.ok()) return txn.status();
    if (absl::Status s = (*txn)->Put(bucket, key, value); !s.ok()) return s;
    return (*txn)->Commit();
  }

  // Reads one key in its own read transaction.
  static absl::StatusOr<std::optional<std::string>> GetOne(Store& store, std::string_view bucket,
                                                           std::string_view key) {
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = store.Begin(false);
    if (!txn.ok()) return txn.status();
    return (*txn)->Get(bucket, key);
  }

  // All key/value pairs of a scan, in the order visited.
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanAll(
      Store::Txn& txn, std::string_view bucket, std::string_view prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    absl::Status s = txn.Scan(bucket, prefix, [&](std::string_view k, std::string_view v) {
      out.emplace_back(k, v);
      return true;
    });
    if (!s.ok()) return s;
    return out;
  }

  fs::path dir_;
  fs::path file_;
};

using KV = std::vector<std::pair<std::string, std::string>>;

TEST_F(StoreTest, PutGetDeleteScanBasics) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  EXPECT_EQ(store->path(), file_);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    EXPECT_TRUE(txn->writable());
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> missing, txn->Get("b", "nope"));
    EXPECT_FALSE(missing.has_value());
    ASSERT_OK(txn->Put("b", "k1", "v1"));
    ASSERT_OK(txn->Put("b", "k2", "v2"));
    ASSERT_OK(txn->Put("b", "k3", "v3"));
    ASSERT_OK(txn->Put("b", "other", "x"));
    ASSERT_OK(txn->Put("b", "k2", "v2-overwritten"));
    // A txn sees its own writes.
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> own, txn->Get("b", "k2"));
    EXPECT_EQ(own, "v2-overwritten");
    ASSERT_OK(txn->Delete("b", "k3"));
    ASSERT_OK(txn->Delete("b", "never-existed"));
    ASSERT_OK(txn->Commit());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
  EXPECT_FALSE(txn->writable());
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v1, txn->Get("b", "k1"));
  EXPECT_EQ(v1, "v1");
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v3, txn->Get("b", "k3"));
  EXPECT_FALSE(v3.has_value());
  ASSERT_OK_AND_ASSIGN(KV ks, ScanAll(*txn, "b", "k"));
  EXPECT_EQ(ks, (KV{{"k1", "v1"}, {"k2", "v2-overwritten"}}));
  ASSERT_OK_AND_ASSIGN(KV all, ScanAll(*txn, "b", ""));
  EXPECT_EQ(all, (KV{{"k1", "v1"}, {"k2", "v2-overwritten"}, {"other", "x"}}));
  ASSERT_OK_AND_ASSIGN(KV none, ScanAll(*txn, "b", "zzz"));
  EXPECT_TRUE(none.empty());
  ASSERT_OK(txn->Commit());
}

TEST_F(StoreTest, DataSurvivesReopen) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK(PutOne(*store, "b", "k", "persisted"));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, GetOne(*store, "b", "k"));
  EXPECT_EQ(v, "persisted");
}

TEST_F(StoreTest, BinaryKeysAndValues) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  const std::vector<std::string> keys = {
      ""s,          "\0"s,
      "\0\0"s,      "a"s,
      "a\0"s,       "a\0b"s,
      "a\x01"s,     "a\x7f"s,
      "a\x80"s,     "a\xfe"s,
      "a\xff"s,     "a\xff\0"s,
      "a\xff\xff"s, "a\xff\xff\x01"s,
      "b"s,         "\xff"s,
      "\xff\xff"s,  "\xff\xff\xff"s,
  };
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    for (const std::string& k : keys) {
      ASSERT_OK(txn->Put("bin", k, "v:"s + k + "\0\xff"s));
    }
    ASSERT_OK(txn->Put("bin", "empty-value", ""));
    ASSERT_OK(txn->Commit());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
  for (const std::string& k : keys) {
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, txn->Get("bin", k));
    ASSERT_TRUE(v.has_value()) << testing::PrintToString(k);
    EXPECT_EQ(*v, "v:"s + k + "\0\xff"s);
  }
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> empty, txn->Get("bin", "empty-value"));
  EXPECT_EQ(empty, std::optional<std::string>(""));
  // "a" and "a\0" are different keys.
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> nul_missing, txn->Get("bin", "b\0"s));
  EXPECT_FALSE(nul_missing.has_value());

  // Every prefix scan must return exactly the keys with that prefix, in byte order.
  std::vector<std::string> all_keys = keys;
  all_keys.push_back("empty-value");
  std::sort(all_keys.begin(), all_keys.end());  // std::string compares as unsigned bytes
  const std::vector<std::string> prefixes = {
      ""s,          "\0"s,   "a"s,        "a\0"s,          "a\xff"s,
      "a\xff\xff"s, "\xff"s, "\xff\xff"s, "\xff\xff\xff"s, "\xff\xff\xff\xff"s,
      "b"s,         "c"s,    "a\x7f"s,
  };
  for (const std::string& prefix : prefixes) {
    std::vector<std::string> want;
    for (const std::string& k : all_keys) {
      if (k.compare(0, prefix.size(), prefix) == 0 && k.size() >= prefix.size()) {
        want.push_back(k);
      }
    }
    std::vector<std::string> got;
    ASSERT_OK(txn->Scan("bin", prefix, [&](std::string_view k, std::string_view v) {
      EXPECT_EQ(std::string(v), k == "empty-value" ? ""s : "v:"s + std::string(k) + "\0\xff"s);
      got.emplace_back(k);
      return true;
    }));
    EXPECT_EQ(got, want) << "prefix " << testing::PrintToString(prefix);
  }
}

TEST_F(StoreTest, ScanInBatchesStopsEarlyAndAllowsReentry) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  constexpr int kKeys = 1000;  // several internal batches
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    for (int i = 0; i < kKeys; ++i) {
      char key[16];
      std::snprintf(key, sizeof(key), "k%05d", i);
      ASSERT_OK(txn->Put("b", key, std::to_string(i)));
    }
    ASSERT_OK(txn->Put("b", "l", "after"));
    ASSERT_OK(txn->Commit());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  int seen = 0;
  std::string last;
  ASSERT_OK(txn->Scan("b", "k", [&](std::string_view k, std::string_view v) {
    EXPECT_GT(std::string(k), last);
    last = std::string(k);
    EXPECT_EQ(v, std::to_string(seen));
    // The callback may use the txn, including writing and nested scans.
    absl::StatusOr<std::optional<std::string>> again = txn->Get("b", k);
    EXPECT_TRUE(again.ok() && again->has_value() && **again == v);
    EXPECT_OK(txn->Put("mirror", k, v));
    ++seen;
    return true;
  }));
  EXPECT_EQ(seen, kKeys);

  int stopped_after = 0;
  ASSERT_OK(txn->Scan("b", "",
                      [&](std::string_view, std::string_view) { return ++stopped_after < 300; }));
  EXPECT_EQ(stopped_after, 300);
  ASSERT_OK(txn->Commit());

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> reader, store->Begin(false));
  ASSERT_OK_AND_ASSIGN(KV mirrored, ScanAll(*reader, "mirror", ""));
  EXPECT_EQ(mirrored.size(), static_cast<size_t>(kKeys));
}

TEST_F(StoreTest, BucketsAreIsolated) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    ASSERT_OK(txn->Put("a", "k", "in-a"));
    ASSERT_OK(txn->Put("ab", "k", "in-ab"));
    ASSERT_OK(txn->Put("b", "k", "in-b"));
    ASSERT_OK(txn->Commit());
  }
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    ASSERT_OK(txn->Delete("a", "k"));
    ASSERT_OK(txn->Commit());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> a, txn->Get("a", "k"));
  EXPECT_FALSE(a.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> ab, txn->Get("ab", "k"));
  EXPECT_EQ(ab, "in-ab");
  ASSERT_OK_AND_ASSIGN(KV b, ScanAll(*txn, "b", ""));
  EXPECT_EQ(b, (KV{{"k", "in-b"}}));
  ASSERT_OK_AND_ASSIGN(KV none, ScanAll(*txn, "a", ""));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(KV missing, ScanAll(*txn, "nonexistent", ""));
  EXPECT_TRUE(missing.empty());

  // Bucket names must be usable as C strings (the plugin ABI passes them that way).
  EXPECT_EQ(txn->Get("", "k").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(txn->Get("a\0b"s, "k").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, AbortDiscardsWrites) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK(PutOne(*store, "b", "k", "old"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  ASSERT_OK(txn->Put("b", "k", "new"));
  ASSERT_OK(txn->Put("b", "k2", "new"));
  ASSERT_OK(txn->Delete("b", "k"));
  txn->Abort();
  txn->Abort();  // idempotent
  EXPECT_EQ(txn->Commit().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(txn->Put("b", "k", "x").code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_OK_AND_ASSIGN(std::optional<std::string> k, GetOne(*store, "b", "k"));
  EXPECT_EQ(k, "old");
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> k2, GetOne(*store, "b", "k2"));
  EXPECT_FALSE(k2.has_value());
}

TEST_F(StoreTest, DestructorAbortsAndReleasesTheWriter) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    ASSERT_OK(txn->Put("b", "k", "never"));
  }
  // Would block forever if the destroyed txn still held the writer.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> k, txn->Get("b", "k"));
  EXPECT_FALSE(k.has_value());
}

TEST_F(StoreTest, ReadOnlyTxnRefusesWrites) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK(PutOne(*store, "b", "k", "v"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
  absl::Status put = txn->Put("b", "k", "changed");
  EXPECT_EQ(put.code(), absl::StatusCode::kFailedPrecondition) << put;
  EXPECT_NE(StatusMessage(put).find(file_.string()), std::string::npos) << put;
  EXPECT_EQ(txn->Delete("b", "k").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, txn->Get("b", "k"));
  EXPECT_EQ(v, "v");
  ASSERT_OK(txn->Commit());
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> after, GetOne(*store, "b", "k"));
  EXPECT_EQ(after, "v");
}

TEST_F(StoreTest, FailedWriteMakesCommitFail) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  ASSERT_OK(txn->Put("b", "k", "v"));
  EXPECT_FALSE(txn->Put("", "k", "bad bucket").ok());
  EXPECT_EQ(txn->Commit().code(), absl::StatusCode::kAborted);
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, GetOne(*store, "b", "k"));
  EXPECT_FALSE(v.has_value());
}

TEST_F(StoreTest, SecondWriteTxnOnSameThreadFailsInsteadOfDeadlocking) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  absl::StatusOr<std::unique_ptr<Store::Txn>> second = store->Begin(true);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  // Reads are fine meanwhile.
  ASSERT_OK(store->Begin(false));
}

TEST_F(StoreTest, TxnMayOutliveStore) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
  store.reset();
  ASSERT_OK(txn->Put("b", "k", "late"));
  ASSERT_OK(txn->Commit());
  txn.reset();
  ASSERT_OK_AND_ASSIGN(store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, GetOne(*store, "b", "k"));
  EXPECT_EQ(v, "late");
}

TEST_F(StoreTest, ReadSnapshotIsolation) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    ASSERT_OK(txn->Put("b", "k", "old"));
    ASSERT_OK(txn->Put("b", "k2", "old"));
    ASSERT_OK(txn->Commit());
  }
  // The reader begins (and reads nothing yet) before the writer commits.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> reader, store->Begin(false));

  std::atomic<bool> writer_open{false};
  std::atomic<bool> proceed{false};
  absl::Status writer_status;
  std::thread writer([&] {
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = store->Begin(true);
    if (!txn.ok()) {
      writer_status = txn.status();
      writer_open = true;
      return;
    }
    writer_status = (*txn)->Put("b", "k", "new");
    if (writer_status.ok()) writer_status = (*txn)->Put("b", "k3", "new");
    if (writer_status.ok()) writer_status = (*txn)->Delete("b", "k2");
    writer_open = true;
    while (!proceed) std::this_thread::yield();
    if (writer_status.ok()) writer_status = (*txn)->Commit();
  });
  while (!writer_open) std::this_thread::yield();
  // A second reader begun while the write txn is open but uncommitted sees the old state too.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> reader2, store->Begin(false));
  proceed = true;
  writer.join();
  ASSERT_OK(writer_status);

  for (Store::Txn* r : {reader.get(), reader2.get()}) {
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> k, r->Get("b", "k"));
    EXPECT_EQ(k, "old");
    ASSERT_OK_AND_ASSIGN(KV all, ScanAll(*r, "b", ""));
    EXPECT_EQ(all, (KV{{"k", "old"}, {"k2", "old"}}));
  }
  // A reader begun after the commit sees the new state.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> fresh, store->Begin(false));
  ASSERT_OK_AND_ASSIGN(KV now, ScanAll(*fresh, "b", ""));
  EXPECT_EQ(now, (KV{{"k", "new"}, {"k3", "new"}}));
}

TEST_F(StoreTest, ConcurrentWritersAllLandAndReadersSeeConsistentState) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  constexpr int kThreads = 4;
  constexpr int kIncrements = 25;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  auto increment = [&] {
    for (int i = 0; i < kIncrements; ++i) {
      absl::StatusOr<std::unique_ptr<Store::Txn>> txn = store->Begin(true);
      if (!txn.ok()) {
        ++failures;
        continue;
      }
      absl::StatusOr<std::optional<std::string>> cur = (*txn)->Get("c", "counter");
      int n = 0;
      if (!cur.ok()) {
        ++failures;
        continue;
      }
      if (cur->has_value()) n = std::stoi(**cur);
      const std::string next = std::to_string(n + 1);
      if (!(*txn)->Put("c", "counter", next).ok() || !(*txn)->Put("c", "shadow", next).ok() ||
          !(*txn)->Commit().ok()) {
        ++failures;
      }
    }
  };
  std::atomic<int> inconsistent{0};
  std::atomic<int> reads{0};
  auto read = [&] {
    while (!done) {
      absl::StatusOr<std::unique_ptr<Store::Txn>> txn = store->Begin(false);
      if (!txn.ok()) {
        ++failures;
        continue;
      }
      absl::StatusOr<std::optional<std::string>> a = (*txn)->Get("c", "counter");
      std::this_thread::yield();
      absl::StatusOr<std::optional<std::string>> b = (*txn)->Get("c", "shadow");
      if (!a.ok() || !b.ok()) {
        ++failures;
      } else if (*a != *b) {
        ++inconsistent;
      }
      ++reads;
    }
  };
  std::vector<std::thread> threads;
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back(read);
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(increment);
  for (std::thread& t : threads) t.join();
  done = true;
  for (std::thread& t : readers) t.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(inconsistent.load(), 0);
  EXPECT_GT(reads.load(), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> counter, GetOne(*store, "c", "counter"));
  EXPECT_EQ(counter, std::to_string(kThreads * kIncrements));
}

TEST_F(StoreTest, CreatesPrivateFileAndDirectories) {
  const fs::path deep = dir_ / "x" / "y" / "meta.db";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(deep));
  ASSERT_OK(PutOne(*store, "b", "k", "v"));
  struct stat st;
  ASSERT_EQ(::stat(deep.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((deep.string() + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  for (const fs::path& d : {dir_ / "x", dir_ / "x" / "y"}) {
    ASSERT_EQ(::stat(d.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
  }
}

TEST_F(StoreTest, ErrorsNameTheFile) {
  // A directory where the database file should be.
  const fs::path file = dir_ / "is-a-dir";
  fs::create_directories(file);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(StatusMessage(store.status()).find(file.string()), std::string::npos) << store.status();
  EXPECT_NE(StatusMessage(store.status()).find("SQLITE_CANTOPEN"), std::string::npos)
      << store.status();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();

  // A regular file where a parent directory should be.
  std::ofstream(dir_ / "plain") << "x";
  absl::StatusOr<std::unique_ptr<Store>> nested = Store::Open(dir_ / "plain" / "meta.db");
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(StatusMessage(nested.status()).find("plain"), std::string::npos) << nested.status();
}

// Rewrites the schema version behind the store's back.
void SetSchemaVersion(const fs::path& file, int version) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  const std::string sql =
      "UPDATE meta SET value = " + std::to_string(version) + " WHERE key = 'schema_version'";
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
}

TEST_F(StoreTest, RefusesNewerSchemaVersion) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK(PutOne(*store, "b", "k", "v"));
  }
  SetSchemaVersion(file_, Store::kSchemaVersion + 41);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  const std::string msg = StatusMessage(store.status());
  EXPECT_NE(msg.find(file_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(Store::kSchemaVersion + 41)), std::string::npos) << msg;
  EXPECT_NE(msg.find("schema version " + std::to_string(Store::kSchemaVersion)), std::string::npos)
      << msg;

  // Going back to the supported version opens fine and the data is intact.
  SetSchemaVersion(file_, Store::kSchemaVersion);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> reopened, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> v, GetOne(*reopened, "b", "k"));
  EXPECT_EQ(v, "v");
}

TEST_F(StoreTest, RefusesForeignDatabase) {
  fs::create_directories(file_.parent_path());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_NE(StatusMessage(store.status()).find(file_.string()), std::string::npos);
}

void WriteGarbage(const fs::path& file, std::streamoff offset, size_t size, uint32_t seed) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open());
  f.seekp(offset);
  std::mt19937 rng(seed);
  std::string junk(size, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  ASSERT_TRUE(f.good());
}

TEST_F(StoreTest, GarbageFileIsDataLoss) {
  fs::create_directories(file_.parent_path());
  std::ofstream(file_, std::ios::binary) << std::string(4, 'x');
  WriteGarbage(file_, 0, 64 << 10, 1);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_NE(StatusMessage(store.status()).find(file_.string()), std::string::npos)
      << store.status();
}

TEST_F(StoreTest, CorruptPagesAreDataLoss) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(true));
    for (int i = 0; i < 3000; ++i) {
      ASSERT_OK(txn->Put("b", "key-" + std::to_string(i), std::string(100, 'v')));
    }
    ASSERT_OK(txn->Commit());
  }
  // Closing the last connection checkpoints the WAL into the main file and removes it.
  ASSERT_FALSE(fs::exists(file_.string() + "-wal"));
  const auto size = static_cast<std::streamoff>(fs::file_size(file_));
  ASSERT_GT(size, 16 * 4096);
  // Keep page 1 (header and schema) intact; wreck the middle of the table.
  WriteGarbage(file_, 4 * 4096, static_cast<size_t>(size / 2), 2);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_NE(StatusMessage(store.status()).find(file_.string()), std::string::npos)
      << store.status();
}

// ---------------------------------------------------------------------------------------------
// Crash safety with real SIGKILLs. Children open the store themselves after fork() (the
// parent has no store open at that point) and leave with _exit().

constexpr int kChildOpenFailed = 10;
constexpr int kChildBeginFailed = 11;
constexpr int kChildWriteFailed = 12;
constexpr int kChildCommitFailed = 13;
constexpr int kChildReadFailed = 14;

uint64_t ParseU64(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return UINT64_MAX;
  return v;
}

// Commits transactions forever; each writes the next counter value N into counters/a,
// counters/b and mirror/counter and adds counters/log/<N>, then reports N on `report_fd`.
[[noreturn]] void CounterChild(const fs::path& file, int report_fd) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file);
  if (!store.ok()) _exit(kChildOpenFailed);
  uint64_t n = 0;
  {
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = (*store)->Begin(false);
    if (!txn.ok()) _exit(kChildBeginFailed);
    absl::StatusOr<std::optional<std::string>> cur = (*txn)->Get("counters", "a");
    if (!cur.ok()) _exit(kChildReadFailed);
    if (cur->has_value()) n = ParseU64(**cur);
  }
  for (;;) {
    ++n;
    const std::string v = std::to_string(n);
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = (*store)->Begin(true);
    if (!txn.ok()) _exit(kChildBeginFailed);
    if (!(*txn)->Put("counters", "a", v).ok() || !(*txn)->Put("counters", "log/" + v, "").ok() ||
        !(*txn)->Put("mirror", "counter", v).ok() || !(*txn)->Put("counters", "b", v).ok()) {
      _exit(kChildWriteFailed);
    }
    if (!(*txn)->Commit().ok()) _exit(kChildCommitFailed);
    if (::write(report_fd, &n, sizeof(n)) != static_cast<ssize_t>(sizeof(n))) _exit(0);
  }
}

// Kills `pid` with SIGKILL and reaps it; fails if it had exited on its own.
void KillAndReap(pid_t pid) {
  ASSERT_EQ(::kill(pid, SIGKILL), 0) << std::strerror(errno);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid) << std::strerror(errno);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child exited by itself with status " << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
}

// The last value a child reported through `fd` (0 if none); reads until EOF.
uint64_t LastReported(int fd) {
  uint64_t last = 0;
  uint64_t buf[512];
  std::string partial;
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    partial.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(r));
  }
  const size_t whole = partial.size() / sizeof(uint64_t);
  if (whole > 0) std::memcpy(&last, partial.data() + (whole - 1) * sizeof(uint64_t), 8);
  return last;
}

TEST_F(StoreTest, CommittedTxnsSurviveKill9AndPartialOnesVanish) {
  constexpr int kRounds = 40;
  const unsigned seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(5, 60);

  uint64_t previous = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::close(fds[0]);
      CounterChild(file_, fds[1]);
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    KillAndReap(pid);
    const uint64_t reported = LastReported(fds[0]);
    ::close(fds[0]);
    if (HasFatalFailure()) return;

    // Open runs recovery and quick_check.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> a, txn->Get("counters", "a"));
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> b, txn->Get("counters", "b"));
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> m, txn->Get("mirror", "counter"));
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, m);
    const uint64_t counter = a.has_value() ? ParseU64(*a) : 0;
    ASSERT_NE(counter, UINT64_MAX) << *a;
    // Nothing committed is lost: every reported commit is there, plus at most the one whose
    // report the kill cut off. And the counter never goes backwards.
    EXPECT_GE(counter, reported);
    EXPECT_LE(counter, std::max(previous, reported) + 1);
    EXPECT_GE(counter, previous);

    std::set<uint64_t> logged;
    ASSERT_OK(txn->Scan("counters", "log/", [&](std::string_view k, std::string_view) {
      logged.insert(ParseU64(k.substr(4)));
      return true;
    }));
    EXPECT_EQ(logged.size(), counter);
    if (!logged.empty()) {
      EXPECT_EQ(*logged.begin(), 1u);
      EXPECT_EQ(*logged.rbegin(), counter);  // none beyond the counter
    }
    previous = counter;
    // Close before the next fork.
  }
  EXPECT_GT(previous, 0u) << "no child ever committed; the test exercised nothing";
}

// Puts kLargeKeys large values in one txn without ever committing; signals after kSignalAt.
constexpr int kLargeSignalAt = 3000;

[[noreturn]] void LargeTxnChild(const fs::path& file, int ready_fd) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file);
  if (!store.ok()) _exit(kChildOpenFailed);
  absl::StatusOr<std::unique_ptr<Store::Txn>> txn = (*store)->Begin(true);
  if (!txn.ok()) _exit(kChildBeginFailed);
  const std::string value(1024, 'L');  // enough to overflow the page cache into the WAL
  for (uint64_t i = 0;; ++i) {
    if (!(*txn)->Put("big", "key/" + std::to_string(i), value).ok()) _exit(kChildWriteFailed);
    if (i == kLargeSignalAt) {
      const char c = 'r';
      if (::write(ready_fd, &c, 1) != 1) _exit(kChildWriteFailed);
    }
  }
}

// Commits generations of kGenKeys keys each plus a marker; used with random kills.
constexpr int kGenKeys = 2000;

[[noreturn]] void GenerationsChild(const fs::path& file) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file);
  if (!store.ok()) _exit(kChildOpenFailed);
  const std::string value(512, 'G');
  for (uint64_t gen = 0;; ++gen) {
    absl::StatusOr<std::unique_ptr<Store::Txn>> txn = (*store)->Begin(true);
    if (!txn.ok()) _exit(kChildBeginFailed);
    // Generation numbers restart in every child; make them unique with the pid.
    const std::string g = std::to_string(::getpid()) + "." + std::to_string(gen);
    for (int i = 0; i < kGenKeys; ++i) {
      if (!(*txn)->Put("gens", g + "/" + std::to_string(i), value).ok()) {
        _exit(kChildWriteFailed);
      }
    }
    if (!(*txn)->Put("markers", g, std::to_string(kGenKeys)).ok()) _exit(kChildWriteFailed);
    if (!(*txn)->Commit().ok()) _exit(kChildCommitFailed);
  }
}

// Runs into an I/O error in the middle of a txn (RLIMIT_FSIZE stands in for a full disk).
// SQLite rolls the whole txn back by itself then; the txn must refuse further writes rather
// than run them in autocommit mode, and Commit must fail. Exit code 0 when all went so.
[[noreturn]] void WriteErrorChild(const fs::path& file) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(file);
  if (!store.ok()) _exit(kChildOpenFailed);
  ::signal(SIGXFSZ, SIG_IGN);
  std::error_code ec;
  const uintmax_t size = fs::file_size(file, ec) + fs::file_size(file.string() + "-wal", ec);
  const rlim_t limit = static_cast<rlim_t>(size) + (1 << 20);
  const struct rlimit rl = {limit, limit};
  if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(20);
  absl::StatusOr<std::unique_ptr<Store::Txn>> txn = (*store)->Begin(true);
  if (!txn.ok()) _exit(kChildBeginFailed);
  const std::string value(1024, 'F');
  absl::Status s;
  for (int i = 0; i < 20000 && s.ok(); ++i) s = (*txn)->Put("full", std::to_string(i), value);
  if (s.ok()) _exit(21);  // never hit the limit
  if (s.message().find(file.string()) == std::string_view::npos) _exit(22);
  if ((*txn)->Put("full", "after-error", "x").ok()) _exit(23);
  if ((*txn)->Commit().ok()) _exit(24);
  _exit(0);
}

TEST_F(StoreTest, WriteErrorRollsBackTheWholeTxn) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK(PutOne(*store, "full", "before", "kept"));
  }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) WriteErrorChild(file_);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child died with signal " << WTERMSIG(wstatus);
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "see WriteErrorChild for the meaning";

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
  ASSERT_OK_AND_ASSIGN(KV rows, ScanAll(*txn, "full", ""));
  EXPECT_EQ(rows, (KV{{"before", "kept"}}));
}

TEST_F(StoreTest, KillDuringLargeTransactionLeavesNoTrace) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK(PutOne(*store, "big", "before", "kept"));
  }
  // Deterministic: the child is known to be in the middle of an uncommitted large txn.
  {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::close(fds[0]);
      LargeTxnChild(file_, fds[1]);
    }
    ::close(fds[1]);
    char c = 0;
    const ssize_t r = ::read(fds[0], &c, 1);
    ::close(fds[0]);
    KillAndReap(pid);
    ASSERT_EQ(r, 1) << "the child died before signalling";
    if (HasFatalFailure()) return;

    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
    ASSERT_OK_AND_ASSIGN(KV big, ScanAll(*txn, "big", ""));
    EXPECT_EQ(big, (KV{{"before", "kept"}}));
  }
  // Randomly timed kills over a stream of large txns, some of them mid-commit: every
  // generation is there in full or not at all.
  const unsigned seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(5, 60);
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) GenerationsChild(file_);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    KillAndReap(pid);
    if (HasFatalFailure()) return;

    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> store, Store::Open(file_));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store::Txn> txn, store->Begin(false));
    std::map<std::string, int> per_gen;
    ASSERT_OK(txn->Scan("gens", "", [&](std::string_view k, std::string_view) {
      ++per_gen[std::string(k.substr(0, k.find('/')))];
      return true;
    }));
    ASSERT_OK_AND_ASSIGN(KV markers, ScanAll(*txn, "markers", ""));
    EXPECT_EQ(per_gen.size(), markers.size());
    for (const auto& [gen, count] : markers) {
      EXPECT_EQ(per_gen[gen], kGenKeys) << "generation " << gen;
    }
    for (const auto& [gen, count] : per_gen) EXPECT_EQ(count, kGenKeys) << "generation " << gen;
  }
}

}  // namespace
}  // namespace berth::core
