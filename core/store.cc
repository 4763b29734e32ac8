// SPDX-License-Identifier: Apache-2.0
#include "core/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace berth::core {
namespace {

namespace fs = std::filesystem;

constexpr int kBusyTimeoutMs = 5000;
// Idle read connections kept for reuse; more are opened on demand and closed when done.
constexpr size_t kMaxIdleReaders = 4;
// Rows fetched per statement execution while scanning (see Txn::Scan).
constexpr int kScanBatch = 256;
// Truncate the WAL to this size after a checkpoint resets it.
constexpr int64_t kJournalSizeLimit = 64 << 20;

constexpr char kSchemaVersionKey[] = "schema_version";

// Debian's Abseil is built with its own string_view type; convert explicitly.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct CodeNameEntry {
  int code;
  const char* name;
};
#define BERTH_SQLITE_CODE(c) \
  CodeNameEntry { c, #c }
// Extended codes an operator is likely to meet, then all primary codes.
constexpr CodeNameEntry kCodeNames[] = {
    BERTH_SQLITE_CODE(SQLITE_IOERR_READ),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SHORT_READ),
    BERTH_SQLITE_CODE(SQLITE_IOERR_WRITE),
    BERTH_SQLITE_CODE(SQLITE_IOERR_FSYNC),
    BERTH_SQLITE_CODE(SQLITE_IOERR_DIR_FSYNC),
    BERTH_SQLITE_CODE(SQLITE_IOERR_TRUNCATE),
    BERTH_SQLITE_CODE(SQLITE_IOERR_FSTAT),
    BERTH_SQLITE_CODE(SQLITE_IOERR_UNLOCK),
    BERTH_SQLITE_CODE(SQLITE_IOERR_RDLOCK),
    BERTH_SQLITE_CODE(SQLITE_IOERR_DELETE),
    BERTH_SQLITE_CODE(SQLITE_IOERR_NOMEM),
    BERTH_SQLITE_CODE(SQLITE_IOERR_ACCESS),
    BERTH_SQLITE_CODE(SQLITE_IOERR_LOCK),
    BERTH_SQLITE_CODE(SQLITE_IOERR_CLOSE),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SHMOPEN),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SHMSIZE),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SHMLOCK),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SHMMAP),
    BERTH_SQLITE_CODE(SQLITE_IOERR_SEEK),
    BERTH_SQLITE_CODE(SQLITE_IOERR_MMAP),
    BERTH_SQLITE_CODE(SQLITE_IOERR_CORRUPTFS),
    BERTH_SQLITE_CODE(SQLITE_BUSY_RECOVERY),
    BERTH_SQLITE_CODE(SQLITE_BUSY_SNAPSHOT),
    BERTH_SQLITE_CODE(SQLITE_BUSY_TIMEOUT),
    BERTH_SQLITE_CODE(SQLITE_CANTOPEN_ISDIR),
    BERTH_SQLITE_CODE(SQLITE_CANTOPEN_FULLPATH),
    BERTH_SQLITE_CODE(SQLITE_CORRUPT_INDEX),
    BERTH_SQLITE_CODE(SQLITE_READONLY_RECOVERY),
    BERTH_SQLITE_CODE(SQLITE_READONLY_CANTLOCK),
    BERTH_SQLITE_CODE(SQLITE_READONLY_ROLLBACK),
    BERTH_SQLITE_CODE(SQLITE_READONLY_DBMOVED),
    BERTH_SQLITE_CODE(SQLITE_READONLY_CANTINIT),
    BERTH_SQLITE_CODE(SQLITE_READONLY_DIRECTORY),
    BERTH_SQLITE_CODE(SQLITE_ERROR),
    BERTH_SQLITE_CODE(SQLITE_INTERNAL),
    BERTH_SQLITE_CODE(SQLITE_PERM),
    BERTH_SQLITE_CODE(SQLITE_ABORT),
    BERTH_SQLITE_CODE(SQLITE_BUSY),
    BERTH_SQLITE_CODE(SQLITE_LOCKED),
    BERTH_SQLITE_CODE(SQLITE_NOMEM),
    BERTH_SQLITE_CODE(SQLITE_READONLY),
    BERTH_SQLITE_CODE(SQLITE_INTERRUPT),
    BERTH_SQLITE_CODE(SQLITE_IOERR),
    BERTH_SQLITE_CODE(SQLITE_CORRUPT),
    BERTH_SQLITE_CODE(SQLITE_NOTFOUND),
    BERTH_SQLITE_CODE(SQLITE_FULL),
    BERTH_SQLITE_CODE(SQLITE_CANTOPEN),
    BERTH_SQLITE_CODE(SQLITE_PROTOCOL),
    BERTH_SQLITE_CODE(SQLITE_EMPTY),
    BERTH_SQLITE_CODE(SQLITE_SCHEMA),
    BERTH_SQLITE_CODE(SQLITE_TOOBIG),
    BERTH_SQLITE_CODE(SQLITE_CONSTRAINT),
    BERTH_SQLITE_CODE(SQLITE_MISMATCH),
    BERTH_SQLITE_CODE(SQLITE_MISUSE),
    BERTH_SQLITE_CODE(SQLITE_NOLFS),
    BERTH_SQLITE_CODE(SQLITE_AUTH),
    BERTH_SQLITE_CODE(SQLITE_FORMAT),
    BERTH_SQLITE_CODE(SQLITE_RANGE),
    BERTH_SQLITE_CODE(SQLITE_NOTADB),
};
#undef BERTH_SQLITE_CODE

// The SQLite symbol for a result code, e.g. "SQLITE_FULL" or "SQLITE_IOERR_FSYNC".
std::string CodeName(int rc) {
  for (const CodeNameEntry& e : kCodeNames) {
    if (e.code == rc) return e.name;
  }
  for (const CodeNameEntry& e : kCodeNames) {
    if (e.code == (rc & 0xff)) return absl::StrCat(e.name, ", extended code ", rc);
  }
  return absl::StrCat("SQLite error ", rc);
}

absl::StatusCode CodeFor(int rc, int sys_errno) {
  if (rc == SQLITE_IOERR_CORRUPTFS) return absl::StatusCode::kDataLoss;
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
      // Missing permissions are the operator's to fix; anything else (a read-only file
      // system, a directory where the file should be) is a broken precondition.
      return sys_errno == EACCES || sys_errno == EPERM ? absl::StatusCode::kPermissionDenied
                                                       : absl::StatusCode::kFailedPrecondition;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_INTERRUPT:
      return absl::StatusCode::kCancelled;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "metadata store <file>: <what>: <SQLite's message> (<code>[; <OS error>])". `db` may be
// null; SQLite's message for `rc` is used then.
absl::Status SqliteError(const fs::path& file, std::string_view what, sqlite3* db, int rc) {
  const char* message = sqlite3_errstr(rc);
  int sys_errno = 0;
  if (db != nullptr) {
    if ((sqlite3_extended_errcode(db) & 0xff) == (rc & 0xff)) message = sqlite3_errmsg(db);
    switch (rc & 0xff) {
      case SQLITE_IOERR:
      case SQLITE_CANTOPEN:
      case SQLITE_READONLY:
      case SQLITE_FULL:
      case SQLITE_PERM:
        sys_errno = sqlite3_system_errno(db);
        break;
      default:
        break;
    }
  }
  std::string detail = CodeName(rc);
  if (sys_errno != 0) {
    absl::StrAppend(&detail, "; ", std::generic_category().message(sys_errno));
  }
  return absl::Status(CodeFor(rc, sys_errno),
                      absl::StrCat("metadata store ", file.string(), ": ", Av(what), ": ", message,
                                   " (", detail, ")"));
}

absl::Status ErrnoError(int error, const fs::path& file, std::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat("metadata store ", file.string(), ": ", Av(what)));
}

// Binds arbitrary bytes as a BLOB. An empty view binds an empty BLOB, never NULL.
int BindBytes(sqlite3_stmt* stmt, int index, std::string_view bytes) {
  return sqlite3_bind_blob64(stmt, index, bytes.empty() ? "" : bytes.data(), bytes.size(),
                             SQLITE_TRANSIENT);
}

int BindBucket(sqlite3_stmt* stmt, int index, std::string_view bucket) {
  return sqlite3_bind_text64(stmt, index, bucket.data(), bucket.size(), SQLITE_TRANSIENT,
                             SQLITE_UTF8);
}

std::string ColumnBytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  const int size = sqlite3_column_bytes(stmt, column);
  if (data == nullptr || size <= 0) return std::string();
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

// Resets a cached statement (and drops its bindings) when leaving a scope.
class StmtGuard {
 public:
  explicit StmtGuard(sqlite3_stmt* stmt) : stmt_(stmt) {}
  StmtGuard(const StmtGuard&) = delete;
  StmtGuard& operator=(const StmtGuard&) = delete;
  ~StmtGuard() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_;
};

// The smallest byte string greater than every string that starts with `prefix`, or nullopt
// if there is none (empty prefix, or a prefix of only 0xFF bytes).
std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
  if (end.empty()) return std::nullopt;
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

absl::Status CheckBucket(const fs::path& file, std::string_view bucket) {
  if (bucket.empty() || bucket.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata store ", file.string(), ": bucket names must be non-empty and free of NULs"));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const fs::path& dir, const fs::path& file) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, file, absl::StrCat("cannot open ", dir.string()));
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError(error, file, absl::StrCat("cannot fsync ", dir.string()));
  return absl::OkStatus();
}

// Creates the missing directories leading to `dir` with mode 0700 and makes them durable.
absl::Status MakeParents(const fs::path& dir, const fs::path& file) {
  std::vector<fs::path> missing;
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat("metadata store ", file.string(), ": ",
                                                          p.string(), " is not a directory"));
      }
      break;
    }
    if (errno != ENOENT) return ErrnoError(errno, file, absl::StrCat("cannot stat ", p.string()));
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0) {
      if (errno == EEXIST) continue;  // created concurrently
      return ErrnoError(errno, file, absl::StrCat("cannot create directory ", it->string()));
    }
    if (::chmod(it->c_str(), 0700) != 0) {
      return ErrnoError(errno, file, absl::StrCat("cannot chmod ", it->string()));
    }
    if (absl::Status s = FsyncDir(it->parent_path(), file); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Creates the database file with mode 0600 unless it exists, so that SQLite (which gives the
// -wal and -shm files the main file's mode) never creates anything more permissive.
absl::Status CreateFile(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return absl::OkStatus();
    return ErrnoError(errno, file, "cannot create the database file");
  }
  int rc = ::fchmod(fd, 0600);
  if (rc == 0) rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError(error, file, "cannot set up the new database file");
  return FsyncDir(file.parent_path(), file);
}

}  // namespace

// One SQLite connection and its prepared statements. Used by one Txn at a time.
struct Store::Conn {
  sqlite3* db = nullptr;
  sqlite3_stmt* begin = nullptr;  // BEGIN (readers) or BEGIN IMMEDIATE (the writer)
  sqlite3_stmt* pin = nullptr;    // a read that makes BEGIN take its snapshot now
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* get = nullptr;
  sqlite3_stmt* put = nullptr;
  sqlite3_stmt* del = nullptr;
  sqlite3_stmt* scan_range = nullptr;  // bucket, from, to, limit
  sqlite3_stmt* scan_from = nullptr;   // bucket, from, limit

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    for (sqlite3_stmt* s : {begin, pin, commit, rollback, get, put, del, scan_range, scan_from}) {
      sqlite3_finalize(s);
    }
    sqlite3_close_v2(db);
  }

  bool in_txn() const { return sqlite3_get_autocommit(db) == 0; }

  // Runs SQL that returns no rows we care about.
  absl::Status Exec(const fs::path& file, const char* sql, std::string_view what) {
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(file, what, db, rc);
    return absl::OkStatus();
  }

  // Runs a one-off statement and returns the first column of every row as text.
  absl::StatusOr<std::vector<std::string>> Query(const fs::path& file, const char* sql,
                                                 std::string_view what) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(file, what, db, rc);
    std::vector<std::string> rows;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) rows.push_back(ColumnBytes(stmt, 0));
    absl::Status status = rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(file, what, db, rc);
    sqlite3_finalize(stmt);
    if (!status.ok()) return status;
    return rows;
  }

  absl::Status Prepare(const fs::path& file, bool writer) {
    struct Item {
      sqlite3_stmt** stmt;
      const char* sql;
    };
    const Item items[] = {
        {&begin, writer ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED"},
        {&pin, "SELECT value FROM meta WHERE key = 'schema_version'"},
        {&commit, "COMMIT"},
        {&rollback, "ROLLBACK"},
        {&get, "SELECT value FROM kv WHERE bucket = ?1 AND key = ?2"},
        {&put,
         "INSERT INTO kv(bucket, key, value) VALUES(?1, ?2, ?3) "
         "ON CONFLICT(bucket, key) DO UPDATE SET value = excluded.value"},
        {&del, "DELETE FROM kv WHERE bucket = ?1 AND key = ?2"},
        {&scan_range,
         "SELECT key, value FROM kv WHERE bucket = ?1 AND key >= ?2 AND key < ?3 "
         "ORDER BY key LIMIT ?4"},
        {&scan_from,
         "SELECT key, value FROM kv WHERE bucket = ?1 AND key >= ?2 ORDER BY key LIMIT ?3"},
    };
    for (const Item& item : items) {
      const int rc =
          sqlite3_prepare_v3(db, item.sql, -1, SQLITE_PREPARE_PERSISTENT, item.stmt, nullptr);
      if (rc != SQLITE_OK) {
        return SqliteError(file, absl::StrCat("cannot prepare \"", item.sql, "\""), db, rc);
      }
    }
    return absl::OkStatus();
  }

  // Opens a connection with the per-connection settings; statements are not prepared yet.
  static absl::StatusOr<std::unique_ptr<Conn>> Open(const fs::path& file, bool writer) {
    auto conn = std::make_unique<Conn>();
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_EXRESCODE
    flags |= SQLITE_OPEN_EXRESCODE;
#endif
    const int rc = sqlite3_open_v2(file.c_str(), &conn->db, flags, nullptr);
    if (rc != SQLITE_OK) return SqliteError(file, "cannot open", conn->db, rc);
    // SQLite quietly falls back to read-only when the file is not writable.
    if (sqlite3_db_readonly(conn->db, "main") == 1) {
      return absl::PermissionDeniedError(absl::StrCat("metadata store ", file.string(),
                                                      ": cannot open: the file is not writable"));
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, kBusyTimeoutMs);
    if (absl::Status s = conn->Exec(file, "PRAGMA synchronous = FULL", "cannot open"); !s.ok()) {
      return s;
    }
    if (absl::Status s = conn->Exec(file, "PRAGMA trusted_schema = OFF", "cannot open"); !s.ok()) {
      return s;
    }
    if (writer) {
      const std::string sql = absl::StrCat("PRAGMA journal_size_limit = ", kJournalSizeLimit);
      if (absl::Status s = conn->Exec(file, sql.c_str(), "cannot open"); !s.ok()) return s;
    } else {
      if (absl::Status s = conn->Exec(file, "PRAGMA query_only = ON", "cannot open"); !s.ok()) {
        return s;
      }
    }
    return conn;
  }

  // Opens a connection ready for transactions (the schema must exist).
  static absl::StatusOr<std::unique_ptr<Conn>> OpenReady(const fs::path& file, bool writer) {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Open(file, writer);
    if (!conn.ok()) return conn.status();
    if (absl::Status s = (*conn)->Prepare(file, writer); !s.ok()) return s;
    return conn;
  }
};

// State shared by the Store and its open transactions.
struct Store::Shared {
  fs::path path;

  std::mutex mu;
  std::condition_variable writer_free;
  bool writer_busy = false;      // guarded by mu
  std::thread::id writer_owner;  // guarded by mu; the thread that began the write txn
  std::unique_ptr<Conn> writer;  // guarded by mu; null while lent out or after failure
  std::vector<std::unique_ptr<Conn>> idle_readers;  // guarded by mu
};

Store::Store(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

Store::~Store() = default;

const std::filesystem::path& Store::path() const { return shared_->path; }

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& file) {
  if (file.empty()) return absl::InvalidArgumentError("metadata store: empty file name");
  if (sqlite3_threadsafe() == 0) {
    return absl::FailedPreconditionError(
        "metadata store: the SQLite library was built without thread support");
  }
  std::error_code ec;
  fs::path path = fs::absolute(file, ec);
  if (ec) return ErrnoError(ec.value(), file, "cannot resolve the path");
  if (!path.has_filename()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata store ", path.string(), ": not a file name"));
  }

  if (absl::Status s = MakeParents(path.parent_path(), path); !s.ok()) return s;
  if (absl::Status s = CreateFile(path); !s.ok()) return s;

  absl::StatusOr<std::unique_ptr<Conn>> opened = Conn::Open(path, /*writer=*/true);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Conn> conn = std::move(*opened);

  // WAL mode is persistent in the file; readers opened later inherit it.
  absl::StatusOr<std::vector<std::string>> mode =
      conn->Query(path, "PRAGMA journal_mode = WAL", "cannot switch to WAL mode");
  if (!mode.ok()) return mode.status();
  if (mode->size() != 1 || (*mode)[0] != "wal") {
    return absl::FailedPreconditionError(absl::StrCat("metadata store ", path.string(),
                                                      ": cannot switch to WAL mode (got \"",
                                                      absl::StrJoin(*mode, ","), "\")"));
  }

  absl::StatusOr<std::vector<std::string>> check =
      conn->Query(path, "PRAGMA quick_check", "integrity check failed");
  if (!check.ok()) return check.status();
  if (check->size() != 1 || (*check)[0] != "ok") {
    constexpr size_t kMaxShown = 5;
    std::vector<std::string> shown(check->begin(),
                                   check->begin() + std::min(check->size(), kMaxShown));
    return absl::DataLossError(absl::StrCat(
        "metadata store ", path.string(), ": integrity check failed: ", absl::StrJoin(shown, "; "),
        check->size() > kMaxShown ? "; ..." : ""));
  }

  // Create or validate the schema in one write transaction.
  if (absl::Status s = conn->Exec(path, "BEGIN IMMEDIATE", "cannot begin schema setup"); !s.ok()) {
    return s;
  }
  absl::Status schema = [&]() -> absl::Status {
    absl::StatusOr<std::vector<std::string>> has_meta =
        conn->Query(path, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
                    "cannot read the schema");
    if (!has_meta.ok()) return has_meta.status();
    if (has_meta->empty()) {
      absl::StatusOr<std::vector<std::string>> others = conn->Query(
          path,
          "SELECT name FROM sqlite_schema WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_'",
          "cannot read the schema");
      if (!others.ok()) return others.status();
      if (!others->empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("metadata store ", path.string(),
                         ": not a berth metadata store (it has tables but no schema version): ",
                         absl::StrJoin(*others, ", ")));
      }
      if (absl::Status s = conn->Exec(path,
                                      "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value) "
                                      "WITHOUT ROWID",
                                      "cannot create the meta table");
          !s.ok()) {
        return s;
      }
      const std::string insert = absl::StrCat("INSERT INTO meta(key, value) VALUES('",
                                              kSchemaVersionKey, "', ", kSchemaVersion, ")");
      if (absl::Status s = conn->Exec(path, insert.c_str(), "cannot write the schema version");
          !s.ok()) {
        return s;
      }
    } else {
      absl::StatusOr<std::vector<std::string>> version =
          conn->Query(path, "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
                      "cannot read the schema version");
      if (!version.ok()) return version.status();
      int64_t v = 0;
      if (version->size() != 1 || !absl::SimpleAtoi((*version)[0], &v) || v < 1) {
        return absl::DataLossError(
            absl::StrCat("metadata store ", path.string(), ": missing or invalid schema version"));
      }
      if (v > kSchemaVersion) {
        return absl::FailedPreconditionError(absl::StrCat(
            "metadata store ", path.string(), " has schema version ", v,
            ", but this berthd supports schema version ", kSchemaVersion,
            " at most; it was written by a newer berthd (upgrade berthd or restore a backup)"));
      }
      // Migrations from older versions go here once there is more than one version.
    }
    return conn->Exec(path,
                      "CREATE TABLE IF NOT EXISTS kv(bucket TEXT NOT NULL, key BLOB NOT NULL, "
                      "value BLOB NOT NULL, PRIMARY KEY(bucket, key)) WITHOUT ROWID",
                      "cannot create the kv table");
  }();
  if (!schema.ok()) {
    (void)conn->Exec(path, "ROLLBACK", "rollback failed");
    return schema;
  }
  if (absl::Status s = conn->Exec(path, "COMMIT", "cannot commit schema setup"); !s.ok()) {
    if (conn->in_txn()) (void)conn->Exec(path, "ROLLBACK", "rollback failed");
    return s;
  }
  if (absl::Status s = conn->Prepare(path, /*writer=*/true); !s.ok()) return s;

  auto shared = std::make_shared<Shared>();
  shared->path = std::move(path);
  shared->writer = std::move(conn);
  return std::unique_ptr<Store>(new Store(std::move(shared)));
}

absl::StatusOr<std::unique_ptr<Store::Txn>> Store::Begin(bool writable) {
  Shared& sh = *shared_;
  std::unique_ptr<Conn> conn;
  if (writable) {
    std::unique_lock lock(sh.mu);
    if (sh.writer_busy && sh.writer_owner == std::this_thread::get_id()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "metadata store ", sh.path.string(),
          ": this thread already has a write transaction open; a second one would deadlock"));
    }
    sh.writer_free.wait(lock, [&] { return !sh.writer_busy; });
    sh.writer_busy = true;
    sh.writer_owner = std::this_thread::get_id();
    conn = std::move(sh.writer);
  } else {
    std::lock_guard lock(sh.mu);
    if (!sh.idle_readers.empty()) {
      conn = std::move(sh.idle_readers.back());
      sh.idle_readers.pop_back();
    }
  }
  // From here on the Txn owns the writer slot (if writable) and releases it when destroyed.
  auto txn = std::unique_ptr<Txn>(new Txn(shared_, nullptr, writable));
  if (conn == nullptr) {
    absl::StatusOr<std::unique_ptr<Conn>> opened = Conn::OpenReady(sh.path, writable);
    if (!opened.ok()) return opened.status();
    conn = std::move(*opened);
  }
  txn->conn_ = std::move(conn);
  Conn& c = *txn->conn_;
  {
    StmtGuard guard(c.begin);
    const int rc = sqlite3_step(c.begin);
    if (rc != SQLITE_DONE) {
      return SqliteError(sh.path, "cannot begin a transaction", c.db, rc);
    }
  }
  if (!writable) {
    // BEGIN DEFERRED takes no snapshot until the first read; read now so that the txn sees
    // the state as of Begin(), not as of its first Get or Scan.
    StmtGuard guard(c.pin);
    const int rc = sqlite3_step(c.pin);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      return SqliteError(sh.path, "cannot begin a read transaction", c.db, rc);
    }
  }
  return txn;
}

Store::Txn::Txn(std::shared_ptr<Shared> shared, std::unique_ptr<Conn> conn, bool writable)
    : shared_(std::move(shared)), conn_(std::move(conn)), writable_(writable) {}

Store::Txn::~Txn() { Abort(); }

absl::Status Store::Txn::CheckUsable(std::string_view op, bool write) const {
  if (conn_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("metadata store ", shared_->path.string(),
                                                      ": ", Av(op), " on a finished transaction"));
  }
  if (write && !writable_) {
    return absl::FailedPreconditionError(absl::StrCat("metadata store ", shared_->path.string(),
                                                      ": ", Av(op), " in a read-only transaction"));
  }
  if (!conn_->in_txn()) {
    // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, I/O errors);
    // carrying on would run the remaining statements outside any transaction.
    return absl::AbortedError(absl::StrCat("metadata store ", shared_->path.string(), ": ", Av(op),
                                           ": the transaction was rolled back after an error"));
  }
  return absl::OkStatus();
}

absl::Status Store::Txn::Poison(absl::Status status) {
  // A read-only txn has nothing to commit, so refusing its writes need not spoil it.
  if (writable_ && poisoned_.ok()) poisoned_ = status;
  return status;
}

absl::StatusOr<std::optional<std::string>> Store::Txn::Get(std::string_view bucket,
                                                           std::string_view key) {
  if (absl::Status s = CheckUsable("get", false); !s.ok()) return s;
  if (absl::Status s = CheckBucket(shared_->path, bucket); !s.ok()) return s;
  sqlite3_stmt* stmt = conn_->get;
  StmtGuard guard(stmt);
  int rc = BindBucket(stmt, 1, bucket);
  if (rc == SQLITE_OK) rc = BindBytes(stmt, 2, key);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) return std::optional<std::string>(ColumnBytes(stmt, 0));
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  return SqliteError(shared_->path, absl::StrCat("get from bucket ", Av(bucket), " failed"),
                     conn_->db, rc);
}

absl::Status Store::Txn::Put(std::string_view bucket, std::string_view key,
                             std::string_view value) {
  if (absl::Status s = CheckUsable("put", true); !s.ok()) return Poison(s);
  if (absl::Status s = CheckBucket(shared_->path, bucket); !s.ok()) return Poison(s);
  sqlite3_stmt* stmt = conn_->put;
  StmtGuard guard(stmt);
  int rc = BindBucket(stmt, 1, bucket);
  if (rc == SQLITE_OK) rc = BindBytes(stmt, 2, key);
  if (rc == SQLITE_OK) rc = BindBytes(stmt, 3, value);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return absl::OkStatus();
  return Poison(SqliteError(shared_->path, absl::StrCat("put into bucket ", Av(bucket), " failed"),
                            conn_->db, rc));
}

absl::Status Store::Txn::Delete(std::string_view bucket, std::string_view key) {
  if (absl::Status s = CheckUsable("delete", true); !s.ok()) return Poison(s);
  if (absl::Status s = CheckBucket(shared_->path, bucket); !s.ok()) return Poison(s);
  sqlite3_stmt* stmt = conn_->del;
  StmtGuard guard(stmt);
  int rc = BindBucket(stmt, 1, bucket);
  if (rc == SQLITE_OK) rc = BindBytes(stmt, 2, key);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return absl::OkStatus();
  return Poison(SqliteError(
      shared_->path, absl::StrCat("delete from bucket ", Av(bucket), " failed"), conn_->db, rc));
}

absl::Status Store::Txn::Scan(
    std::string_view bucket, std::string_view prefix,
    const std::function<bool(std::string_view key, std::string_view value)>& fn) {
  if (absl::Status s = CheckUsable("scan", false); !s.ok()) return s;
  if (absl::Status s = CheckBucket(shared_->path, bucket); !s.ok()) return s;
  const std::optional<std::string> end = PrefixSuccessor(prefix);
  std::string from(prefix);
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(kScanBatch);
  // Rows are read in batches and the statement is reset before fn runs, so fn may use this
  // txn (even Scan again) and memory stays bounded however many keys match.
  for (;;) {
    rows.clear();
    {
      sqlite3_stmt* stmt = end ? conn_->scan_range : conn_->scan_from;
      StmtGuard guard(stmt);
      int rc = BindBucket(stmt, 1, bucket);
      if (rc == SQLITE_OK) rc = BindBytes(stmt, 2, from);
      if (rc == SQLITE_OK && end) rc = BindBytes(stmt, 3, *end);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(stmt, end ? 4 : 3, kScanBatch);
      if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
          rows.emplace_back(ColumnBytes(stmt, 0), ColumnBytes(stmt, 1));
        }
      }
      if (rc != SQLITE_DONE) {
        return SqliteError(shared_->path, absl::StrCat("scan of bucket ", Av(bucket), " failed"),
                           conn_->db, rc);
      }
    }
    for (const auto& [key, value] : rows) {
      if (!fn(key, value)) return absl::OkStatus();
    }
    if (rows.size() < static_cast<size_t>(kScanBatch)) return absl::OkStatus();
    // The smallest key after the last one seen is that key followed by a NUL byte.
    from = std::move(rows.back().first);
    from.push_back('\0');
    // fn may have ended the txn.
    if (absl::Status s = CheckUsable("scan", false); !s.ok()) return s;
  }
}

absl::Status Store::Txn::Commit() {
  if (conn_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("metadata store ", shared_->path.string(),
                                                      ": commit of a finished transaction"));
  }
  if (!poisoned_.ok()) {
    Finish();
    // poisoned_ already names the file.
    return absl::AbortedError(
        absl::StrCat(poisoned_.message(), "; the transaction was not committed"));
  }
  if (!conn_->in_txn()) {
    Finish();
    return absl::AbortedError(
        absl::StrCat("metadata store ", shared_->path.string(),
                     ": transaction not committed: it was rolled back after an error"));
  }
  absl::Status status;
  {
    StmtGuard guard(conn_->commit);
    const int rc = sqlite3_step(conn_->commit);
    if (rc != SQLITE_DONE) status = SqliteError(shared_->path, "commit failed", conn_->db, rc);
  }
  Finish();
  return status;
}

void Store::Txn::Abort() { Finish(); }

void Store::Txn::Finish() {
  if (finished_) return;
  finished_ = true;
  std::unique_ptr<Conn> conn = std::move(conn_);
  if (conn != nullptr && conn->in_txn()) {
    StmtGuard guard(conn->rollback);
    (void)sqlite3_step(conn->rollback);
  }
  // A connection that could not be brought back out of its transaction is closed (which
  // rolls back); a fresh one is opened when next needed.
  if (conn != nullptr && conn->in_txn()) conn.reset();

  Shared& sh = *shared_;
  std::unique_ptr<Conn> surplus;
  if (writable_) {
    {
      std::lock_guard lock(sh.mu);
      sh.writer = std::move(conn);
      sh.writer_busy = false;
      sh.writer_owner = std::thread::id();
    }
    sh.writer_free.notify_one();
  } else if (conn != nullptr) {
    std::lock_guard lock(sh.mu);
    if (sh.idle_readers.size() < kMaxIdleReaders) {
      sh.idle_readers.push_back(std::move(conn));
    } else {
      surplus = std::move(conn);  // closed outside the lock
    }
  }
}

}  // namespace berth::core
