// Model sources: URIs parsed into what a pull fetches, unsafe names refused, and a .tar.gz layer
// unpacked only inside the model's folder.
#include "kiln/catalog/model_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/base/digest.h"
#include "kiln/catalog/oci_source.h"

namespace kiln::catalog {
namespace {

namespace fs = std::filesystem;

TEST(ModelSource, ParsesEachKind) {
  Result<Source> hf = ParseSource("hf://org/repo@v1.0/onnx/cpu-int4");
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  EXPECT_EQ(hf->kind, Source::Kind::kHf);
  EXPECT_EQ(hf->repo, "org/repo");
  EXPECT_EQ(hf->revision, "v1.0");
  EXPECT_EQ(hf->folder, "onnx/cpu-int4");
  Result<Source> plain = ParseSource("hf://Qwen/Qwen2.5-0.5B-Instruct");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->revision, "main");
  EXPECT_EQ(plain->folder, "");

  Result<Source> oci = ParseSource("oci://localhost:5000/team/models/phi:v2");
  ASSERT_TRUE(oci.ok()) << oci.status().message();
  EXPECT_EQ(oci->registry, "localhost:5000");
  EXPECT_EQ(oci->repository, "team/models/phi");
  EXPECT_EQ(oci->reference, "v2");
  Result<Source> untagged = ParseSource("oci://ghcr.io/org/model");
  ASSERT_TRUE(untagged.ok());
  EXPECT_EQ(untagged->reference, "latest");
  const std::string digest = "sha256:" + std::string(64, 'a');
  Result<Source> pinned = ParseSource("oci://ghcr.io/org/model@" + digest);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->reference, digest);

  Result<Source> https = ParseSource("https://example.com/models/m.gguf?download=1");
  ASSERT_TRUE(https.ok());
  EXPECT_EQ(https->kind, Source::Kind::kHttp);
  Result<Listing> one = ListFiles(*https, "ab");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->files.size(), 1u);
  EXPECT_EQ(one->files[0].path, "m.gguf");
  EXPECT_EQ(one->files[0].sha256, "ab");

  Result<Source> store = ParseSource("models/smollm2-135m-instruct.gguf");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE(IsRemote(*store));
}

TEST(ModelSource, RefusesWhatCannotBeFetchedSafely) {
  for (const char* uri : {"hf://org", "hf://org/repo/../../etc", "hf://org/repo@", "s3://bucket/x",
                          "oci://registry", "oci://r/Upper/Case:tag", "oci://r/x@sha256:abc",
                          "https://example.com/", "../outside", "/absolute/path"}) {
    Result<Source> s = ParseSource(uri);
    EXPECT_FALSE(s.ok()) << uri;
    if (!s.ok()) {
      EXPECT_NE(s.status().message().find(uri), std::string::npos) << uri;
    }
  }
}

// A .tar.gz with the given (name, contents) entries.
void WriteTarGz(const fs::path& path, const std::vector<std::pair<std::string, std::string>>& e) {
  archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& [name, data] : e) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, name.c_str());
    archive_entry_set_size(entry, static_cast<la_int64_t>(data.size()));
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_write_header(a, entry);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST(ModelSource, UnpacksInsideTheFolderOnly) {
  const fs::path dir = fs::path(::testing::TempDir()) / "unpack_test";
  fs::remove_all(dir);
  fs::create_directories(dir / "out");
  WriteTarGz(dir / "good.tar.gz", {{"model/config.json", "{}"}, {"model/w.bin", "weights"}});
  ASSERT_TRUE(UnpackTarGz((dir / "good.tar.gz").string(), (dir / "out").string()).ok());
  std::ifstream in(dir / "out" / "model" / "w.bin");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "weights");

  WriteTarGz(dir / "evil.tar.gz", {{"model/../../escaped.txt", "x"}});
  Status s = UnpackTarGz((dir / "evil.tar.gz").string(), (dir / "out").string());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model/../../escaped.txt"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(dir / "escaped.txt"));

  std::ofstream(dir / "not.tar.gz") << "plain text";
  s = UnpackTarGz((dir / "not.tar.gz").string(), (dir / "out").string());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not.tar.gz"), std::string::npos) << s.message();
}

TEST(Digest, MatchesKnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Digest sha1(Digest::Kind::kSha1);
  sha1.Update("abc");
  EXPECT_EQ(sha1.HexFinal(), "a9993e364706816aba3e25717850c26c9cd0d89d");
}

}  // namespace
}  // namespace kiln::catalog
