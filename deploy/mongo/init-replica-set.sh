#!/bin/bash
# Waits for the first member to answer, then runs init-replica-set.js against it. Credentials
# stay in the environment (never on a command line, where `ps` would show them).
set -euo pipefail
FIRST="${MONGO_REPLICA_MEMBERS:-mongo:27017}"; FIRST="${FIRST%%,*}"
for _ in $(seq 1 60); do
  if mongosh --quiet "mongodb://$FIRST/admin?directConnection=true" --eval 'db.adminCommand({ ping: 1 }).ok' >/dev/null 2>&1; then
    exec mongosh --quiet "mongodb://$FIRST/admin?directConnection=true" --file /deploy/mongo/init-replica-set.js
  fi
  sleep 2
done
echo "mongo at $FIRST did not answer" >&2
exit 1
