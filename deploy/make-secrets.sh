#!/bin/sh
# Writes the random secrets docker-compose.yml reads (deploy/secrets/*), keeping existing ones.
# Compose bind-mounts file secrets with their host mode, and each service reads them as its
# own unprivileged user: so the files are 0644 and the directory 0700 (the host's other users
# cannot enter it).
set -eu
cd "$(dirname "$0")/secrets"
chmod 0700 .
for name in db_superuser_password db_ingester_password db_dashboard_password db_rules_password \
    credential_key; do
  if [ ! -s "$name" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' >"$name"
  fi
  chmod 0644 "$name"
done
for name in mqtt_ingester_1_password mqtt_ingester_2_password mqtt_rules_password; do
  if [ -s "$name" ]; then chmod 0644 "$name"; else
    echo "write the password of \`villagetwin devices service-account\` into deploy/secrets/$name" >&2
  fi
done
