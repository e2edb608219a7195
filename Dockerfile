# syntax=docker/dockerfile:1
# fl-sim on Flower's official images, pinned to the flwr version this project installs.
#
#   --build-arg ROLE=superlink  the SuperLink; it runs the ServerApp (this app's strategy and
#                               attacker) as its subprocess, so it needs the project's dependencies
#   --build-arg ROLE=supernode  a SuperNode; it runs the ClientApp as its subprocess, likewise
#
# The base image's entrypoint (flower-superlink or flower-supernode) is kept. The app's own code
# is not baked in: `flwr run . local-deployment` ships it (as a FAB) to the SuperLink, which hands
# it to the SuperNodes. Torch comes from PyTorch's CPU index by default; for a GPU server build
# with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (docker-compose.gpu.yml).
ARG FLWR_VERSION=1.41.0
ARG FLWR_IMAGE_SUFFIX=py3.11-ubuntu24.04
ARG ROLE=supernode
FROM flwr/${ROLE}:${FLWR_VERSION}-${FLWR_IMAGE_SUFFIX}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY --chown=app:app pyproject.toml .
# Everything pyproject.toml needs except Flower itself (the base image has it) and Ray (only the
# Simulation Engine uses it).
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if not d.startswith(('flwr', 'ray'))))" > requirements.txt \
    && python -m pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements.txt
