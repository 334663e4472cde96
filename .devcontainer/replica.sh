#!/usr/bin/env bash
# The Part 4 replica (compose profile "replica"): a streaming copy of the
# "postgres" service, applying every commit REPLICA_DELAY_MS late, so that
# it lags the way the lab needs.
set -euo pipefail
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
  until pg_isready -q -h postgres -U postgres; do sleep 1; done
  # -R: standby.signal and how to reach the primary; a slot keeps the WAL
  # the replica still needs.
  pg_basebackup -h postgres -U postgres -D "$data" -R -X stream -C -S lab_replica
  echo "recovery_min_apply_delay = '${REPLICA_DELAY_MS:-300}ms'" >> "$data/postgresql.auto.conf"
fi
chmod 700 "$data"
# hot_standby_feedback: the primary keeps the row versions the replica's
# readers still see, so that replaying its cleanup never ends their sessions
# ("conflict with recovery") while labs come and go.
exec postgres -D "$data" -c hot_standby=on -c hot_standby_feedback=on
