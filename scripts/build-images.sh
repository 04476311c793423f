#!/usr/bin/env bash
# Build the local images the Kubernetes manifests name (infra/Pulumi.local.yaml):
#   localhost/gdx:VERSION        the exchange and the monitoring agent (infra/images/gdx)
#   localhost/gdx-postgres:15    PostgreSQL for the local stack (infra/images/postgres), and the
#                                local platform's population register
#   localhost/gdx-mariadb:10.11  MariaDB for the local platform's legal-entity register
#                                (local_platform/images/mariadb)
# FROM the Debian base made by scripts/build-base-image.sh; elsewhere pass BASE_IMAGE=a registry image.
#   scripts/build-images.sh [--force]     (does nothing for an image that exists, unless --force)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${GDX_BASE_IMAGE:-localhost/gdx-debian-systemd:bookworm}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' gdx/__init__.py)
force=${1:-}

build() {  # IMAGE CONTAINERFILE [--build-arg ...]
  local image=$1 file=$2
  shift 2
  # An image is rebuilt when what went into it changed: the Containerfile's folder and the bundle.
  local inputs
  inputs=$( (cd "$(dirname "$file")" && find . -type f -print0 | sort -z | xargs -0 sha256sum
             if [ "$image" = "localhost/gdx:$VERSION" ]; then sha256sum "$OLDPWD/$BUNDLE"; fi) \
           | sha256sum | cut -c1-16)
  if [ "$force" != "--force" ] && podman image exists "$image" \
     && [ "$(podman image inspect --format '{{ index .Labels "gdx.inputs" }}' "$image")" = "$inputs" ]; then
    echo "build-images: $image is up to date"
    return
  fi
  echo "build-images: building $image from $BASE_IMAGE"
  local started=$SECONDS
  podman build --quiet --layers --label gdx.inputs="$inputs" --build-arg BASE_IMAGE="$BASE_IMAGE" "$@" \
    -f "$file" -t "$image" . >/dev/null
  echo "build-images: $image built in $((SECONDS - started)) s"
}

BUNDLE=dist/gdx-node-$VERSION.tar.gz
test -f "$BUNDLE" || { echo "build-images: dist/gdx-node-$VERSION.tar.gz is missing: make bundle" >&2; exit 1; }
build "localhost/gdx:$VERSION" infra/images/gdx/Containerfile --build-arg VERSION="$VERSION"
build localhost/gdx-postgres:15 infra/images/postgres/Containerfile
build localhost/gdx-mariadb:10.11 local_platform/images/mariadb/Containerfile
