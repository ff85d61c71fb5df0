#!/usr/bin/env bash
# Regenerates Go code from the protobuf schemas (messages/messages.proto).
# Called by `task gen`. Requires protoc (Debian: apt-get install protobuf-compiler);
# installs protoc-gen-go at the version pinned below when it is missing or differs.
set -euo pipefail

PROTOC_GEN_GO_VERSION="v1.36.12" # keep in sync with google.golang.org/protobuf in go.mod

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

gobin="$(go env GOBIN)"
if [[ -z "${gobin}" ]]; then
  gobin="$(go env GOPATH)/bin"
fi
export PATH="${gobin}:${PATH}"

if ! command -v protoc >/dev/null 2>&1; then
  echo "gen-proto: protoc not found; install it (Debian/Ubuntu: apt-get install -y protobuf-compiler)" >&2
  exit 1
fi

installed_version=""
if command -v protoc-gen-go >/dev/null 2>&1; then
  installed_version="$(protoc-gen-go --version 2>/dev/null | awk '{print $NF}')"
fi
if [[ "${installed_version}" != "${PROTOC_GEN_GO_VERSION}" ]]; then
  echo "gen-proto: installing protoc-gen-go ${PROTOC_GEN_GO_VERSION} (found: ${installed_version:-none})" >&2
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi

protoc \
  --proto_path=messages \
  --go_out=messages \
  --go_opt=paths=source_relative \
  messages/messages.proto

echo "gen-proto: generated messages/messages.pb.go" >&2
