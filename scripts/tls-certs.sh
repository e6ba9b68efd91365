#!/usr/bin/env bash
# Make TLS credentials for trying and testing migration over TLS, with
# certtool (gnutls-bin).  Usage: scripts/tls-certs.sh OUTDIR
#
# Each directory is what --tls-creds takes (QEMU's file names):
#   OUTDIR/server         destination: ca-cert.pem, server-cert.pem, server-key.pem
#                         (for localhost and 127.0.0.1; ::1 too)
#   OUTDIR/client         source: ca-cert.pem, client-cert.pem, client-key.pem
#   OUTDIR/psk, psk-other keys.psk with the same identity, different keys
# and, for the refusal tests, credentials that must fail:
#   OUTDIR/client-otherca source that trusts another CA (and has its client cert)
#   OUTDIR/client-nocert  source with the right CA and no certificate
#   OUTDIR/server-wrongname, server-expired, server-notyet
#                         destination certificates signed by the right CA but
#                         for another name, expired in 2001, valid from 2099
# Keys are ECDSA P-256: quick to make and to use.  Test material only.
set -euo pipefail
out=${1:?usage: $0 OUTDIR}
command -v certtool >/dev/null || { echo "certtool missing: install gnutls-bin (scripts/deps.sh)" >&2; exit 69; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }

# ca NAME CN: a self-signed CA in $tmp/NAME-{cert,key}.pem
ca() {
	key "$tmp/$1-key.pem"
	printf 'cn = "%s"\nca\ncert_signing_key\nexpiration_days = 3650\n' "$2" >"$tmp/$1.info"
	certtool --generate-self-signed --load-privkey "$tmp/$1-key.pem" --template "$tmp/$1.info" \
		--outfile "$tmp/$1-cert.pem" 2>/dev/null
}

# cert DIR SIDE CA TEMPLATE-LINES: DIR/SIDE-{cert,key}.pem signed by CA, and CA's cert as DIR/ca-cert.pem
cert() {
	local dir=$out/$1 side=$2 ca=$3; shift 3
	mkdir -p "$dir"
	key "$dir/$side-key.pem"
	printf '%s\n' "$@" >"$tmp/$1.info"
	certtool --generate-certificate --load-privkey "$dir/$side-key.pem" \
		--load-ca-certificate "$tmp/$ca-cert.pem" --load-ca-privkey "$tmp/$ca-key.pem" \
		--template "$tmp/$1.info" --outfile "$dir/$side-cert.pem" 2>/dev/null
	cp "$tmp/$ca-cert.pem" "$dir/ca-cert.pem"
}

ca ca "ferry test CA"
ca other "another CA"
server=('cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' 'ip_address = "::1"'
	tls_www_server signing_key encryption_key)
client=('cn = "ferry-source"' tls_www_client signing_key)
cert server server ca "${server[@]}" 'expiration_days = 3650'
cert client client ca "${client[@]}" 'expiration_days = 3650'
cert client-otherca client other "${client[@]}" 'expiration_days = 3650'
mkdir -p "$out/client-nocert"
cp "$tmp/ca-cert.pem" "$out/client-nocert/ca-cert.pem"
cert server-wrongname server ca 'cn = "wrong.example"' 'dns_name = "wrong.example"' \
	tls_www_server signing_key encryption_key 'expiration_days = 3650'
cert server-expired server ca "${server[@]}" 'activation_date = "2000-01-01 00:00:00 UTC"' \
	'expiration_date = "2001-01-01 00:00:00 UTC"'
cert server-notyet server ca "${server[@]}" 'activation_date = "2099-01-01 00:00:00 UTC"' \
	'expiration_date = "2100-01-01 00:00:00 UTC"'

# PSK: 32 random bytes in hex under the identity "ferry" (psktool writes the same format).
mkdir -p "$out/psk" "$out/psk-other"
echo "ferry:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$out/psk/keys.psk"
echo "ferry:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$out/psk-other/keys.psk"
chmod 600 "$out"/*/*key* "$out"/psk*/keys.psk
