# The SuperLink and SuperNode images of fl-sim. Build them with scripts/build_images.sh: it fills
# deploy/wheelhouse/ with the wheels of every pinned dependency and serves that folder on the host's
# loopback while `docker build --network host` runs, so that the images install exactly those wheels,
# with no index, and the 3 GB of wheels never enter the build context or a layer (one layer of
# dependencies, about 5.5 GB, where a COPY of the wheelhouse cost 3 GB more and a second stage 5.5 GB more).
#
#   BASE_IMAGE=flwr/<role>:1.42.0-py3.11-ubuntu24.04  Flower's official image (the default; needs
#                                                      Docker Hub)
#   BASE_IMAGE=fl-sim-base:local                       deploy/base.Dockerfile, made from Debian's
#                                                      packages (scripts/build_images.sh --offline)
#   WHEELHOUSE=http://127.0.0.1:PORT                   where scripts/build_images.sh serves the wheels
#   WHEELHOUSE_DIGEST=...                              a digest of the wheels and requirements: new ones, new layer
#   ROLE=superlink  the SuperLink; it runs the ServerApp (strategy and attacker) as its subprocess
#   ROLE=supernode  a SuperNode; it runs the ClientApp as its subprocess
#
# The app's own code is not baked in: `flwr run` ships it (as a FAB) to the SuperLink, which hands
# it to the SuperNodes. The containers run as `app` (uid 49999), in /app.
ARG ROLE=supernode
ARG FLWR_VERSION=1.42.0
ARG BASE_IMAGE=flwr/${ROLE}:${FLWR_VERSION}-py3.11-ubuntu24.04

FROM ${BASE_IMAGE}
ARG WHEELHOUSE
ARG WHEELHOUSE_DIGEST
RUN test -n "${WHEELHOUSE}" || { echo "build the images with scripts/build_images.sh (it serves the wheels)" >&2; exit 1; }; \
    echo "wheelhouse ${WHEELHOUSE_DIGEST}" && python -m pip install --no-cache-dir --no-index --find-links "${WHEELHOUSE}/" \
        -r "${WHEELHOUSE}/requirements.txt"
# ROLE comes after the install, so that both roles on one base share its layer.
ARG ROLE
USER root
RUN ln -s "/python/venv/bin/flower-${ROLE}" /usr/local/bin/flower-entrypoint
USER app
WORKDIR /app
# Every dependency is in the image: the SuperLink must not try to install an app's from PyPI per run.
ENV FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
ENTRYPOINT ["flower-entrypoint"]
