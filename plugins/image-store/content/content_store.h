// SPDX-License-Identifier: Apache-2.0
// The content store: immutable blobs (layers, manifests, configs) addressed by digest.
//
// Layout under the root directory (all directories 0700):
//   blobs/sha256/<64 hex>    committed blobs, mode 0444, never modified in place
//   blobs/sha512/<128 hex>
//   ingest/<alg>-<hex>.<rnd> one temporary file per writer; a crash leaves them behind and
//                            Open() removes them (one ContentStore per root: berthd's
//                            instance lock guarantees it).
// A blob becomes visible only by an atomic rename after its size and digest were verified
// and its data fsynced, so a reader never sees a partial or unverified blob.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;  // <openssl/evp.h>, kept out of this header

namespace berth::image {

// Checks "<algorithm>:<encoded>" for the algorithms the store holds: sha256 (64 lowercase
// hex digits) and sha512 (128). INVALID_ARGUMENT naming the digest otherwise. Every
// ContentStore entry point validates its digest, so a digest never becomes a path outside
// the store.
[[nodiscard]] absl::Status ValidateBlobDigest(std::string_view digest);

// Streaming hash producing an OCI digest string ("sha256:<hex>").
class Digester {
 public:
  // algorithm: "sha256" or "sha512".
  [[nodiscard]] static absl::StatusOr<Digester> Create(std::string_view algorithm);
  Digester(Digester&&) noexcept;
  Digester& operator=(Digester&&) noexcept;
  ~Digester();

  void Update(std::string_view data);
  // "<algorithm>:<hex>"; the digester cannot be used afterwards.
  std::string Finish();

 private:
  Digester(std::string algorithm, EVP_MD_CTX* ctx) : algorithm_(std::move(algorithm)), ctx_(ctx) {}
  std::string algorithm_;
  EVP_MD_CTX* ctx_ = nullptr;
};

// "sha256:<hex>" of `data`.
std::string Sha256Digest(std::string_view data);

// Writes one blob. Not thread-safe; use one writer per thread. Destroying a writer that was
// not committed discards its temporary file.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends and hashes `chunk`. More bytes than the expected size: DATA_LOSS, and the writer
  // is dead (temporary file removed; every later call fails). Disk full: RESOURCE_EXHAUSTED,
  // same clean-up.
  [[nodiscard]] absl::Status Write(std::string_view chunk);
  // Verifies size and digest (DATA_LOSS naming both digests on mismatch; nothing becomes
  // visible), fsyncs the data, renames it into place and fsyncs the directory. When another
  // writer committed the same digest first, this one's copy is discarded and OK returned.
  [[nodiscard]] absl::Status Commit();

  int64_t written() const { return written_; }
  const std::string& digest() const { return digest_; }

 private:
  friend class ContentStore;
  BlobWriter(std::string digest, int64_t expected_size, std::filesystem::path temp,
             std::filesystem::path final_path, int fd, Digester hasher);
  absl::Status Fail(absl::Status status);  // discards the temp file, remembers the error
  void Discard();

  std::string digest_;
  int64_t expected_size_;
  std::filesystem::path temp_;
  std::filesystem::path final_;
  int fd_;
  Digester hasher_;
  int64_t written_ = 0;
  absl::Status failed_;  // first error; later calls return it
  bool done_ = false;    // committed or discarded
};

// Thread-safe: every method may be called from any thread at any time.
class ContentStore {
 public:
  // Creates root, blobs/{sha256,sha512} and ingest (0700) as needed and removes temporary
  // files a crash left in ingest/.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ContentStore>> Open(
      const std::filesystem::path& root);

  // True when a committed blob exists (false for invalid digests).
  bool Has(std::string_view digest) const;
  // NOT_FOUND when absent; INVALID_ARGUMENT for a malformed digest.
  [[nodiscard]] absl::StatusOr<int64_t> Size(std::string_view digest) const;
  // Where a committed blob lives (whether or not it exists yet); an empty path for a
  // malformed digest, so it can never name a file outside the store.
  std::filesystem::path BlobPath(std::string_view digest) const;
  // A writer for `digest`; expected_size -1 when unknown. Several writers of the same digest
  // may run at once (each has its own temporary file).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<BlobWriter>> Writer(std::string_view digest,
                                                                   int64_t expected_size);
  // Reads a small blob (manifest, config) and verifies its digest: NOT_FOUND, OUT_OF_RANGE
  // when larger than max_bytes, DATA_LOSS when the bytes on disk do not match.
  [[nodiscard]] absl::StatusOr<std::string> ReadAll(std::string_view digest,
                                                    size_t max_bytes) const;
  // NOT_FOUND when absent.
  [[nodiscard]] absl::Status Delete(std::string_view digest);
  // Calls fn(digest, size) for every committed blob. Blobs deleted during the walk may or
  // may not be reported.
  [[nodiscard]] absl::Status Walk(
      const std::function<void(const std::string& digest, int64_t size)>& fn) const;

  const std::filesystem::path& root() const { return root_; }

 private:
  explicit ContentStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

}  // namespace berth::image
