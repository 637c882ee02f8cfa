#!/usr/bin/env bash
# Run Palisade's whole test suite, bringing up what it needs first:
#   - Redis and MariaDB (installed from Debian's packages and started when missing),
#   - a Python venv with moto[server] and boto3 (the AWS emulator and the estate seeder)
#     and schemathesis (which fuzzes the API from its OpenAPI document),
#   - Chromium and chromedriver (the web GUI's end-to-end test),
# then `cargo test` over the workspace: unit tests, store contract tests and the
# integration tests, which start the real `palisade` binary against their own moto.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# --- Redis -------------------------------------------------------------------------------
command -v redis-server >/dev/null || { say "installing redis-server"; apt_install redis-server redis-tools; }
# the cluster tests also start a Redis of their own and talk to it with redis-cli
command -v redis-cli >/dev/null || { say "installing redis-tools"; apt_install redis-tools; }
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting redis on 127.0.0.1:6379"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/palisade-tests.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "redis is not answering on 127.0.0.1:6379" >&2; exit 1; }

# --- MariaDB -----------------------------------------------------------------------------
command -v mariadbd >/dev/null || command -v mysqld >/dev/null || { say "installing mariadb-server"; apt_install mariadb-server mariadb-client; }
if ! mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
  say "starting mariadb on 127.0.0.1:3306"
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd || command -v mysqld)" -- --user=mysql
  for _ in $(seq 100); do mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null || { echo "mariadb is not answering on 127.0.0.1:3306" >&2; exit 1; }
# the cluster tests make scratch databases with the mysql client
command -v mysql >/dev/null || { say "installing mariadb-client"; apt_install mariadb-client; }
mysql -h 127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS test" >/dev/null

# --- headless Chromium for the web GUI's end-to-end test -----------------------------------
# the test drives Debian's chromium through chromedriver (W3C WebDriver) and fails when either is missing
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { say "installing chromium and chromium-driver"; apt_install chromium chromium-driver; }

# --- moto, boto3 and schemathesis in a venv ----------------------------------------------
venv="${PALISADE_TEST_VENV:-$HOME/.cache/palisade/test-venv}"
if ! "$venv/bin/python" -c "import moto.server, boto3, flask_cors, schemathesis.cli" >/dev/null 2>&1; then
  say "creating the test venv at $venv (moto[server], boto3, schemathesis)"
  python3 -m venv "$venv" || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "moto[server]>=5,<6" "boto3" "schemathesis>=4,<5"
fi
export PALISADE_TEST_PYTHON="$venv/bin/python"

# --- the tests ---------------------------------------------------------------------------
say "running cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
