// OCI artifacts as ORAS pushes them: `oci://registry/repository[:tag|@sha256:digest]`, or the
// registry, repository and tag of a Foundry custom model. The manifest is fetched through the
// Distribution API (v2) and checked against its digest; each layer is a file named by its
// `org.opencontainers.image.title` annotation and checked by its digest, and a directory layer
// (tar+gzip, or the `io.deis.oras.content.unpack` annotation) is unpacked into the model's folder.
//
// Registries on localhost are spoken to over plain HTTP (as Docker and ORAS treat them), others
// over HTTPS unless KILN_OCI_PLAIN_HTTP=1. Credentials: KILN_OCI_USERNAME and KILN_OCI_PASSWORD,
// else the registry's entry in $DOCKER_CONFIG/config.json or ~/.docker/config.json (where
// `oras login` and `docker login` write); used as Basic authentication or to get a bearer token
// from the registry's token service.
#pragma once

#include <string>

#include "kiln/base/status.h"
#include "kiln/catalog/model_source.h"

namespace kiln::catalog {

// Parses `registry/repository[:tag|@digest]` (the part after oci://); `uri` names it in errors.
Result<Source> ParseOciReference(const std::string& reference, const std::string& uri);

// The artifact's layers as files to fetch, with the headers that authorize each.
Result<Listing> ListOci(const Source& source);

// Unpacks a .tar.gz into `folder`; entries must stay inside it (no absolute paths, no "..", no
// links that leave it). Errors name the archive and the entry.
Status UnpackTarGz(const std::string& archive, const std::string& folder);

}  // namespace kiln::catalog
