#!/bin/bash
# Starts mongod as a replica-set member with internal authentication. The key file comes from a
# Docker secret (read-only, owned by root); mongod insists on a file only its user can read.
set -euo pipefail
install -m 0400 -o 999 -g 999 /run/secrets/mongo_keyfile /tmp/mongo-keyfile
exec docker-entrypoint.sh mongod --replSet "${MONGO_REPLICA_SET:-rs0}" --keyFile /tmp/mongo-keyfile --bind_ip_all "$@"
