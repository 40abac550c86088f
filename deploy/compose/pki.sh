#!/bin/sh
# The compose stack's fleet PKI, made once in the `pki` volume: a CA, the collector's
# certificate (host `collector`) and one bundle per agent. The relay agent's certificate
# also serves TLS for `relay-sea-1`, the name probes use to reach its relay.
set -eu
if [ -f /pki/ca/ca.pem ]; then
    echo "fleet PKI already in /pki"
    exit 0
fi
ca="stallwatch-collector ca"
$ca init --dir /pki/ca
$ca issue-collector --dir /pki/ca collector localhost
mkdir -p /pki/agents
$ca issue-agent --dir /pki/ca relay-sea-1 --region sea --network-type fiber \
    --relay-host relay-sea-1 --out /pki/agents/relay-sea-1.bundle.pem
$ca issue-agent --dir /pki/ca sea-4g-1 --region sea --network-type 4g \
    --out /pki/agents/sea-4g-1.bundle.pem
$ca issue-agent --dir /pki/ca latam-wifi-1 --region latam --network-type wifi \
    --out /pki/agents/latam-wifi-1.bundle.pem
# The collector and agent images run as uid 65532. In a real fleet the CA key stays offline.
chown -R 65532:65532 /pki
