// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/content/content_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace berth::image {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Digests computed with OpenSSL directly, independently of the code under test.
std::string Digest(std::string_view data, const EVP_MD* md = EVP_sha256()) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    snprintf(buf, sizeof(buf), "%02x", out[i]);
    hex += buf;
  }
  return std::string(md == EVP_sha256() ? "sha256:" : "sha512:") + hex;
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 16);
  }
  return s;
}

std::vector<std::string> Listing(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  return out;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/berth-content-XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

class ContentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty()) << "mkdtemp failed";
    auto s = ContentStore::Open(tmp_.path() / "content");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  absl::Status Put(std::string_view data, size_t chunk = 4096) {
    auto w = store_->Writer(Digest(data), static_cast<int64_t>(data.size()));
    if (!w.ok()) return w.status();
    for (size_t i = 0; i < data.size(); i += chunk) {
      absl::Status s = (*w)->Write(data.substr(i, chunk));
      if (!s.ok()) return s;
    }
    return (*w)->Commit();
  }

  fs::path Ingest() const { return tmp_.path() / "content" / "ingest"; }

  TempDir tmp_;
  std::unique_ptr<ContentStore> store_;
};

TEST_F(ContentStoreTest, OpenCreatesPrivateLayout) {
  for (const char* d : {"", "blobs", "blobs/sha256", "blobs/sha512", "ingest"}) {
    struct stat st;
    fs::path p = tmp_.path() / "content" / d;
    ASSERT_EQ(stat(p.c_str(), &st), 0) << p;
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u) << p;
  }
}

TEST_F(ContentStoreTest, RoundTrip) {
  std::string data = Pattern(100000, 1);
  std::string digest = Digest(data);
  EXPECT_FALSE(store_->Has(digest));
  ASSERT_TRUE(Put(data, 777).ok());
  EXPECT_TRUE(store_->Has(digest));
  auto size = store_->Size(digest);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 100000);
  auto back = store_->ReadAll(digest, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, data);
  fs::path p = store_->BlobPath(digest);
  EXPECT_EQ(p, tmp_.path() / "content" / "blobs" / "sha256" / digest.substr(7));
  struct stat st;
  ASSERT_EQ(stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_TRUE(Listing(Ingest()).empty());

  std::map<std::string, int64_t> seen;
  ASSERT_TRUE(store_->Walk([&](const std::string& d, int64_t s) { seen[d] = s; }).ok());
  EXPECT_EQ(seen, (std::map<std::string, int64_t>{{digest, 100000}}));

  ASSERT_TRUE(store_->Delete(digest).ok());
  EXPECT_FALSE(store_->Has(digest));
  EXPECT_EQ(store_->Delete(digest).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Size(digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadAll(digest, 10).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContentStoreTest, Sha512AndUnknownSize) {
  std::string data = "sha512 content";
  std::string digest = Digest(data, EVP_sha512());
  auto w = store_->Writer(digest, -1);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Write("sha512 ").ok());
  ASSERT_TRUE((*w)->Write("content").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_TRUE(store_->Has(digest));
  EXPECT_TRUE(fs::exists(tmp_.path() / "content" / "blobs" / "sha512" / digest.substr(7)));
  auto back = store_->ReadAll(digest, 100);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, data);
}

TEST_F(ContentStoreTest, EmptyBlob) {
  ASSERT_TRUE(Put("").ok());
  EXPECT_TRUE(store_->Has(Digest("")));
  EXPECT_EQ(*store_->Size(Digest("")), 0);
}

TEST_F(ContentStoreTest, DigestMismatchLeavesNothing) {
  std::string claimed = Digest("what the manifest said");
  auto w = store_->Writer(claimed, 8);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("tampered").ok());
  absl::Status s = (*w)->Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(claimed));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Digest("tampered")));
  EXPECT_FALSE(store_->Has(claimed));
  EXPECT_FALSE(store_->Has(Digest("tampered")));
  EXPECT_TRUE(Listing(Ingest()).empty());
  EXPECT_TRUE(Listing(tmp_.path() / "content" / "blobs" / "sha256").empty());
  // The writer stays failed.
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*w)->Write("x").code(), absl::StatusCode::kDataLoss);
}

TEST_F(ContentStoreTest, ShortBlobIsRefused) {
  std::string data = "0123456789";
  auto w = store_->Writer(Digest(data), 10);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("01234").ok());
  absl::Status s = (*w)->Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("received 5 bytes"));
  EXPECT_FALSE(store_->Has(Digest(data)));
  EXPECT_TRUE(Listing(Ingest()).empty());
}

TEST_F(ContentStoreTest, MoreBytesThanExpectedAreRefused) {
  std::string data = "0123456789";
  auto w = store_->Writer(Digest(data), 10);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("0123456").ok());
  absl::Status s = (*w)->Write("789x");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(Listing(Ingest()).empty());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store_->Has(Digest(data)));
}

TEST_F(ContentStoreTest, DestroyedWriterDiscards) {
  std::string data = "abandoned";
  {
    auto w = store_->Writer(Digest(data), 9);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(data).ok());
    EXPECT_EQ(Listing(Ingest()).size(), 1u);
  }
  EXPECT_TRUE(Listing(Ingest()).empty());
  EXPECT_FALSE(store_->Has(Digest(data)));
}

TEST_F(ContentStoreTest, MalformedDigestsNeverBecomePaths) {
  const std::string good = Digest("x");
  for (const std::string& bad :
       {std::string(""), std::string("sha256"), std::string("sha256:"), std::string("sha256:abc"),
        "md5:" + good.substr(7, 32), "SHA256:" + good.substr(7), "sha256:" + std::string(64, 'A'),
        "sha256:../../../../etc/passwd" + std::string(35, 'a'), "sha256:" + good.substr(7) + "/x",
        "sha512:" + good.substr(7), ":" + good.substr(7)}) {
    EXPECT_EQ(ValidateBlobDigest(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(store_->Has(bad)) << bad;
    EXPECT_TRUE(store_->BlobPath(bad).empty()) << bad;
    EXPECT_EQ(store_->Writer(bad, 1).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->Delete(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->ReadAll(bad, 1).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(ValidateBlobDigest(good).ok());
  EXPECT_TRUE(ValidateBlobDigest(Digest("x", EVP_sha512())).ok());
}

TEST_F(ContentStoreTest, ConcurrentWritersOfTheSameDigest) {
  std::string data = Pattern(1 << 20, 7);
  std::string digest = Digest(data);
  std::string wrong = Pattern(1 << 20, 8);
  constexpr int kThreads = 8;
  std::atomic<int> ok{0}, data_loss{0}, other{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every third writer receives corrupt bytes (a bad mirror): it must fail alone.
      const std::string& bytes = t % 3 == 2 ? wrong : data;
      auto w = store_->Writer(digest, static_cast<int64_t>(bytes.size()));
      if (!w.ok()) {
        ++other;
        return;
      }
      for (size_t i = 0; i < bytes.size(); i += 10000) {
        if (!(*w)->Write(std::string_view(bytes).substr(i, 10000)).ok()) {
          ++other;
          return;
        }
      }
      absl::Status s = (*w)->Commit();
      if (s.ok()) {
        ++ok;
      } else if (s.code() == absl::StatusCode::kDataLoss) {
        ++data_loss;
      } else {
        ++other;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(data_loss.load(), 2);
  EXPECT_EQ(other.load(), 0);
  auto back = store_->ReadAll(digest, 2 << 20);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);
  EXPECT_TRUE(Listing(Ingest()).empty());
  EXPECT_EQ(Listing(tmp_.path() / "content" / "blobs" / "sha256").size(), 1u);
}

TEST_F(ContentStoreTest, CrashLeftoversRemovedAtOpen) {
  ASSERT_TRUE(Put("kept").ok());
  // What a crash mid-download leaves: a temp file (and, from an older layout, a directory).
  {
    std::ofstream(Ingest() / ("sha256-" + Digest("partial").substr(7) + ".0123456789abcdef"))
        << "part";
    fs::create_directories(Ingest() / "stray-dir" / "sub");
    std::ofstream(Ingest() / "stray-dir" / "sub" / "f") << "x";
  }
  ASSERT_EQ(Listing(Ingest()).size(), 2u);
  store_.reset();
  auto reopened = ContentStore::Open(tmp_.path() / "content");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(Listing(Ingest()).empty());
  EXPECT_TRUE((*reopened)->Has(Digest("kept")));
  EXPECT_FALSE((*reopened)->Has(Digest("partial")));
}

TEST_F(ContentStoreTest, ReadAllVerifiesAndBounds) {
  std::string data = "{\"schemaVersion\":2}";
  ASSERT_TRUE(Put(data).ok());
  std::string digest = Digest(data);
  EXPECT_EQ(store_->ReadAll(digest, 5).status().code(), absl::StatusCode::kOutOfRange);
  // Bit rot on disk.
  fs::path p = store_->BlobPath(digest);
  chmod(p.c_str(), 0644);
  std::ofstream(p, std::ios::binary | std::ios::trunc) << "{\"schemaVersion\":3}";
  auto back = store_->ReadAll(digest, 100);
  EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss) << back.status();
  EXPECT_THAT(std::string(back.status().message()), HasSubstr(digest));
}

TEST_F(ContentStoreTest, WalkSkipsForeignFiles) {
  ASSERT_TRUE(Put("a").ok());
  ASSERT_TRUE(Put("b").ok());
  fs::path dir = tmp_.path() / "content" / "blobs" / "sha256";
  std::ofstream(dir / "not-a-digest") << "junk";
  fs::create_directory(dir / std::string(64, 'a'));  // a directory with a digest name
  std::map<std::string, int64_t> seen;
  ASSERT_TRUE(store_->Walk([&](const std::string& d, int64_t s) { seen[d] = s; }).ok());
  EXPECT_EQ(seen, (std::map<std::string, int64_t>{{Digest("a"), 1}, {Digest("b"), 1}}));
  // The callback may delete what it is given.
  ASSERT_TRUE(
      store_->Walk([&](const std::string& d, int64_t) { EXPECT_TRUE(store_->Delete(d).ok()); })
          .ok());
  EXPECT_FALSE(store_->Has(Digest("a")));
}

// A 1 MiB tmpfs mounted for the test: writing a 2 MiB blob runs out of space.
class ContentStoreDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
    char tmpl[] = "/tmp/berth-enospc-XXXXXX";
    const char* p = mkdtemp(tmpl);
    ASSERT_NE(p, nullptr);
    dir_ = p;
    if (mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") != 0) {
      int err = errno;
      GTEST_SKIP() << "cannot mount tmpfs: " << strerror(err);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_ && umount2(dir_.c_str(), 0) != 0) umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  fs::path dir_;
  bool mounted_ = false;
};

TEST_F(ContentStoreDiskFullTest, EnospcIsResourceExhaustedAndLeavesNothing) {
  auto store = ContentStore::Open(dir_ / "content");
  ASSERT_TRUE(store.ok()) << store.status();
  std::string data = Pattern(2 << 20, 3);
  std::string digest = Digest(data);
  auto w = (*store)->Writer(digest, static_cast<int64_t>(data.size()));
  ASSERT_TRUE(w.ok()) << w.status();
  absl::Status s;
  for (size_t i = 0; i < data.size() && s.ok(); i += 65536) {
    s = (*w)->Write(std::string_view(data).substr(i, 65536));
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(digest));
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE((*store)->Has(digest));
  EXPECT_TRUE(Listing(dir_ / "content" / "ingest").empty());
  // The space came back: a small blob fits again.
  std::string small = Pattern(100000, 4);
  auto w2 = (*store)->Writer(Digest(small), static_cast<int64_t>(small.size()));
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE((*w2)->Write(small).ok());
  EXPECT_TRUE((*w2)->Commit().ok());
  w->reset();
  w2->reset();
  store->reset();
}

}  // namespace
}  // namespace berth::image
