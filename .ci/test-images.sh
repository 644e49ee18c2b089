#!/usr/bin/env bash
# Builds the images the tests and the demo use. The daemon can pull nothing,
# so every image is FROM scratch plus static binaries from this machine.
# All carry the label oz-agent-worker.test=1 so tests can remove them by label.
# Safe to re-run: unchanged inputs hit the build cache / load the same image ID.
set -euo pipefail
docker=${DOCKER:-docker}
# BUSYBOX: a static busybox to use instead of the one on PATH (demo/run).
busybox=${BUSYBOX:-$(command -v busybox)}
here=$(cd "$(dirname "$0")" && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
label=oz-agent-worker.test=1

build() { # build TAG DIR
  # Quiet on success: the legacy builder's deprecation notice is noise here.
  local out
  if ! out=$("$docker" build -q -t "$1" "$2" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "building $1 failed" >&2
    exit 1
  fi
  echo "built $1"
}

# oz-test/busybox: a glibc-free task image with a shell and coreutils.
mkdir -p "$ctx/busybox/rootfs/bin" "$ctx/busybox/rootfs/workspace" "$ctx/busybox/rootfs/tmp"
cp "$busybox" "$ctx/busybox/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ctx/busybox/rootfs/bin/$applet"
done
cat > "$ctx/busybox/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL $label
CMD ["sh"]
DOCKERFILE
build oz-test/busybox:latest "$ctx/busybox"

# Sidecars: nothing but /entrypoint.sh. No shell of their own on purpose: the
# worker must copy their filesystem into a volume without running anything in
# them; the script later runs inside the (busybox) task container.
for sidecar in agent-sidecar demo-sidecar; do
  mkdir -p "$ctx/$sidecar"
  install -m 0755 "$here/images/$sidecar.sh" "$ctx/$sidecar/entrypoint.sh"
  cat > "$ctx/$sidecar/Dockerfile" <<DOCKERFILE
FROM scratch
COPY entrypoint.sh /entrypoint.sh
LABEL $label
CMD ["/entrypoint.sh"]
DOCKERFILE
  build "oz-test/$sidecar:latest" "$ctx/$sidecar"
done

# oz-test/musl: only the musl loader's path matters (its presence marks a
# musl userland); the content is irrelevant.
mkdir -p "$ctx/musl/lib"
printf 'not really the musl loader\n' > "$ctx/musl/lib/ld-musl-x86_64.so.1"
cat > "$ctx/musl/Dockerfile" <<DOCKERFILE
FROM scratch
COPY lib/ /lib/
LABEL $label
CMD ["/lib/ld-musl-x86_64.so.1"]
DOCKERFILE
build oz-test/musl:latest "$ctx/musl"

# oz-test/arm64: the legacy builder cannot build for another platform, so
# hand-craft a `docker save` archive whose config says linux/arm64 and load it.
# Fixed mtimes and owners keep the layer (and so the image ID) reproducible.
arm="$ctx/arm64"
mkdir -p "$arm/rootfs" "$arm/out"
printf 'arm64 test image\n' > "$arm/rootfs/hello"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -C "$arm/rootfs" -cf "$arm/layer.tar" hello
layer_sha=$(sha256sum "$arm/layer.tar" | cut -d' ' -f1)
mkdir -p "$arm/out/$layer_sha"
mv "$arm/layer.tar" "$arm/out/$layer_sha/layer.tar"
printf '%s' '{"architecture":"arm64","os":"linux","created":"1970-01-01T00:00:00Z",'\
'"config":{"Cmd":["/hello"],"Labels":{"oz-agent-worker.test":"1"}},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_sha"'"]},'\
'"history":[{"created":"1970-01-01T00:00:00Z","created_by":"oz-agent-worker .ci/test-images.sh"}]}' \
  > "$arm/config.json"
config_sha=$(sha256sum "$arm/config.json" | cut -d' ' -f1)
mv "$arm/config.json" "$arm/out/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["oz-test/arm64:latest"],"Layers":["%s/layer.tar"]}]' \
  "$config_sha" "$layer_sha" > "$arm/out/manifest.json"
tar -C "$arm/out" -cf "$arm/image.tar" .
"$docker" load -q -i "$arm/image.tar" >/dev/null
platform=$("$docker" image inspect -f '{{.Os}}/{{.Architecture}}' oz-test/arm64:latest)
if [ "$platform" != linux/arm64 ]; then
  echo "oz-test/arm64:latest loaded as $platform, expected linux/arm64" >&2
  exit 1
fi
echo "loaded oz-test/arm64:latest ($platform)"
