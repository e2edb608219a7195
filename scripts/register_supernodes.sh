#!/usr/bin/env bash
# SuperNode authentication keys for docker-compose.auth.yml: generate one key pair per SuperNode, and
# register public keys with a running SuperLink through Flower's CLI (`flwr supernode register`).
#
#   scripts/register_supernodes.sh generate [DIR] [N]                # key pairs supernode-0 .. supernode-(N-1)
#   scripts/register_supernodes.sh register CONNECTION [DIR] [I ...] # register supernode-I.pub (default: every one)
#
# DIR (default deploy/supernode-keys; git ignores the keys there) receives supernode-I, the private key
# (OpenSSH format, ECDSA on NIST P-384, no passphrase: `ssh-keygen -t ecdsa -b 384`) that the SuperNode
# container supernode-I reads (mounted read-only), and supernode-I.pub, its public key, which the SuperLink
# must know before that SuperNode connects. N defaults to 3 (the compose file's SuperNodes); existing
# key pairs are kept. CONNECTION is a SuperLink connection of the flwr CLI's $FLWR_HOME/config.toml over
# TLS (SuperNode authentication needs TLS), e.g. local-deployment-tls of deploy/flwr-home:
#
#   FLWR_HOME=deploy/flwr-home scripts/register_supernodes.sh register local-deployment-tls
#
# The SuperLink keeps registrations in its database (in memory unless it was started with --database):
# register again after it restarts. `flwr supernode list CONNECTION` shows the registered nodes,
# `flwr supernode unregister NODE_ID CONNECTION` removes one. Needs ssh-keygen (generate) and flwr on
# the PATH (register; FLWR overrides it).
set -euo pipefail

usage() { sed -n '5,6p' "$0" | sed 's/^#  */usage: /' >&2; exit 2; }
[[ $# -ge 1 ]] || usage
action="$1"; shift

case "$action" in
    generate)
        if [[ $# -eq 1 && "$1" =~ ^[0-9]+$ ]]; then set -- deploy/supernode-keys "$1"; fi  # `generate N`
        dir="${1:-deploy/supernode-keys}"
        nodes="${2:-3}"
        [[ "$nodes" =~ ^[0-9]+$ ]] || usage
        command -v ssh-keygen >/dev/null || { echo "register_supernodes.sh: ssh-keygen is missing (apt-get install openssh-client)" >&2; exit 2; }
        mkdir -p "$dir"
        chmod 700 "$dir"  # only the owner (and the Docker daemon, which mounts the files) reaches the keys
        for ((i = 0; i < nodes; i++)); do
            key="$dir/supernode-$i"
            if [[ -f "$key" && -f "$key.pub" ]]; then
                echo "kept $key" >&2
                continue
            fi
            rm -f "$key" "$key.pub"
            ssh-keygen -q -t ecdsa -b 384 -N "" -C "fl-sim supernode-$i" -f "$key"
            # The SuperNode container runs as its own user (uid 49999), which must read the file mounted
            # into it; the folder (mode 700) keeps other users of this machine out.
            chmod 644 "$key"
            echo "generated $key and $key.pub" >&2
        done
        ;;
    register)
        [[ $# -ge 1 ]] || usage
        connection="$1"
        dir="${2:-deploy/supernode-keys}"
        shift $(($# < 2 ? $# : 2))
        flwr="${FLWR:-flwr}"
        command -v "$flwr" >/dev/null || { echo "register_supernodes.sh: '$flwr' not on PATH (.venv/bin)" >&2; exit 2; }
        if [[ $# -gt 0 ]]; then
            keys=()
            for i in "$@"; do keys+=("$dir/supernode-$i.pub"); done
        else
            shopt -s nullglob
            keys=("$dir"/supernode-*.pub)
            [[ ${#keys[@]} -gt 0 ]] || { echo "register_supernodes.sh: no supernode-*.pub in $dir (run generate first)" >&2; exit 2; }
        fi
        for key in "${keys[@]}"; do
            [[ -f "$key" ]] || { echo "register_supernodes.sh: $key is missing (run generate first)" >&2; exit 2; }
            echo "+ $flwr supernode register $key $connection" >&2
            "$flwr" supernode register "$key" "$connection"
        done
        ;;
    *) usage ;;
esac
