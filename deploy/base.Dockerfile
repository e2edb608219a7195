# An offline stand-in for Flower's base image (flwr/base), for machines that reach no image
# registry: Debian's own Python 3.11 in a virtual environment at /python/venv, a non-root user
# `app` (uid 49999) with its home and work directory /app: the layout of Flower's official images,
# without Flower (the Dockerfile installs it from the same wheelhouse as everything else).
#
# Its FROM is a Debian root file system imported into Docker (scripts/build_images.sh --offline
# makes it with debootstrap); apt inside the build reaches Debian's mirror.
ARG DEBIAN_IMAGE=fl-sim-debian:bookworm
FROM ${DEBIAN_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get -y --no-install-recommends install python3 python3-venv libsqlite3-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --no-create-home --home-dir /app -c "" --uid 49999 app \
    && mkdir -p /app && chown app:app /app \
    && python3 -m venv /python/venv && chown -R app:app /python/venv

ENV PATH=/python/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONIOENCODING=UTF-8 \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    HOME=/app
WORKDIR /app
USER app
