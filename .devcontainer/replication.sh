#!/usr/bin/env bash
# Runs once, when the primary's data directory is created: lets the Part 4
# replica (compose profile "replica") connect for streaming replication,
# with the same password as everybody else.
set -euo pipefail
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
