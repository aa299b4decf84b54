#!/usr/bin/env bash
# Brings up the docker-compose cluster and writes cluster.env for the host CLI.
#   deploy/compose/up.sh            # build the image from this checkout, start, wait healthy
#   set -a; . deploy/compose/cluster.env; set +a; basin cluster status
# Environment: BASIN_IMAGE (default basin:local; set BASIN_SKIP_BUILD=1 to use it as is),
# COMPOSE_PROJECT_NAME, BASIN_*_PORT (host ports), BASIN_PROFILE (debug|release).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
export BASIN_IMAGE="${BASIN_IMAGE:-basin:local}"
if [ "${BASIN_SKIP_BUILD:-0}" != 1 ]; then
  "$HERE/../docker/build-image.sh" --profile "${BASIN_PROFILE:-release}" --tag "$BASIN_IMAGE" >/dev/null
fi
# One token per cluster, generated once, shared by every container.
if [ ! -s token.env ]; then
  umask 077
  echo "BASIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > token.env
fi
COMPOSE="docker-compose"
command -v docker-compose >/dev/null 2>&1 || COMPOSE="docker compose"
$COMPOSE up -d >&2
. ./token.env
M1=127.0.0.1:${BASIN_MASTER1_PORT:-7101}
M2=127.0.0.1:${BASIN_MASTER2_PORT:-7102}
M3=127.0.0.1:${BASIN_MASTER3_PORT:-7103}
cat > cluster.env <<ENV
BASIN_MASTER=$M1,$M2,$M3
BASIN_TOKEN=$BASIN_TOKEN
BASIN_EXTERNAL_ADDRS=1
BASIN_HTTP=http://127.0.0.1:${BASIN_MASTER1_HTTP_PORT:-9101}
BASIN_KINESIS_URL=http://127.0.0.1:${BASIN_MASTER1_HTTP_PORT:-9101}
BASIN_PG=127.0.0.1:${BASIN_PG_PORT:-5439}
BASIN_LEADER=127.0.0.1:${BASIN_LEADER_PORT:-7501}
ENV
echo "$HERE/cluster.env"
