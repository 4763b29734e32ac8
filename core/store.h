// SPDX-License-Identifier: Apache-2.0
//
// The daemon's embedded, transactional, crash-safe metadata store.
//
// Data is organised as buckets of byte-string keys mapped to byte-string values, held in one
// SQLite database in WAL mode with synchronous=FULL: once Commit() returns OK the transaction
// survives a crash of the process and (as far as the file system honours fsync) of the host.
//
// Concurrency: a Store is thread safe. Any number of read transactions may be open at once,
// each on its own connection and each seeing the snapshot that was current when Begin()
// returned. Write transactions are serialised: Begin(true) blocks while another write
// transaction is open (anywhere in this process). A single Txn is not thread safe, but it may
// be handed from one thread to another. Long-lived read transactions keep the WAL from being
// checkpointed past their snapshot, so keep them short.
//
// A Txn keeps the store's internals alive, so destroying the Store while transactions are
// still open is safe; the connections close when the last transaction ends.
//
// Do not fork() while a Store is open and use it in the child; open a new Store there.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::core {

class Store {
 private:
  struct Shared;
  struct Conn;

 public:
  // The schema version this build writes and understands.
  static constexpr int kSchemaVersion = 1;

  class Txn {
   public:
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    ~Txn();  // aborts if neither Commit nor Abort was called

    // NOT_FOUND-free: returns std::nullopt when absent.
    [[nodiscard]] absl::StatusOr<std::optional<std::string>> Get(std::string_view bucket,
                                                                 std::string_view key);
    // FAILED_PRECONDITION on a read-only txn.
    [[nodiscard]] absl::Status Put(std::string_view bucket, std::string_view key,
                                   std::string_view value);
    // Deleting an absent key is OK.
    [[nodiscard]] absl::Status Delete(std::string_view bucket, std::string_view key);
    // Calls fn for every key starting with prefix, in ascending byte order; fn returns false
    // to stop early. fn may call other methods of this Txn (rows are fetched in batches, so
    // no statement is active while fn runs); writes made from fn to keys after the current
    // one may or may not be visited.
    [[nodiscard]] absl::Status Scan(
        std::string_view bucket, std::string_view prefix,
        const std::function<bool(std::string_view key, std::string_view value)>& fn);
    // Makes the writes durable. If a Put or Delete of this txn failed, nothing is written and
    // ABORTED is returned. The txn is finished afterwards, whatever the result.
    [[nodiscard]] absl::Status Commit();
    // Discards the txn's writes. Idempotent; a no-op after Commit.
    void Abort();
    bool writable() const { return writable_; }

   private:
    friend class Store;
    Txn(std::shared_ptr<Shared> shared, std::unique_ptr<Conn> conn, bool writable);

    // OK if the txn may still be used (and, if `write`, written to).
    absl::Status CheckUsable(std::string_view op, bool write) const;
    // Remembers a failed write (in a writable txn) so that Commit refuses to commit a partial
    // txn.
    absl::Status Poison(absl::Status status);
    // Rolls back if still in a transaction and returns the connection to the store.
    void Finish();

    std::shared_ptr<Shared> shared_;
    std::unique_ptr<Conn> conn_;  // null once finished
    const bool writable_;
    absl::Status poisoned_;  // the first failed write, if any
    bool finished_ = false;  // the connection (and, if writable, the writer slot) is released
  };

  // Opens (creating if needed, mode 0600, parent dirs 0700) the database file, recovers it
  // after a crash, runs PRAGMA quick_check (DATA_LOSS if it fails) and creates or checks the
  // schema (FAILED_PRECONDITION if the file has a newer schema version than this build).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Store>> Open(
      const std::filesystem::path& file);

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store();

  // Starts a transaction. Begin(true) waits until no other write transaction is open; it fails
  // with FAILED_PRECONDITION instead of deadlocking when the calling thread itself began the
  // open write transaction.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Txn>> Begin(bool writable);

  const std::filesystem::path& path() const;

 private:
  explicit Store(std::shared_ptr<Shared> shared);

  std::shared_ptr<Shared> shared_;
};

}  // namespace berth::core
