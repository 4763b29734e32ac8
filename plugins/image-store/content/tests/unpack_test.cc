// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/content/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace berth::image {

// For gtest's names of parameterized cases and failure messages.
void PrintTo(Compression c, std::ostream* os) { *os << CompressionName(c); }

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr time_t kMtime = 1600000000;
constexpr char kLayer[] = "sha256:testlayer";

std::string Sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  std::string hex = "sha256:";
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    snprintf(buf, sizeof(buf), "%02x", out[i]);
    hex += buf;
  }
  return hex;
}

// ---- Crafting layers with libarchive's writer ----------------------------------------------

struct Spec {
  std::string path{};
  mode_t type = AE_IFREG;
  mode_t mode = 0644;
  std::string data{};
  std::string symlink{};
  std::string hardlink{};
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = kMtime;
  long mtime_nsec = 0;
  unsigned major = 0;
  unsigned minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs{};
};

la_ssize_t AppendToString(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

class Layer {
 public:
  Layer& Add(Spec s) {
    specs_.push_back(std::move(s));
    return *this;
  }
  Layer& File(std::string path, std::string data, mode_t mode = 0644) {
    return Add({.path = std::move(path), .mode = mode, .data = std::move(data)});
  }
  Layer& Dir(std::string path, mode_t mode = 0755) {
    return Add({.path = std::move(path), .type = AE_IFDIR, .mode = mode});
  }
  Layer& Symlink(std::string path, std::string target) {
    return Add(
        {.path = std::move(path), .type = AE_IFLNK, .mode = 0777, .symlink = std::move(target)});
  }
  Layer& Hardlink(std::string path, std::string target) {
    return Add({.path = std::move(path), .hardlink = std::move(target)});
  }

  // The uncompressed pax tar (libarchive's default 10 KiB blocking, so it ends in padding
  // after the end-of-archive marker: diff_id must cover that too).
  std::string Tar() const {
    std::string out;
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_none(a);
    archive_write_open2(a, &out, nullptr, &AppendToString, nullptr, nullptr);
    for (const Spec& s : specs_) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, s.path.c_str());
      archive_entry_set_filetype(e, s.type);
      archive_entry_set_perm(e, s.mode);
      archive_entry_set_uid(e, s.uid);
      archive_entry_set_gid(e, s.gid);
      archive_entry_set_mtime(e, s.mtime, s.mtime_nsec);
      if (!s.symlink.empty()) archive_entry_set_symlink(e, s.symlink.c_str());
      if (!s.hardlink.empty()) archive_entry_set_hardlink(e, s.hardlink.c_str());
      if (s.type == AE_IFCHR || s.type == AE_IFBLK) {
        archive_entry_set_rdevmajor(e, s.major);
        archive_entry_set_rdevminor(e, s.minor);
      }
      for (const auto& [k, v] : s.xattrs) {
        archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
      }
      archive_entry_set_size(
          e, s.type == AE_IFREG && s.hardlink.empty() ? static_cast<la_int64_t>(s.data.size()) : 0);
      // ARCHIVE_WARN: a non-ASCII name in the C locale, written as raw bytes.
      EXPECT_GE(archive_write_header(a, e), ARCHIVE_WARN) << archive_error_string(a);
      if (!s.data.empty()) archive_write_data(a, s.data.data(), s.data.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return out;
  }

 private:
  std::vector<Spec> specs_;
};

// Compresses with libarchive's writer ("raw" format: just the filter).
std::string Compress(const std::string& data, Compression c) {
  if (c == Compression::kNone) return data;
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  if (c == Compression::kGzip) {
    archive_write_add_filter_gzip(a);
  } else {
    archive_write_add_filter_zstd(a);
  }
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open2(a, &out, nullptr, &AppendToString, nullptr, nullptr);
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

void WriteFile(const fs::path& p, std::string_view data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << data;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string GetXattr(const fs::path& p, const char* name) {
  char buf[256];
  ssize_t n = lgetxattr(p.c_str(), name, buf, sizeof(buf));
  return n < 0 ? "<none>" : std::string(buf, static_cast<size_t>(n));
}

struct stat Lstat(const fs::path& p) {
  struct stat st;
  memset(&st, 0, sizeof(st));
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st;
}

// A hand-made ustar header, for archives libarchive's writer would not produce.
std::string UstarHeader(const std::string& name, char type, size_t size,
                        const std::string& link = "") {
  std::string h(512, '\0');
  auto put = [&](size_t off, size_t len, const std::string& v) {
    memcpy(&h[off], v.data(), std::min(len, v.size()));
  };
  auto octal = [&](size_t off, size_t len, unsigned long long v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%0*llo", static_cast<int>(len - 1), v);
    put(off, len - 1, buf);
  };
  put(0, 100, name);
  octal(100, 8, 0644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, kMtime);
  memset(&h[148], ' ', 8);
  h[156] = type;
  put(157, 100, link);
  put(257, 6, std::string("ustar\0", 6));
  put(263, 2, "00");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char buf[8];
  snprintf(buf, sizeof(buf), "%06o", sum);
  memcpy(&h[148], buf, 7);
  return h;
}

std::string Padded(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

// A pax extended header ('x') holding one "key=value" record.
std::string PaxHeader(const std::string& kv) {
  size_t n = kv.size() + 2;  // the space and the newline
  size_t len = n + std::to_string(n).size();
  if (std::to_string(len).size() != std::to_string(n).size()) ++len;
  std::string record = std::to_string(len) + " " + kv + "\n";
  return UstarHeader("PaxHeader", 'x', record.size()) + Padded(record);
}

// ---- Fixture -------------------------------------------------------------------------------

// Layout: <base>/l1/l2/target is the target; <base>/outside holds a victim file; a layer
// must never change anything but the target.
class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "unpacking needs root (chown, mknod, trusted.* xattrs)";
    char tmpl[] = "/tmp/berth-unpack-XXXXXX";
    const char* p = mkdtemp(tmpl);
    ASSERT_NE(p, nullptr);
    base_ = p;
    target_ = base_ / "l1" / "l2" / "target";
    outside_ = base_ / "outside";
    fs::create_directories(target_);
    fs::create_directories(outside_);
    WriteFile(outside_ / "victim", "original");
    WriteFile(base_ / "l1" / "l2" / "sibling", "sibling");
  }
  void TearDown() override {
    std::error_code ec;
    if (!base_.empty()) fs::remove_all(base_, ec);
  }

  absl::StatusOr<UnpackResult> Unpack(const std::string& blob, UnpackOptions opts = {}) {
    fs::path file = base_ / "blob";
    WriteFile(file, blob);
    if (opts.layer_name.empty()) opts.layer_name = kLayer;
    if (!opts.warn) opts.warn = [this](std::string_view w) { warnings_.emplace_back(w); };
    return UnpackLayer(file, target_, opts);
  }

  // Everything under base_ except the target and the blob: path → type and content.
  std::map<std::string, std::string> Outside() const {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(base_);
         it != fs::recursive_directory_iterator(); ++it) {
      if (it->path() == target_) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->path() == base_ / "blob") continue;
      struct stat st = Lstat(it->path());
      std::string desc = std::to_string(st.st_mode) + ":" + std::to_string(st.st_nlink);
      if (S_ISREG(st.st_mode)) desc += ":" + ReadFile(it->path());
      out[it->path().string()] = desc;
    }
    return out;
  }

  // The layer must be refused with INVALID_ARGUMENT naming the layer and `entry`, and
  // nothing outside the target may change.
  void ExpectRefused(const Layer& layer, const std::string& entry,
                     Compression c = Compression::kNone) {
    auto before = Outside();
    struct stat passwd_before = Lstat("/etc/passwd");
    auto r = Unpack(Compress(layer.Tar(), c));
    ASSERT_FALSE(r.ok()) << "unpacked although it should have been refused";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(kLayer));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"" + entry + "\""));
    EXPECT_EQ(Outside(), before);
    struct stat passwd_after = Lstat("/etc/passwd");
    EXPECT_EQ(passwd_before.st_nlink, passwd_after.st_nlink);
    EXPECT_EQ(passwd_before.st_mtime, passwd_after.st_mtime);
    EXPECT_FALSE(fs::exists(fs::symlink_status("/etc/berth-escape-test")));
  }

  fs::path base_, target_, outside_;
  std::vector<std::string> warnings_;
};

// ---- All entry types, for each compression -------------------------------------------------

class UnpackFormatTest : public UnpackTest, public ::testing::WithParamInterface<Compression> {};

// struct vfs_cap_data, revision 2, effective, CAP_NET_RAW (13) permitted.
std::string NetRawCapability() {
  uint32_t v[5] = {0x02000001u, 1u << 13, 0, 0, 0};
  return std::string(reinterpret_cast<const char*>(v), sizeof(v));
}

Layer FullLayer() {
  Layer l;
  l.Add({.path = "./", .type = AE_IFDIR, .mode = 0751});
  l.Dir("bin");
  l.Add({.path = "bin/su", .mode = 04755, .data = "#!/bin/true\n", .uid = 0, .gid = 0});
  l.Add({.path = "bin/wall", .mode = 02755, .data = "wall", .gid = 5});
  l.Add({.path = "bin/ping",
         .mode = 0755,
         .data = "ping",
         .xattrs = {{"security.capability", NetRawCapability()}}});
  l.Hardlink("bin/su-again", "bin/su");
  l.Add({.path = "tmp/", .type = AE_IFDIR, .mode = 01777});
  l.Add({.path = "home/user", .type = AE_IFDIR, .mode = 0700, .uid = 1000, .gid = 1000});
  l.Add({.path = "home/user/notes",
         .mode = 0640,
         .data = "hello",
         .uid = 1000,
         .gid = 2000,
         .mtime = kMtime + 5,
         .mtime_nsec = 123456789,
         .xattrs = {{"user.note", "hi"}, {"trusted.berth", "t"}}});
  l.Dir("etc");
  l.Add({.path = "etc/abs-link",
         .type = AE_IFLNK,
         .mode = 0777,
         .symlink = "/etc/passwd",
         .uid = 1000,
         .gid = 1000});
  l.Symlink("etc/dangling", "../nowhere/at/all");
  l.Dir("dev");
  l.Add({.path = "dev/null", .type = AE_IFCHR, .mode = 0666, .major = 1, .minor = 3});
  l.Add({.path = "dev/loop0", .type = AE_IFBLK, .mode = 0660, .gid = 6, .major = 7, .minor = 0});
  l.Dir("run");
  l.Add({.path = "run/fifo", .type = AE_IFIFO, .mode = 0620});
  l.Dir("var");
  l.File("var/.wh.gone", "");
  l.Dir("opq");
  l.File("opq/kept", "from this layer");
  l.File("opq/.wh..wh..opq", "");
  l.Dir("ro", 0555);
  l.File("ro/child", "in a read-only directory");
  return l;
}

TEST_P(UnpackFormatTest, AllEntryTypes) {
  std::string tar = FullLayer().Tar();
  std::string blob = Compress(tar, GetParam());
  auto r = Unpack(blob);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->diff_id, Sha256(tar));
  EXPECT_EQ(r->bytes, static_cast<int64_t>(tar.size()));
  EXPECT_EQ(r->compressed_bytes, static_cast<int64_t>(blob.size()));
  EXPECT_EQ(r->compression, GetParam());
  EXPECT_EQ(r->entries, 24);
  EXPECT_EQ(r->whiteouts, 1);
  EXPECT_EQ(r->opaque_dirs, 1);
  EXPECT_EQ(r->skipped_xattrs, 0);
  EXPECT_TRUE(warnings_.empty()) << warnings_[0];
  const fs::path& t = target_;

  EXPECT_EQ(Lstat(t).st_mode & 07777, 0751u);
  struct stat su = Lstat(t / "bin/su");
  EXPECT_EQ(su.st_mode & 07777, 04755u);
  EXPECT_EQ(ReadFile(t / "bin/su"), "#!/bin/true\n");
  EXPECT_EQ(su.st_mtime, kMtime);
  struct stat wall = Lstat(t / "bin/wall");
  EXPECT_EQ(wall.st_mode & 07777, 02755u);
  EXPECT_EQ(wall.st_gid, 5u);
  EXPECT_EQ(GetXattr(t / "bin/ping", "security.capability"), NetRawCapability());
  struct stat again = Lstat(t / "bin/su-again");
  EXPECT_EQ(again.st_ino, su.st_ino);
  EXPECT_EQ(su.st_nlink, 2u);

  EXPECT_EQ(Lstat(t / "tmp").st_mode & 07777, 01777u);
  struct stat home = Lstat(t / "home/user");
  EXPECT_EQ(home.st_mode & 07777, 0700u);
  EXPECT_EQ(home.st_uid, 1000u);
  EXPECT_EQ(home.st_mtime, kMtime);  // set after its child was written
  struct stat notes = Lstat(t / "home/user/notes");
  EXPECT_EQ(notes.st_uid, 1000u);
  EXPECT_EQ(notes.st_gid, 2000u);
  EXPECT_EQ(notes.st_mode & 07777, 0640u);
  EXPECT_EQ(notes.st_mtim.tv_sec, kMtime + 5);
  EXPECT_EQ(notes.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(GetXattr(t / "home/user/notes", "user.note"), "hi");
  EXPECT_EQ(GetXattr(t / "home/user/notes", "trusted.berth"), "t");

  EXPECT_EQ(fs::read_symlink(t / "etc/abs-link"), "/etc/passwd");
  EXPECT_EQ(Lstat(t / "etc/abs-link").st_uid, 1000u);
  EXPECT_EQ(fs::read_symlink(t / "etc/dangling"), "../nowhere/at/all");

  struct stat null = Lstat(t / "dev/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  EXPECT_EQ(null.st_mode & 07777, 0666u);
  struct stat loop = Lstat(t / "dev/loop0");
  EXPECT_TRUE(S_ISBLK(loop.st_mode));
  EXPECT_EQ(loop.st_rdev, makedev(7, 0));
  EXPECT_EQ(loop.st_gid, 6u);
  struct stat fifo = Lstat(t / "run/fifo");
  EXPECT_TRUE(S_ISFIFO(fifo.st_mode));
  EXPECT_EQ(fifo.st_mode & 07777, 0620u);

  struct stat gone = Lstat(t / "var/gone");
  EXPECT_TRUE(S_ISCHR(gone.st_mode));
  EXPECT_EQ(gone.st_rdev, makedev(0, 0));
  EXPECT_FALSE(fs::exists(fs::symlink_status(t / "var/.wh.gone")));

  EXPECT_EQ(GetXattr(t / "opq", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(ReadFile(t / "opq/kept"), "from this layer");
  EXPECT_FALSE(fs::exists(fs::symlink_status(t / "opq/.wh..wh..opq")));

  EXPECT_EQ(Lstat(t / "ro").st_mode & 07777, 0555u);
  EXPECT_EQ(ReadFile(t / "ro/child"), "in a read-only directory");
}

TEST_P(UnpackFormatTest, StreamingReaderGivesTheSameResult) {
  std::string tar = FullLayer().Tar();
  std::string blob = Compress(tar, GetParam());
  size_t pos = 0;
  ChunkReader reader = [&]() -> absl::StatusOr<std::string_view> {
    size_t n = std::min<size_t>(7, blob.size() - pos);  // tiny chunks: worst case
    std::string_view chunk(blob.data() + pos, n);
    pos += n;
    return chunk;
  };
  auto r = UnpackLayer(reader, target_, UnpackOptions{.layer_name = kLayer});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->diff_id, Sha256(tar));
  EXPECT_EQ(r->compressed_bytes, static_cast<int64_t>(blob.size()));
  EXPECT_EQ(ReadFile(target_ / "home/user/notes"), "hello");
}

TEST_P(UnpackFormatTest, TruncatedLayerIsDataLoss) {
  Layer l;
  l.File("big", std::string(200000, 'x') + std::string(200000, 'y'));
  std::string blob = Compress(l.Tar(), GetParam());
  auto r = Unpack(blob.substr(0, blob.size() / 2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(kLayer));
}

TEST_P(UnpackFormatTest, EscapeIsRefusedWhateverTheCompression) {
  Layer l;
  l.File("fine", "x");
  l.File("../x", "escaped");
  ExpectRefused(l, "../x", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Compressions, UnpackFormatTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kZstd),
                         [](const ::testing::TestParamInfo<Compression>& i) {
                           return std::string(CompressionName(i.param));
                         });

// ---- Escapes -------------------------------------------------------------------------------

TEST_F(UnpackTest, DotDotIsRefused) {
  ExpectRefused(Layer().File("../x", "escaped"), "../x");
  EXPECT_FALSE(fs::exists(base_ / "l1/l2/x"));
}

TEST_F(UnpackTest, DotDotInsideThePathIsRefused) {
  ExpectRefused(Layer().Dir("a").File("a/../../x", "escaped"), "a/../../x");
  EXPECT_FALSE(fs::exists(base_ / "l1/l2/x"));
}

TEST_F(UnpackTest, AbsolutePathsAreRelativeToTheTarget) {
  Layer l;
  l.File("/etc/berth-escape-test", "contained");
  std::string tar = l.Tar();
  // The writer kept the leading slash: this really is an absolute entry.
  ASSERT_NE(tar.find("/etc/berth-escape-test"), std::string::npos);
  auto before = Outside();
  auto r = Unpack(tar);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReadFile(target_ / "etc/berth-escape-test"), "contained");
  EXPECT_FALSE(fs::exists(fs::symlink_status("/etc/berth-escape-test")));
  EXPECT_EQ(Outside(), before);
}

TEST_F(UnpackTest, SymlinkToRootThenWriteThroughItIsRefused) {
  ExpectRefused(Layer().Symlink("a", "/").File("a/etc/berth-escape-test", "escaped"),
                "a/etc/berth-escape-test");
  EXPECT_EQ(fs::read_symlink(target_ / "a"), "/");
}

TEST_F(UnpackTest, SymlinkUpwardsThenWriteThroughItIsRefused) {
  // target/a -> ../.. is <base>/l1.
  ExpectRefused(Layer().Symlink("a", "../..").File("a/x", "escaped"), "a/x");
  EXPECT_FALSE(fs::exists(base_ / "l1/x"));
}

TEST_F(UnpackTest, SymlinkToOutsideDirectoryIsNeverFollowed) {
  ExpectRefused(Layer().Symlink("a", outside_.string()).File("a/victim", "overwritten"),
                "a/victim");
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

TEST_F(UnpackTest, SymlinkInsideTheTargetIsNotFollowedEither) {
  // Even a symlink that stays inside is refused as a parent: writes never follow one.
  ExpectRefused(Layer().Dir("real").Symlink("alias", "real").File("alias/f", "x"), "alias/f");
  EXPECT_FALSE(fs::exists(target_ / "real/f"));
}

TEST_F(UnpackTest, PreExistingSymlinkInTheTargetIsNotFollowed) {
  fs::create_symlink(outside_, target_ / "lnk");
  ExpectRefused(Layer().File("lnk/victim", "overwritten"), "lnk/victim");
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

TEST_F(UnpackTest, WhiteoutThroughSymlinkIsRefused) {
  ExpectRefused(Layer().Symlink("lnk", outside_.string()).File("lnk/.wh.victim", ""),
                "lnk/.wh.victim");
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

TEST_F(UnpackTest, OpaqueThroughSymlinkIsRefused) {
  ExpectRefused(Layer().Symlink("lnk", outside_.string()).File("lnk/.wh..wh..opq", ""),
                "lnk/.wh..wh..opq");
  EXPECT_EQ(GetXattr(outside_, "trusted.overlay.opaque"), "<none>");
}

TEST_F(UnpackTest, HardLinkOutsideIsRefused) {
  ExpectRefused(Layer().Hardlink("passwd", "../../etc/passwd"), "passwd");
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "passwd")));
}

TEST_F(UnpackTest, AbsoluteHardLinkStaysInside) {
  // "/etc/passwd" means <target>/etc/passwd, which does not exist: refused, host untouched.
  ExpectRefused(Layer().Hardlink("passwd", "/etc/passwd"), "passwd");
}

TEST_F(UnpackTest, HardLinkThroughSymlinkIsRefused) {
  ExpectRefused(Layer().Symlink("s", "/etc").Hardlink("p", "s/passwd"), "p");
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "p")));
}

TEST_F(UnpackTest, HardLinkThroughRelativeSymlinkIsRefused) {
  ExpectRefused(Layer().Symlink("s", "../../../outside").Hardlink("p", "s/victim"), "p");
}

TEST_F(UnpackTest, HardLinkToASymlinkLinksTheSymlinkItself) {
  auto r = Unpack(Layer().Symlink("s", (outside_ / "victim").string()).Hardlink("h", "s").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(fs::is_symlink(target_ / "h"));
  EXPECT_EQ(Lstat(outside_ / "victim").st_nlink, 1u);
}

TEST_F(UnpackTest, FileReplacingASymlinkDoesNotWriteThroughIt) {
  auto r =
      Unpack(Layer().Symlink("f", (outside_ / "victim").string()).File("f", "new content").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
  EXPECT_FALSE(fs::is_symlink(target_ / "f"));
  EXPECT_EQ(ReadFile(target_ / "f"), "new content");
}

TEST_F(UnpackTest, WhiteoutOfASymlinkRemovesOnlyTheLink) {
  fs::create_symlink(outside_, target_ / "lnk");
  auto r = Unpack(Layer().File(".wh.lnk", "").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(S_ISCHR(Lstat(target_ / "lnk").st_mode));
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

// ---- Whiteouts and existing content --------------------------------------------------------

TEST_F(UnpackTest, WhiteoutReplacesExistingTree) {
  fs::create_directories(target_ / "var/gone/sub");
  WriteFile(target_ / "var/gone/sub/file", "x");
  auto r = Unpack(Layer().Dir("var").File("var/.wh.gone", "").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st = Lstat(target_ / "var/gone");
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
}

TEST_F(UnpackTest, OpaqueBeforeItsDirectoryKeepsThisLayersContent) {
  // The marker may come first; the directory entry after it must not drop the xattr, and
  // files of this layer in it stay.
  auto r = Unpack(Layer().File("d/.wh..wh..opq", "").Dir("d", 0711).File("d/mine", "mine").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(GetXattr(target_ / "d", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(ReadFile(target_ / "d/mine"), "mine");
  EXPECT_EQ(Lstat(target_ / "d").st_mode & 07777, 0711u);
}

// ---- Native form (apply_whiteouts): the target holds a full copy of the lower layers --------

TEST_F(UnpackTest, NativeWhiteoutRemovesWhatItNames) {
  fs::create_directories(target_ / "var/gone/sub");
  WriteFile(target_ / "var/gone/sub/file", "x");
  WriteFile(target_ / "var/kept", "k");
  UnpackOptions opts;
  opts.apply_whiteouts = true;
  auto r = Unpack(Layer().Dir("var").File("var/.wh.gone", "").File("var/.wh.absent", "").Tar(),
                  opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "var/gone")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "var/absent")));
  EXPECT_EQ(ReadFile(target_ / "var/kept"), "k");
  EXPECT_EQ(r->whiteouts, 2);
}

TEST_F(UnpackTest, NativeWhiteoutOfASymlinkRemovesOnlyTheLink) {
  fs::create_symlink(outside_, target_ / "link");
  UnpackOptions opts;
  opts.apply_whiteouts = true;
  auto r = Unpack(Layer().File(".wh.link", "").Tar(), opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "link")));
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

TEST_F(UnpackTest, NativeOpaqueKeepsOnlyThisLayersContentWhereverTheMarkerIs) {
  // The lower layers' content of d and of d/sub (which this layer writes into, without an
  // entry of its own) goes; what this layer writes stays, before or after the marker.
  for (const char* d : {"d", "e"}) {
    fs::create_directories(target_ / d / "sub");
    WriteFile(target_ / d / "old", "old");
    WriteFile(target_ / d / "sub/old", "old");
    WriteFile(target_ / d / "mine", "lower");
  }
  fs::create_directories(target_ / "other");
  WriteFile(target_ / "other/old", "untouched");
  UnpackOptions opts;
  opts.apply_whiteouts = true;
  auto r = Unpack(Layer()
                      .File("d/mine", "mine")
                      .File("d/sub/new", "new")
                      .File("d/.wh..wh..opq", "")
                      .File("e/.wh..wh..opq", "")
                      .Dir("e", 0711)
                      .File("e/mine", "mine")
                      .Tar(),
                  opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->opaque_dirs, 2);
  EXPECT_EQ(ReadFile(target_ / "d/mine"), "mine");
  EXPECT_EQ(ReadFile(target_ / "d/sub/new"), "new");
  EXPECT_FALSE(fs::exists(target_ / "d/old"));
  EXPECT_FALSE(fs::exists(target_ / "d/sub/old"));
  EXPECT_EQ(ReadFile(target_ / "e/mine"), "mine");
  EXPECT_FALSE(fs::exists(target_ / "e/old"));
  EXPECT_FALSE(fs::exists(target_ / "e/sub"));
  EXPECT_EQ(Lstat(target_ / "e").st_mode & 07777, 0711u);
  EXPECT_EQ(ReadFile(target_ / "other/old"), "untouched");
  // No overlay metadata in the native form.
  char buf[8];
  EXPECT_LT(lgetxattr((target_ / "d").c_str(), "trusted.overlay.opaque", buf, sizeof(buf)), 0);
}

TEST_F(UnpackTest, NativeOpaqueThroughSymlinkIsRefused) {
  fs::create_symlink(outside_, target_ / "link");
  UnpackOptions opts;
  opts.apply_whiteouts = true;
  auto r = Unpack(Layer().File("link/.wh..wh..opq", "").Tar(), opts);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(ReadFile(outside_ / "victim"), "original");
}

TEST_F(UnpackTest, BadWhiteoutsAreRefused) {
  auto r = Unpack(Layer().File("dir/.wh.", "").Tar());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  r = Unpack(Layer().File(".wh.x/child", "").Tar());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

TEST_F(UnpackTest, DirectoryReplacesFileAndFileReplacesDirectory) {
  WriteFile(target_ / "was-file", "x");
  fs::create_directories(target_ / "was-dir/sub");
  auto r = Unpack(Layer().Dir("was-file").File("was-dir", "now a file").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(fs::is_directory(target_ / "was-file"));
  EXPECT_EQ(ReadFile(target_ / "was-dir"), "now a file");
}

TEST_F(UnpackTest, DirectoryReplacesASymlinkInsteadOfFollowingIt) {
  fs::create_symlink(outside_, target_ / "d");
  mode_t outside_mode = Lstat(outside_).st_mode;
  auto r = Unpack(Layer().Dir("d", 0700).File("d/f", "inside").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(fs::is_symlink(target_ / "d"));
  EXPECT_EQ(ReadFile(target_ / "d/f"), "inside");
  EXPECT_FALSE(fs::exists(outside_ / "f"));
  EXPECT_EQ(Lstat(outside_).st_mode, outside_mode);
}

TEST_F(UnpackTest, HardLinkToAFileAlreadyInTheTarget) {
  WriteFile(target_ / "existing", "from an earlier layer");
  auto r = Unpack(Layer().Hardlink("new", "existing").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Lstat(target_ / "new").st_ino, Lstat(target_ / "existing").st_ino);
}

TEST_F(UnpackTest, OverlayXattrsFromTheArchiveAreDropped) {
  auto r =
      Unpack(Layer()
                 .Add({.path = "d",
                       .type = AE_IFDIR,
                       .mode = 0755,
                       .xattrs = {{"trusted.overlay.redirect", "/elsewhere"}, {"user.keep", "1"}}})
                 .Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(GetXattr(target_ / "d", "trusted.overlay.redirect"), "<none>");
  EXPECT_EQ(GetXattr(target_ / "d", "user.keep"), "1");
  EXPECT_EQ(r->skipped_xattrs, 1);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_THAT(warnings_[0], HasSubstr("trusted.overlay.redirect"));
}

TEST_F(UnpackTest, LongAndNonAsciiNames) {
  std::string long_name = "deep/" + std::string(150, 'n') + "/" + std::string(200, 'f');
  auto r = Unpack(Layer().File(long_name, "long").File("h\xc3\xa9llo", "utf-8").Tar());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReadFile(target_ / long_name), "long");
  EXPECT_EQ(ReadFile(target_ / "h\xc3\xa9llo"), "utf-8");
}

TEST_F(UnpackTest, Utf8PaxNamesAreKeptAsBytes) {
  // As Go's archive/tar and Python's tarfile write them: UTF-8 pax records, no hdrcharset.
  std::string tar = PaxHeader("path=h\xc3\xa9llo") + UstarHeader("hello", '0', 5) +
                    Padded("hello") + PaxHeader("linkpath=t\xc3\xa9st") +
                    UstarHeader("l", '2', 0, "test") + std::string(1024, '\0');
  auto r = Unpack(tar);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReadFile(target_ / "h\xc3\xa9llo"), "hello");
  EXPECT_EQ(fs::read_symlink(target_ / "l"), "t\xc3\xa9st");
  EXPECT_TRUE(warnings_.empty()) << warnings_[0];
  EXPECT_EQ(r->diff_id, Sha256(tar));
}

TEST_F(UnpackTest, WithoutOwnershipSetuidIsDropped) {
  UnpackOptions opts;
  opts.preserve_ownership = false;
  auto r = Unpack(Layer().Add({.path = "s", .mode = 04755, .data = "x", .uid = 1234}).Tar(), opts);
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st = Lstat(target_ / "s");
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, geteuid());
}

TEST_F(UnpackTest, EmptyTarIsAValidLayer) {
  std::string tar = Layer().Tar();
  auto r = Unpack(Compress(tar, Compression::kGzip));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, 0);
  EXPECT_EQ(r->diff_id, Sha256(tar));
}

// ---- Corrupt input -------------------------------------------------------------------------

TEST_F(UnpackTest, CorruptGzipIsAnError) {
  Layer l;
  for (int i = 0; i < 20; ++i)
    l.File("f" + std::to_string(i), std::string(5000, static_cast<char>('a' + i)));
  std::string blob = Compress(l.Tar(), Compression::kGzip);
  for (size_t i = blob.size() / 3; i < blob.size() / 3 + 64; ++i) blob[i] ^= 0x5a;
  auto r = Unpack(blob);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kDataLoss ||
              r.status().code() == absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(kLayer));
}

TEST_F(UnpackTest, TruncatedGzipTrailerIsDataLoss) {
  std::string tar = Layer().File("a", "b").Tar();
  std::string blob = Compress(tar, Compression::kGzip);
  auto r = Unpack(blob.substr(0, blob.size() - 4));  // the tar is whole, the stream is not
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
}

TEST_F(UnpackTest, NotATarIsDataLoss) {
  auto r = Unpack(std::string(4096, 'z'));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  r = Unpack(Compress(std::string(4096, 'z'), Compression::kZstd));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  r = Unpack("");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
}

TEST_F(UnpackTest, UnknownCompressionIsRefusedClearly) {
  auto r =
      Unpack(std::string("\xfd"
                         "7zXZ\x00\x00 rest of an xz stream",
                         26));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("xz"));
  r = Unpack("BZh91AY&SY rest of a bzip2 stream");
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("bzip2"));
}

TEST_F(UnpackTest, MediaTypeIsOnlyAHint) {
  std::string tar = Layer().File("a", "b").Tar();
  UnpackOptions opts;
  opts.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  auto r = Unpack(Compress(tar, Compression::kGzip), opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->compression, Compression::kGzip);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_THAT(warnings_[0], HasSubstr("does not match"));
  opts.media_type = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
  r = Unpack(Compress(tar, Compression::kGzip), opts);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented) << r.status();
}

TEST_F(UnpackTest, ReaderErrorIsPropagated) {
  std::string blob = Compress(FullLayer().Tar(), Compression::kGzip);
  int calls = 0;
  ChunkReader reader = [&]() -> absl::StatusOr<std::string_view> {
    if (++calls > 3) return absl::UnavailableError("connection reset by registry");
    return std::string_view(blob).substr(static_cast<size_t>(calls - 1) * 100, 100);
  };
  auto r = UnpackLayer(reader, target_, UnpackOptions{.layer_name = kLayer});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("connection reset"));
}

TEST_F(UnpackTest, MissingTargetIsNotFound) {
  auto r = UnpackLayer(base_ / "nope.tar", target_, UnpackOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  WriteFile(base_ / "blob.tar", Layer().File("a", "b").Tar());
  r = UnpackLayer(base_ / "blob.tar", base_ / "no-such-dir", UnpackOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

}  // namespace
}  // namespace berth::image
