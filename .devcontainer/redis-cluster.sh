#!/usr/bin/env bash
# A Redis Cluster in one container (compose profile "cluster"): 3 masters and
# 3 replicas on ports 7000-7005, announced as 127.0.0.1 so that a client on
# the host, through the published ports, can follow MOVED redirections.
set -euo pipefail
nodes=()
for port in 7000 7001 7002 7003 7004 7005; do
  mkdir -p "/data/$port"
  redis-server --port "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
    --cluster-node-timeout 1000 --cluster-announce-ip "${ANNOUNCE_IP:-127.0.0.1}" \
    --repl-diskless-sync-delay 0 --save "" --appendonly no --dir "/data/$port" --daemonize yes
  nodes+=("127.0.0.1:$port")
done
for port in 7000 7001 7002 7003 7004 7005; do
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
done
if ! redis-cli -p 7000 cluster info | grep -q '^cluster_state:ok'; then
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes
fi
exec tail -f /dev/null
