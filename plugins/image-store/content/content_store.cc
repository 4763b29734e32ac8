// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/content/content_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"

namespace berth::image {
namespace {

namespace fs = std::filesystem;
using core::ErrnoToStatus;

constexpr char kIngest[] = "ingest";
constexpr mode_t kDirMode = 0700;
constexpr mode_t kBlobMode = 0444;

using Fd = sdk::UniqueFd;

std::string Str(const fs::path& p) { return p.string(); }

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Hex length of the encoded part for the algorithms the store holds; 0 for others.
size_t HexLength(std::string_view algorithm) {
  if (algorithm == "sha256") return 64;
  if (algorithm == "sha512") return 128;
  return 0;
}

std::string RandomHex() {
  unsigned char bytes[8];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

absl::Status MakeDir(const fs::path& dir) {
  if (mkdir(dir.c_str(), kDirMode) == 0) return absl::OkStatus();
  if (errno != EEXIST) return ErrnoToStatus(errno, absl::StrCat("content store: mkdir ", Str(dir)));
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("content store: stat ", Str(dir)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("content store: ", Str(dir), " exists but is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const fs::path& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("content store: open ", Str(dir)));
  if (fsync(fd.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("content store: fsync ", Str(dir)));
  }
  return absl::OkStatus();
}

// Splits a digest the caller has validated.
std::pair<std::string, std::string> SplitDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  return {std::string(digest.substr(0, colon)), std::string(digest.substr(colon + 1))};
}

}  // namespace

absl::Status ValidateBlobDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed digest \"", std::string(digest), "\": expected <algorithm>:<hex>"));
  }
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view encoded = digest.substr(colon + 1);
  size_t want = HexLength(algorithm);
  if (want == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported digest algorithm \"", std::string(algorithm), "\" in \"",
                     std::string(digest), "\" (supported: sha256, sha512)"));
  }
  if (encoded.size() != want || !IsLowerHex(encoded)) {
    return absl::InvalidArgumentError(absl::StrCat("malformed digest \"", std::string(digest),
                                                   "\": ", std::string(algorithm), " needs ", want,
                                                   " lowercase hex digits"));
  }
  return absl::OkStatus();
}

// ---- Digester ------------------------------------------------------------------------------

absl::StatusOr<Digester> Digester::Create(std::string_view algorithm) {
  const EVP_MD* md = nullptr;
  if (algorithm == "sha256") {
    md = EVP_sha256();
  } else if (algorithm == "sha512") {
    md = EVP_sha512();
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported digest algorithm \"",
                                                   std::string(algorithm),
                                                   "\" (supported: sha256, sha512)"));
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return absl::ResourceExhaustedError("EVP_MD_CTX_new failed");
  if (EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return absl::InternalError(
        absl::StrCat("EVP_DigestInit_ex(", std::string(algorithm), ") failed"));
  }
  return Digester(std::string(algorithm), ctx);
}

Digester::Digester(Digester&& o) noexcept
    : algorithm_(std::move(o.algorithm_)), ctx_(std::exchange(o.ctx_, nullptr)) {}

Digester& Digester::operator=(Digester&& o) noexcept {
  if (this != &o) {
    if (ctx_ != nullptr) EVP_MD_CTX_free(ctx_);
    algorithm_ = std::move(o.algorithm_);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

Digester::~Digester() {
  if (ctx_ != nullptr) EVP_MD_CTX_free(ctx_);
}

void Digester::Update(std::string_view data) {
  if (ctx_ != nullptr && !data.empty()) EVP_DigestUpdate(ctx_, data.data(), data.size());
}

std::string Digester::Finish() {
  if (ctx_ == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  EVP_MD_CTX_free(ctx_);
  ctx_ = nullptr;
  static const char kHex[] = "0123456789abcdef";
  std::string out = algorithm_ + ":";
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

std::string Sha256Digest(std::string_view data) {
  absl::StatusOr<Digester> d = Digester::Create("sha256");
  if (!d.ok()) return "";
  d->Update(data);
  return d->Finish();
}

// ---- BlobWriter ----------------------------------------------------------------------------

BlobWriter::BlobWriter(std::string digest, int64_t expected_size, fs::path temp,
                       fs::path final_path, int fd, Digester hasher)
    : digest_(std::move(digest)),
      expected_size_(expected_size),
      temp_(std::move(temp)),
      final_(std::move(final_path)),
      fd_(fd),
      hasher_(std::move(hasher)) {}

BlobWriter::~BlobWriter() { Discard(); }

void BlobWriter::Discard() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (!done_) {
    unlink(temp_.c_str());
    done_ = true;
  }
}

absl::Status BlobWriter::Fail(absl::Status status) {
  Discard();
  failed_ = status;
  return status;
}

absl::Status BlobWriter::Write(std::string_view chunk) {
  if (!failed_.ok()) return failed_;
  if (done_) {
    return absl::FailedPreconditionError(absl::StrCat("blob ", digest_, ": write after commit"));
  }
  if (expected_size_ >= 0 && written_ + static_cast<int64_t>(chunk.size()) > expected_size_) {
    return Fail(absl::DataLossError(absl::StrCat(
        "blob ", digest_, " is larger than its descriptor says (", expected_size_,
        " bytes); refusing the extra data (wrong descriptor or a misbehaving registry)")));
  }
  hasher_.Update(chunk);
  const char* p = chunk.data();
  size_t left = chunk.size();
  while (left > 0) {
    ssize_t n = write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return Fail(ErrnoToStatus(
          err, absl::StrCat("content store: writing blob ", digest_, " to ", Str(temp_))));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  written_ += static_cast<int64_t>(chunk.size());
  return absl::OkStatus();
}

absl::Status BlobWriter::Commit() {
  if (!failed_.ok()) return failed_;
  if (done_) {
    return absl::FailedPreconditionError(absl::StrCat("blob ", digest_, ": already committed"));
  }
  if (expected_size_ >= 0 && written_ != expected_size_) {
    return Fail(absl::DataLossError(absl::StrCat("blob ", digest_, ": received ", written_,
                                                 " bytes but its descriptor says ", expected_size_,
                                                 " (truncated transfer?)")));
  }
  std::string actual = hasher_.Finish();
  if (actual != digest_) {
    return Fail(absl::DataLossError(absl::StrCat("blob ", digest_, ": content has digest ", actual,
                                                 " (expected ", digest_, ", got ", actual,
                                                 "); discarded")));
  }
  if (fchmod(fd_, kBlobMode) != 0 || fsync(fd_) != 0) {
    int err = errno;
    return Fail(ErrnoToStatus(
        err, absl::StrCat("content store: flushing blob ", digest_, " to ", Str(temp_))));
  }
  if (close(std::exchange(fd_, -1)) != 0) {
    int err = errno;
    return Fail(ErrnoToStatus(
        err, absl::StrCat("content store: closing blob ", digest_, " at ", Str(temp_))));
  }
  // RENAME_NOREPLACE: a blob is never replaced once visible; the second writer of a digest
  // finds it present and just drops its own copy (the content is the same by definition).
  if (renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST) {
      Discard();
      return absl::OkStatus();
    }
    if (err != EINVAL && err != ENOSYS) {
      return Fail(ErrnoToStatus(
          err, absl::StrCat("content store: rename ", Str(temp_), " to ", Str(final_))));
    }
    // A filesystem without RENAME_NOREPLACE: plain rename is still atomic, and replacing a
    // blob with identical verified bytes is harmless.
    if (rename(temp_.c_str(), final_.c_str()) != 0) {
      err = errno;
      return Fail(ErrnoToStatus(
          err, absl::StrCat("content store: rename ", Str(temp_), " to ", Str(final_))));
    }
  }
  done_ = true;
  return FsyncDir(final_.parent_path());
}

// ---- ContentStore --------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ContentStore>> ContentStore::Open(const fs::path& root) {
  if (root.empty()) return absl::InvalidArgumentError("content store: empty root directory");
  std::error_code ec;
  fs::create_directories(root.parent_path(), ec);  // the parent belongs to the caller
  RETURN_IF_ERROR(MakeDir(root));
  RETURN_IF_ERROR(MakeDir(root / "blobs"));
  RETURN_IF_ERROR(MakeDir(root / "blobs" / "sha256"));
  RETURN_IF_ERROR(MakeDir(root / "blobs" / "sha512"));
  fs::path ingest = root / kIngest;
  RETURN_IF_ERROR(MakeDir(ingest));
  // Leftovers of writers that a crash interrupted: never committed, so never valid.
  DIR* d = opendir(ingest.c_str());
  if (d == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("content store: open ", Str(ingest)));
  }
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno == EISDIR) {
      fs::remove_all(ingest / e->d_name, ec);
    }
  }
  closedir(d);
  return std::unique_ptr<ContentStore>(new ContentStore(root));
}

fs::path ContentStore::BlobPath(std::string_view digest) const {
  if (!ValidateBlobDigest(digest).ok()) return fs::path();
  auto [alg, hex] = SplitDigest(digest);
  return root_ / "blobs" / alg / hex;
}

bool ContentStore::Has(std::string_view digest) const {
  fs::path p = BlobPath(digest);
  if (p.empty()) return false;
  struct stat st;
  return lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<int64_t> ContentStore::Size(std::string_view digest) const {
  RETURN_IF_ERROR(ValidateBlobDigest(digest));
  fs::path p = BlobPath(digest);
  struct stat st;
  if (lstat(p.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", std::string(digest), " not found"));
    }
    return ErrnoToStatus(errno, absl::StrCat("content store: stat ", Str(p)));
  }
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<std::unique_ptr<BlobWriter>> ContentStore::Writer(std::string_view digest,
                                                                 int64_t expected_size) {
  RETURN_IF_ERROR(ValidateBlobDigest(digest));
  auto [alg, hex] = SplitDigest(digest);
  ASSIGN_OR_RETURN(Digester hasher, Digester::Create(alg));
  for (int attempt = 0; attempt < 16; ++attempt) {
    fs::path temp = root_ / kIngest / absl::StrCat(alg, "-", hex, ".", RandomHex());
    int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      return ErrnoToStatus(errno, absl::StrCat("content store: create ", Str(temp)));
    }
    return std::unique_ptr<BlobWriter>(new BlobWriter(std::string(digest), expected_size,
                                                      std::move(temp), BlobPath(digest), fd,
                                                      std::move(hasher)));
  }
  return absl::InternalError("content store: cannot pick a unique temporary file name");
}

absl::StatusOr<std::string> ContentStore::ReadAll(std::string_view digest, size_t max_bytes) const {
  RETURN_IF_ERROR(ValidateBlobDigest(digest));
  fs::path p = BlobPath(digest);
  Fd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", std::string(digest), " not found"));
    }
    return ErrnoToStatus(errno, absl::StrCat("content store: open ", Str(p)));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("content store: stat ", Str(p)));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::OutOfRangeError(absl::StrCat("blob ", std::string(digest), " is ", st.st_size,
                                              " bytes, more than the ", max_bytes,
                                              " allowed for it"));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("content store: read ", Str(p)));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  auto [alg, hex] = SplitDigest(digest);
  ASSIGN_OR_RETURN(Digester hasher, Digester::Create(alg));
  hasher.Update(out);
  std::string actual = hasher.Finish();
  if (actual != digest) {
    return absl::DataLossError(absl::StrCat("blob ", std::string(digest), " at ", Str(p),
                                            " is corrupt: its content has digest ", actual,
                                            "; delete it so that it is fetched again"));
  }
  return out;
}

absl::Status ContentStore::Delete(std::string_view digest) {
  RETURN_IF_ERROR(ValidateBlobDigest(digest));
  fs::path p = BlobPath(digest);
  if (unlink(p.c_str()) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", std::string(digest), " not found"));
    }
    return ErrnoToStatus(errno, absl::StrCat("content store: delete ", Str(p)));
  }
  return absl::OkStatus();
}

absl::Status ContentStore::Walk(
    const std::function<void(const std::string& digest, int64_t size)>& fn) const {
  for (const char* alg : {"sha256", "sha512"}) {
    fs::path dir = root_ / "blobs" / alg;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) continue;
      return ErrnoToStatus(errno, absl::StrCat("content store: open ", Str(dir)));
    }
    std::vector<std::pair<std::string, int64_t>> found;
    while (dirent* e = readdir(d)) {
      std::string digest = absl::StrCat(alg, ":", e->d_name);
      if (!ValidateBlobDigest(digest).ok()) continue;
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // deleted
      if (!S_ISREG(st.st_mode)) continue;
      found.emplace_back(std::move(digest), static_cast<int64_t>(st.st_size));
    }
    closedir(d);
    // The callback runs with the directory closed: it may delete what it is given.
    for (const auto& [digest, size] : found) fn(digest, size);
  }
  return absl::OkStatus();
}

}  // namespace berth::image
