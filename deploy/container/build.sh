#!/usr/bin/env bash
# Builds the parallax container image from an already built binary, pulling nothing:
#
#   deploy/container/build.sh BINARY TAG
#   deploy/container/build.sh target/release/parallax registry.example.com/parallax:0.1.0
#
# Real images come from a release build (`cargo build --release --locked`): smaller and faster.
# CI (scripts/check-deploy) passes the debug binary that the test run has already built, so that
# it checks the image without compiling parallax a second time.
#
# The build context is made in a temporary directory: the Containerfile beside this script and
# rootfs/ with the binary, the shared libraries `ldd` names and the user entry (see the
# Containerfile for why each is there). buildah runs with the vfs storage driver, which works
# without overlay support (in containers, CI); BUILDAH_OPTS adds global buildah options, e.g.
# BUILDAH_OPTS="--root /tmp/storage --runroot /tmp/run" to keep the image out of the default
# store. Push the result with `buildah push TAG`.
set -euo pipefail

die() {
  echo "build.sh: $*" >&2
  exit 1
}

[ $# -eq 2 ] || die "usage: $0 BINARY TAG   (e.g. $0 target/release/parallax parallax:0.1.0)"
binary=$1
tag=$2
here=$(cd "$(dirname "$0")" && pwd)

if ! [ -f "$binary" ] || ! [ -x "$binary" ]; then
  die "$binary is not an executable file: build it first (cargo build --release --locked)"
fi
command -v buildah >/dev/null 2>&1 || die "buildah is not installed (Debian: apt-get install buildah)"
command -v ldd >/dev/null 2>&1 || die "ldd is not installed (Debian: libc-bin)"
# Word splitting is intended: BUILDAH_OPTS holds several options.
read -r -a buildah_opts <<<"${BUILDAH_OPTS:-}"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs=$context/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc"
install -m 0755 "$binary" "$rootfs/usr/local/bin/parallax"

# The libraries, at the paths the binary asks for (ldd prints `name => /path (addr)`, and the
# dynamic loader as `/path (addr)`); symlinks are copied as the files they point to.
libs=0
while read -r line; do
  case $line in
    *"not found"*) die "ldd: a library of $binary is missing: $line" ;;
    *"=> /"*) path=${line#*=> } ;;
    /*) path=$line ;;
    *) continue ;; # linux-vdso.so.1: provided by the kernel, no file
  esac
  path=${path%% (*}
  mkdir -p "$rootfs$(dirname "$path")"
  install -m 0755 "$(readlink -f "$path")" "$rootfs$path"
  libs=$((libs + 1))
done < <(ldd "$binary" 2>&1 || true)
if [ "$libs" -eq 0 ] && ! ldd "$binary" 2>&1 | grep -qE 'not a dynamic executable|statically linked'; then
  die "ldd listed no library for $binary: $(ldd "$binary" 2>&1 | head -n 3)"
fi

# The uid/gid the Kubernetes manifests run as (runAsUser/runAsGroup: 65532).
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
cp "$here/Containerfile" "$context/Containerfile"

version=$("$binary" --version 2>/dev/null | awk '{print $2}') || version=""
echo "build.sh: $tag from $binary (${version:-unknown version}, $libs libraries)" >&2
buildah "${buildah_opts[@]}" bud --storage-driver vfs --pull=never --layers=false \
  --label "org.opencontainers.image.version=${version:-unknown}" \
  -f "$context/Containerfile" -t "$tag" "$context"
