#!/usr/bin/env bash
# Generate a private CA and a SuperLink server certificate for TLS between the flwr CLI, the
# SuperLink and the SuperNodes (openssl only; nothing leaves this machine).
#
#   scripts/generate_certs.sh [DIR] [EXTRA_HOST ...]
#
# DIR (default deploy/certs) receives ca.crt (give it to SuperNodes and the flwr CLI as root
# certificate), ca.key (keep it private), server.pem and server.key (the SuperLink's). The
# server certificate is valid for localhost, 127.0.0.1, ::1, the compose service name
# "superlink", and every EXTRA_HOST (a DNS name or an IP address).
set -euo pipefail

dir="${1:-deploy/certs}"
shift || true
mkdir -p "$dir"
cd "$dir"

san="DNS:localhost,DNS:superlink,IP:127.0.0.1,IP:::1"
for host in "$@"; do
    if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then san+=",IP:$host"; else san+=",DNS:$host"; fi
done

openssl genrsa -out ca.key 4096 2>/dev/null
openssl req -x509 -new -nodes -key ca.key -sha256 -days 365 -subj "/CN=fl-sim local CA" -out ca.crt
openssl genrsa -out server.key 4096 2>/dev/null
openssl req -new -key server.key -subj "/CN=superlink" -out server.csr
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
    -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 600 ca.key
chmod 644 server.key  # the SuperLink container runs as its own user, which must read it
echo "certificates in $(pwd): ca.crt server.pem server.key (valid for $san)"
