// Where a model's files come from: a catalog entry's `uri` parsed, and the list of files to fetch.
//
//   models/...                          a path inside the model store (nothing to fetch)
//   https://host/path/file              one file (http:// too, for servers on a private network)
//   hf://org/repo[@revision][/folder]   a Hugging Face Hub repository (the revision defaults to
//                                       main; a folder selects that part of the repository),
//                                       listed through the Hub's API at $HF_ENDPOINT (default
//                                       https://huggingface.co) with $HF_TOKEN when set
//   oci://registry/repository:tag       an OCI artifact (see oci_source.h)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::catalog {

struct Source {
  enum class Kind { kStore, kHttp, kHf, kOci };
  Kind kind = Kind::kStore;
  std::string uri;
  // kStore: the path in the store; kHttp: the URL.
  std::string path;
  // kHf: "org/repo", the revision, and the folder inside the repository ("" for all of it).
  std::string repo, revision, folder;
  // kOci: the registry host[:port], repository and tag or digest.
  std::string registry, repository, reference;
};

Result<Source> ParseSource(const std::string& uri);
bool IsRemote(const Source& source);

// One file to fetch: where it goes in the model's folder, the URL, and what it must be.
struct RemoteFile {
  std::string path;
  std::string url;
  std::vector<std::string> headers;  // sent with the request (credentials)
  int64_t size = -1;                 // -1: not known before it arrives
  std::string sha256;                // "": not stated
  std::string git_blob_sha1;         // the Hub's id of a small (non-LFS) file
  bool unpack_tar_gz = false;        // an OCI layer to unpack into the folder
};

struct Listing {
  std::vector<RemoteFile> files;
  std::string revision;  // what the source resolved to (a commit, a manifest digest)
};

// The files of a remote source. `sha256` is the catalog's digest, which a single https file must
// match. Errors name the source and what the server said.
Result<Listing> ListFiles(const Source& source, const std::string& sha256);

}  // namespace kiln::catalog
