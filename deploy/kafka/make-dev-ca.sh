#!/usr/bin/env bash
# A development CA and the TLS material the compose stack's Kafka cluster mounts (docs/security.md#kafka-tls-and-sasl).
#
#   deploy/kafka/make-dev-ca.sh           # once, before `docker compose up`; keeps what exists
#   deploy/kafka/make-dev-ca.sh --force   # a new CA and new certificates (restart the stack afterwards)
#
# Writes, under deploy/kafka/certs/ (git-ignored; never commit it; KAFKA_CERTS_DIR=DIR writes there instead):
#   ca/ca.crt               the CA certificate: every client and broker trusts it (public)
#   ca-private/ca.key       the CA's key: signs the others, mounted nowhere
#   kafka-N/tls.pem         broker N's key (unencrypted PKCS#8) and certificate chain, the PEM keystore
#                           Kafka reads with ssl.keystore.type=PEM; valid for kafka-N, localhost and
#                           127.0.0.1, as server and as client (brokers authenticate to each other with it)
#   admin/tls.pem           a client certificate for the kafka-init job, which creates the SCRAM user
# The PEM files are world-readable because the broker image runs as its own user (uid 1000): this is a
# development CA. In production, use your own PKI and mount the files readable by that user only.
set -euo pipefail

BROKERS=3
CA_DAYS=3650
LEAF_DAYS=825
OUT="${KAFKA_CERTS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/certs}"

if [[ $# -gt 1 || ( $# -eq 1 && "$1" != "--force" ) ]]; then
  echo "usage: $0 [--force]" >&2
  exit 2
fi
if [[ $# -eq 0 && -e "$OUT/ca/ca.crt" ]]; then
  echo "$OUT already holds a CA; keeping it (--force makes a new CA and new certificates)"
  exit 0
fi
command -v openssl > /dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }

rm -rf "$OUT/ca" "$OUT/ca-private" "$OUT/admin" "$OUT"/kafka-[0-9]*
mkdir -p "$OUT/ca" "$OUT/ca-private"
chmod 700 "$OUT/ca-private"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# EC P-256 keys: small, fast, and read by both Java (Kafka) and OpenSSL (librdkafka).
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2> /dev/null; }

new_key "$OUT/ca-private/ca.key"
chmod 600 "$OUT/ca-private/ca.key"
openssl req -x509 -new -key "$OUT/ca-private/ca.key" -sha256 -days "$CA_DAYS" \
  -subj "/O=analytics-platform dev/CN=analytics-platform dev Kafka CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$OUT/ca/ca.crt"

# leaf NAME EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: NAME/tls.pem, the key followed by the certificate and the CA.
leaf() {
  local name="$1" usage="$2" names="${3:-}"
  mkdir -p "$OUT/$name"
  new_key "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/O=analytics-platform dev/CN=$name" -out "$work/$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    if [[ -n "$names" ]]; then echo "subjectAltName=$names"; fi
  } > "$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$OUT/ca/ca.crt" -CAkey "$OUT/ca-private/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$LEAF_DAYS" -extfile "$work/$name.ext" \
    -out "$work/$name.crt" 2> /dev/null
  cat "$work/$name.key" "$work/$name.crt" "$OUT/ca/ca.crt" > "$OUT/$name/tls.pem"
  chmod 644 "$OUT/$name/tls.pem"
  openssl verify -CAfile "$OUT/ca/ca.crt" "$work/$name.crt" > /dev/null
}

for node in $(seq 1 "$BROKERS"); do
  leaf "kafka-$node" "serverAuth,clientAuth" "DNS:kafka-$node,DNS:localhost,IP:127.0.0.1"
done
leaf admin "clientAuth"
chmod 644 "$OUT/ca/ca.crt"

echo "wrote $OUT: ca/ca.crt (trust this), kafka-1..$BROKERS/tls.pem, admin/tls.pem; the CA key stays in ca-private/"
