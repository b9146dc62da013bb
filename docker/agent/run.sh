#!/bin/sh
# The demo agent's entrypoint: enrol once, then run the daemon. The agent's identity,
# credential, outbox and source state live in /state (a volume), so a restarted
# container resumes where it stopped and never enrols twice.
set -eu
cd /app
cli() { node_modules/.bin/tsx clients/cli/main.ts "$@"; }

if [ ! -s /state/admin-key ]; then
  # An operator's admin key for chain "default", made directly in the database.
  cli keys create --for-chain default --scopes append,read,admin --name docker-demo --database-url "$DATABASE_URL" \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).token))' > /state/admin-key.tmp
  mv /state/admin-key.tmp /state/admin-key
fi
if [ ! -e /state/agent/credential.json ]; then
  AUDIT_LEDGER_ENROLMENT_TOKEN=$(AUDIT_LEDGER_API_KEY=$(cat /state/admin-key) cli agents token --ttl 600)
  export AUDIT_LEDGER_ENROLMENT_TOKEN
fi
echo "admin API key for the demo (chain default): /state/admin-key in the agent container"
exec node_modules/.bin/tsx clients/cli/main.ts agent --config docker/agent/agent.yaml
