#!/bin/sh
# One-shot, as root in the broker's own image (compose service `broker-auth`): copies the
# broker's auth files, generated 0600 by the host user from the device registry, into the
# volume the broker reads, owned by the user Mosquitto drops to (`mosquitto`), 0700/0600.
# Without this the broker, once it has dropped privileges, cannot read a file that the host
# user wrote 0600. The copy is the broker's own and writable: the dynamic-security plugin
# rewrites its JSON file (in this directory) after each live $CONTROL change. The host's file
# is regenerated from the registry after every change, so rerunning this loses nothing.
set -eu
SRC=${VT_AUTH_SRC:-/auth-src}
DST=${VT_AUTH_DST:-/mosquitto/config/auth}
OWNER=${VT_AUTH_OWNER:-mosquitto}
mkdir -p "$DST"
# Replace what is there, so a revoked device's file entry does not survive.
find "$DST" -mindepth 1 -delete
cp -R "$SRC"/. "$DST"/
chown -R "$OWNER:$OWNER" "$DST"
chmod 0700 "$DST"
find "$DST" -mindepth 1 -type d -exec chmod 0700 {} +
find "$DST" -type f -exec chmod 0600 {} +
echo "broker auth files installed in $DST for $OWNER: $(find "$DST" -type f | wc -l) file(s)"
