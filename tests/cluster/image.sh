#!/usr/bin/env bash
# Builds the project's image (the Dockerfile at the top of the repository) with whichever engine runs here:
#   docker  where `docker info` answers: a plain `docker build`, the base pulled as usual;
#   podman  otherwise (Debian's package), with the runc runtime (crun refuses hybrid cgroup layouts), explicit
#           ulimits within the current hard limits, host networking, and the host's CA bundle handed to pip in the
#           build stage only (PIP_CERT as a build argument, the bundle mounted read-only).
#
#   image.sh [TAG]         default tag mlops-operator:<the package's version>; prints the tag on its last line
#
# The base is the build argument PYTHON_IMAGE (default python:3.11-slim, as in the Dockerfile). When the engine
# holds no image of that name and cannot pull one (no registry reachable), a local base of the same shape is made
# from Debian bookworm (debootstrap, minbase, with Debian's python3.11 and venv): localhost/mlops-base:bookworm-<key>,
# where <key> hashes its inputs (this script's recipe), so that a second build reuses it. MLOPS_IMAGE_BASE names
# another base outright. The Dockerfile is the same for every engine: nothing in it knows this machine.
#
# Variables: MLOPS_IMAGE_ENGINE (docker|podman: skip the detection), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), MLOPS_IMAGE_BASE.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/operator/mlops_operator/__init__.py")
[ -n "$version" ] || die "no __version__ in operator/mlops_operator/__init__.py"
tag=${1:-mlops-operator:$version}
python_image=${PYTHON_IMAGE:-python:3.11-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

engine=${MLOPS_IMAGE_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    die "no container engine: neither docker (an engine answering) nor podman found; on Debian: apt-get install podman runc"
  fi
fi

# podman as this machine runs it: runc, rlimits given (setting them is refused otherwise), the host network.
podman_() {
  local runtime
  runtime=$(command -v runc || echo /usr/sbin/runc)
  podman --runtime "$runtime" "$@"
}
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=65536
nofile=$((nofile < 65536 ? nofile : 65536))
nproc=$((nproc < 32768 ? nproc : 32768))
PODMAN_LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
export PODMAN_LIMITS

# The local base: Debian bookworm with Python 3.11 where python:3.11-slim has it (python, pip, venv), made once.
base_recipe="bookworm minbase; include python3 python3-venv python-is-python3 ca-certificates; apt keeps no cache; v2"
local_base() {
  local key name dir
  key=$(printf '%s' "$base_recipe" | sha256sum | cut -c1-12)
  name="localhost/mlops-base:bookworm-$key"
  if podman_ image exists "$name"; then
    log "local base $name: made before"
    echo "$name"
    return
  fi
  command -v debootstrap >/dev/null 2>&1 || die "no base image and no debootstrap to make one: apt-get install debootstrap"
  dir=$(mktemp -d)
  log "making the local base $name (debootstrap bookworm from $mirror)"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$dir/rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1; then
    tail -20 "$dir/debootstrap.log" >&2
    rm -rf "$dir"
    die "debootstrap failed (log above)"
  fi
  rm -rf "$dir/rootfs/var/lib/apt/lists/"* "$dir/rootfs/var/cache/apt/"*.bin
  # As Debian's published images do: apt keeps no package cache or downloaded packages in a layer.
  cat >"$dir/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  tar -C "$dir/rootfs" -c . | podman_ import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$name" >/dev/null
  rm -rf "$dir"
  echo "$name"
}

started=$SECONDS
if [ "$engine" = docker ]; then
  log "building $tag with docker (base ${MLOPS_IMAGE_BASE:-$python_image})"
  docker build --build-arg "PYTHON_IMAGE=${MLOPS_IMAGE_BASE:-$python_image}" -t "$tag" "$root" >&2
else
  base=${MLOPS_IMAGE_BASE:-}
  if [ -z "$base" ]; then
    if podman_ image exists "$python_image"; then
      base=$python_image
    elif timeout 60 podman_ pull --quiet "$python_image" >/dev/null 2>&1; then
      base=$python_image
    else
      log "cannot pull $python_image (no registry reachable): a local base instead"
      base=$(local_base)
    fi
  fi
  ca=/etc/ssl/certs/ca-certificates.crt
  cert_args=()
  if [ -f "$ca" ]; then
    # Another path than the image's own bundle: mounting over it would break the ca-certificates package.
    cert_args=(--volume "$ca:/run/mlops-host-ca.crt:ro" --build-arg PIP_CERT=/run/mlops-host-ca.crt)
  fi
  log "building $tag with podman (base $base)"
  podman_ build --network host "${PODMAN_LIMITS[@]}" "${cert_args[@]}" --build-arg "PYTHON_IMAGE=$base" \
    --tag "$tag" "$root" >&2
fi
log "built $tag in $((SECONDS - started))s"
echo "$tag"
