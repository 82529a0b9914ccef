#!/usr/bin/env bash
# Build the inferbench GPU image with Docker, then convert it to an Apptainer SIF at
# images/inferbench_<IMAGE_VERSION>.sif, the path `container:` in config.yaml names by default,
# so that `snakemake --cores 1 --use-singularity` then needs no --config.
#
# Every KEY=VALUE of envs/versions.env is passed as --build-arg, so that file is the one
# place versions are changed. The build context is a temporary copy holding only what the
# Dockerfile needs (pyproject.toml, README.md, workflow/, envs/, docker/Dockerfile): results/,
# .snakemake/ and old *.sif files never reach the Docker daemon.
#
# Pushing the result to a registry (not done by this script):
#   Docker/OCI registry:   docker tag  inferbench:TAG REGISTRY/PROJECT/inferbench:TAG
#                          docker push REGISTRY/PROJECT/inferbench:TAG
#     a GPU host then uses docker://REGISTRY/PROJECT/inferbench:TAG (Snakemake's
#     --use-apptainer pulls and converts it), or: apptainer pull docker://REGISTRY/...:TAG
#   SIF to an OCI registry (ORAS):
#                          apptainer registry login --username USER oras://REGISTRY
#                          apptainer push inferbench_TAG.sif oras://REGISTRY/PROJECT/inferbench:TAG
#     (or: oras push REGISTRY/PROJECT/inferbench:TAG inferbench_TAG.sif)
#     a GPU host then runs: apptainer pull oras://REGISTRY/PROJECT/inferbench:TAG
#   SIF to a Sylabs-style library:
#                          apptainer push inferbench_TAG.sif library://USER/inferbench/inferbench:TAG
# Always push a versioned tag, never `latest`: Snakemake reruns jobs when the container
# reference changes, and a moving tag hides a changed software environment.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
VERSIONS_FILE="${REPO_ROOT}/envs/versions.env"

usage() {
    cat <<EOF
Usage: docker/build.sh [options] [IMAGE[:TAG]]

Build the inferbench GPU image (docker build, with every KEY=VALUE of envs/versions.env
as --build-arg) and convert it to an Apptainer image images/inferbench_<TAG>.sif, the
path that container: in config.yaml names by default.

Arguments:
  IMAGE[:TAG]        image reference to build (default: IMAGE_NAME:IMAGE_VERSION from
                     envs/versions.env, i.e. inferbench:<version>). A name without a tag
                     gets IMAGE_VERSION as tag. Do not use 'latest'.

Options:
  --sif-dir DIR      where to write inferbench_<TAG>.sif (default: images/ in this checkout;
                     elsewhere, run Snakemake with --config container=DIR/inferbench_<TAG>.sif)
  --no-sif           only build the Docker image; skip the Apptainer conversion
  --no-cache         pass --no-cache to docker build
  --print-args       print the docker build command and exit without building
  -h, --help         show this help and exit

Requirements: a running Docker engine (docker build), and Apptainer for the SIF step
(apptainer build reads the image straight from the Docker daemon, docker-daemon://).

Push to a registry afterwards (see the header of this script for details):
  docker tag IMAGE:TAG REGISTRY/PROJECT/inferbench:TAG && docker push REGISTRY/PROJECT/inferbench:TAG
  apptainer push inferbench_TAG.sif oras://REGISTRY/PROJECT/inferbench:TAG
  apptainer push inferbench_TAG.sif library://USER/inferbench/inferbench:TAG

Example:
  docker/build.sh                       # inferbench:<IMAGE_VERSION> + images/inferbench_<IMAGE_VERSION>.sif
  docker/build.sh --sif-dir /data/images myregistry.example.org/ml/inferbench:0.2.0-ngc26.04
EOF
}

die() {
    echo "build.sh: $*" >&2
    exit 1
}

sif_dir="${REPO_ROOT}/images"
make_sif=1
print_only=0
no_cache=()
image_ref=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --sif-dir)
            [[ $# -ge 2 ]] || die "--sif-dir needs a directory"
            sif_dir="$2"
            shift 2
            ;;
        --sif-dir=*)
            sif_dir="${1#--sif-dir=}"
            shift
            ;;
        --no-sif)
            make_sif=0
            shift
            ;;
        --no-cache)
            no_cache=(--no-cache)
            shift
            ;;
        --print-args)
            print_only=1
            shift
            ;;
        -*)
            die "unknown option: $1 (see --help)"
            ;;
        *)
            [[ -z "${image_ref}" ]] || die "only one IMAGE[:TAG] argument is allowed (see --help)"
            image_ref="$1"
            shift
            ;;
    esac
done

[[ -f "${VERSIONS_FILE}" ]] || die "missing ${VERSIONS_FILE}"

# Read envs/versions.env: KEY=VALUE lines, '#' comments, blank lines. Nothing is executed.
build_args=()
declare -A versions=()
while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ -z "${line//[[:space:]]/}" || "${line}" =~ ^[[:space:]]*# ]] && continue
    if [[ ! "${line}" =~ ^([A-Z][A-Z0-9_]*)=([^[:space:]\"\'#]+)$ ]]; then
        die "malformed line in envs/versions.env (want KEY=VALUE): ${line}"
    fi
    versions["${BASH_REMATCH[1]}"]="${BASH_REMATCH[2]}"
    build_args+=(--build-arg "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}")
done < "${VERSIONS_FILE}"

for key in IMAGE_NAME IMAGE_VERSION BASE_IMAGE NGC_PYTORCH_TAG; do
    [[ -n "${versions[${key}]:-}" ]] || die "envs/versions.env has no ${key}"
done

# IMAGE[:TAG] -> name and tag (a ':' after the last '/' separates the tag; registry ports
# like host:5000/name are left alone).
if [[ -z "${image_ref}" ]]; then
    image_ref="${versions[IMAGE_NAME]}:${versions[IMAGE_VERSION]}"
fi
last_part="${image_ref##*/}"
if [[ "${last_part}" == *:* ]]; then
    image_name="${image_ref%:*}"
    image_tag="${image_ref##*:}"
else
    image_name="${image_ref}"
    image_tag="${versions[IMAGE_VERSION]}"
fi
[[ -n "${image_name}" && -n "${image_tag}" ]] || die "cannot parse image reference: ${image_ref}"
[[ "${image_tag}" != "latest" ]] || die "refusing the tag 'latest': use a versioned tag (see --help)"
[[ "${image_ref}" != *@* ]] || die "give IMAGE[:TAG], not a digest"
image="${image_name}:${image_tag}"
sif_path="${sif_dir%/}/inferbench_${image_tag}.sif"

if [[ "${image_tag}" != "${versions[IMAGE_VERSION]}" ]]; then
    echo "build.sh: note: tag ${image_tag} differs from IMAGE_VERSION=${versions[IMAGE_VERSION]} in envs/versions.env" >&2
fi

# Record the source revision as a label (with -dirty for uncommitted changes).
revision="$(git -C "${REPO_ROOT}" rev-parse --verify -q HEAD 2>/dev/null)" || revision="unknown"
if [[ -n "$(git -C "${REPO_ROOT}" status --porcelain 2>/dev/null || true)" ]]; then
    revision="${revision}-dirty"
fi

build_cmd=(docker build "${no_cache[@]}" "${build_args[@]}"
    --label "org.opencontainers.image.revision=${revision}"
    --tag "${image}" --file docker/Dockerfile)

if [[ "${print_only}" -eq 1 ]]; then
    printf '%q ' "${build_cmd[@]}" "<context: pyproject.toml README.md workflow/ envs/ docker/Dockerfile>"
    echo
    if [[ "${make_sif}" -eq 1 ]]; then
        printf '%q ' apptainer build "${sif_path}" "docker-daemon://${image}"
        echo
    fi
    exit 0
fi

command -v docker > /dev/null || die "docker not found (a Docker engine is needed to build)"
docker info > /dev/null 2>&1 || die "cannot reach the Docker engine (is the daemon running, may you use it?)"
if [[ "${make_sif}" -eq 1 ]]; then
    command -v apptainer > /dev/null || die "apptainer not found; install it or pass --no-sif"
    mkdir -p "${sif_dir}"
    [[ ! -e "${sif_path}" ]] || die "${sif_path} exists; remove it or pick another tag (tags are never reused)"
fi
for f in pyproject.toml README.md workflow envs docker/Dockerfile; do
    [[ -e "${REPO_ROOT}/${f}" ]] || die "missing ${REPO_ROOT}/${f}"
done

# Minimal build context.
context="$(mktemp -d "${TMPDIR:-/tmp}/inferbench-build.XXXXXX")"
trap 'rm -rf "${context}"' EXIT
mkdir -p "${context}/docker"
cp "${REPO_ROOT}/pyproject.toml" "${REPO_ROOT}/README.md" "${context}/"
cp "${REPO_ROOT}/docker/Dockerfile" "${context}/docker/"
cp -R "${REPO_ROOT}/envs" "${context}/envs"
cp -R "${REPO_ROOT}/workflow" "${context}/workflow"
find "${context}" \( -name '__pycache__' -o -name '*.egg-info' -o -name '.snakemake' \) -prune -exec rm -rf {} +

echo "build.sh: building ${image} from ${versions[BASE_IMAGE]}:${versions[NGC_PYTORCH_TAG]}" >&2
(cd "${context}" && "${build_cmd[@]}" .)

if [[ "${make_sif}" -eq 1 ]]; then
    echo "build.sh: converting ${image} to ${sif_path}" >&2
    apptainer build "${sif_path}" "docker-daemon://${image}"
    echo "build.sh: done: docker image ${image}, Apptainer image ${sif_path}" >&2
    if [[ "$(cd "$(dirname "${sif_path}")" && pwd)/$(basename "${sif_path}")" == "${REPO_ROOT}/images/inferbench_${versions[IMAGE_VERSION]}.sif" ]]; then
        echo "build.sh: config.yaml's container: names this file; run: snakemake --cores 1 --use-singularity" >&2
    else
        echo "build.sh: run: snakemake --cores 1 --use-singularity --config container=${sif_path}" >&2
    fi
else
    echo "build.sh: done: docker image ${image} (no SIF: --no-sif)" >&2
fi
