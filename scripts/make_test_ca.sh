#!/usr/bin/env bash
# Creates a certificate authority and certificates for a keel cluster's TLS
# (docs/operations.md, "Securing a cluster"), with the openssl command line.
# For tests, demos and a first cluster; a production cluster's CA belongs to
# whoever runs its machines.
#
#   scripts/make_test_ca.sh DIR [NAME ...]
#
# Writes into DIR (created, mode 700):
#   ca.crt ca.key                  the cluster's CA (EC P-256, 10 years)
#   NAME.crt NAME.key              for each NAME (default: node1 node2 node3
#                                  client): signed by the CA, valid for
#                                  127.0.0.1 and localhost, for both server
#                                  and client use (a node is both)
# and, for tests of what must be refused:
#   expired.crt expired.key        signed by the CA, expired in 2020
#   wronghost.crt wronghost.key    signed by the CA, valid only for 10.9.9.9
#   foreign-ca.crt                 another CA, and
#   foreign.crt foreign.key        a certificate signed by it
# Keys are written mode 600: keel refuses a key file group or others may read.
# Extra names for a certificate: KEEL_TLS_SAN="IP:10.0.0.7,DNS:db1" (added
# to every NAME's certificate).
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; echo "make_test_ca.sh: give the directory to write into" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "make_test_ca.sh: openssl is not installed (apt-get install openssl)" >&2; exit 2; }

dir=$1
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(node1 node2 node3 client)
for name in "${names[@]}"; do
  case "$name" in
    *[!A-Za-z0-9_.-]*|ca|expired|wronghost|foreign|foreign-ca)
      echo "make_test_ca.sh: bad certificate name \"$name\" (letters, digits, _ . - only; not a reserved name)" >&2
      exit 2 ;;
  esac
done
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

new_ca() {  # new_ca BASENAME SUBJECT
  new_key "$dir/$1.key"
  openssl req -new -x509 -key "$dir/$1.key" -out "$dir/$1.crt" -days 3650 -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# sign NAME CA SAN [START END]: a leaf certificate for NAME signed by CA.
sign() {
  local name=$1 ca=$2 san=$3 start=${4:-} end=${5:-}
  new_key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -out "$work/$name.csr" -subj "/CN=$name"
  cat > "$work/$name.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san
EOF
  if [ -z "$start" ]; then
    openssl x509 -req -in "$work/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
      -CAserial "$work/$ca.srl" -days 825 -extfile "$work/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    return
  fi
  # A validity in the past needs `openssl ca`, which takes explicit dates.
  mkdir -p "$work/ca-db"
  : > "$work/ca-db/index.txt"
  cat > "$work/ca.cnf" <<EOF
[ ca ]
default_ca = past
[ past ]
database = $work/ca-db/index.txt
new_certs_dir = $work/ca-db
serial = $work/ca-db/serial
default_md = sha256
policy = anything
copy_extensions = none
[ anything ]
commonName = supplied
EOF
  openssl rand -hex 8 > "$work/ca-db/serial"
  openssl ca -batch -notext -config "$work/ca.cnf" -cert "$dir/$ca.crt" -keyfile "$dir/$ca.key" \
    -in "$work/$name.csr" -out "$dir/$name.crt" -startdate "$start" -enddate "$end" \
    -extfile "$work/$name.ext" 2>/dev/null
}

new_ca ca "/CN=keel test cluster CA"
san="IP:127.0.0.1,DNS:localhost${KEEL_TLS_SAN:+,$KEEL_TLS_SAN}"
for name in "${names[@]}"; do sign "$name" ca "$san"; done
sign expired ca "IP:127.0.0.1,DNS:localhost" 20200101000000Z 20200102000000Z
sign wronghost ca "IP:10.9.9.9"
new_ca foreign-ca "/CN=some other CA"
sign foreign foreign-ca "IP:127.0.0.1,DNS:localhost"
rm -f "$dir/foreign-ca.key"
chmod 600 "$dir"/*.key
chmod 644 "$dir"/*.crt
echo "make_test_ca.sh: wrote the CA and certificates for ${names[*]} into $dir"
