# The SuperLink and SuperNode images of fl-sim. Build them with scripts/build_images.sh, which first
# fills deploy/wheelhouse/ with the wheels of every pinned dependency; both kinds of base install
# exactly those wheels, with no index:
#
#   BASE_IMAGE=flwr/<role>:1.42.0-py3.11-ubuntu24.04  Flower's official image (the default; needs
#                                                      Docker Hub)
#   BASE_IMAGE=fl-sim-base:local                       deploy/base.Dockerfile, made from Debian's
#                                                      packages (scripts/build_images.sh --offline)
#   ROLE=superlink  the SuperLink; it runs the ServerApp (strategy and attacker) as its subprocess
#   ROLE=supernode  a SuperNode; it runs the ClientApp as its subprocess
#
# The app's own code is not baked in: `flwr run` ships it (as a FAB) to the SuperLink, which hands
# it to the SuperNodes. The containers run as `app` (uid 49999), in /app.
ARG ROLE=supernode
ARG FLWR_VERSION=1.42.0
ARG BASE_IMAGE=flwr/${ROLE}:${FLWR_VERSION}-py3.11-ubuntu24.04

FROM ${BASE_IMAGE} AS install
COPY --chown=app:app deploy/wheelhouse /tmp/wheelhouse
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
        -r /tmp/wheelhouse/requirements.txt

# Only the environment leaves the install stage: the wheelhouse is not in the image.
FROM ${BASE_IMAGE}
COPY --from=install --chown=app:app /python/venv /python/venv
ARG ROLE
USER root
RUN ln -s "/python/venv/bin/flower-${ROLE}" /usr/local/bin/flower-entrypoint
USER app
WORKDIR /app
# Every dependency is in the image: the SuperLink must not try to install an app's from PyPI per run.
ENV FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
ENTRYPOINT ["flower-entrypoint"]
