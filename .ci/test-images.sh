#!/usr/bin/env bash
# Builds the images the tests and the demo use. The daemon can pull nothing,
# so every image is FROM scratch plus static binaries from this machine.
# All carry the label oz-agent-worker.test=1 so tests can remove them by label.
set -euo pipefail
docker=${DOCKER:-docker}
busybox=$(command -v busybox)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# oz-test/busybox: a glibc-free task image with a shell and coreutils.
mkdir -p "$ctx/busybox/rootfs/bin" "$ctx/busybox/rootfs/workspace" "$ctx/busybox/rootfs/tmp"
cp "$busybox" "$ctx/busybox/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ctx/busybox/rootfs/bin/$applet"
done
cat > "$ctx/busybox/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL oz-agent-worker.test=1
CMD ["sh"]
DOCKERFILE
"$docker" build -q -t oz-test/busybox:latest "$ctx/busybox" >/dev/null
echo "built oz-test/busybox:latest"
