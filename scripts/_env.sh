# Shared set-up for scripts/test and scripts/demo: a project virtual environment
# and a running RabbitMQ. Sourced, not executed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROGER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {
    # $1: the extras to install, e.g. "test"
    local extras="$1" stamp
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    stamp="$VENV/.roger-installed-$extras"
    if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]"
        touch "$stamp"
    fi
}

ensure_rabbitmq() {
    if ! command -v rabbitmqctl >/dev/null 2>&1; then
        echo "RabbitMQ is not installed. Install it (Debian: apt-get install rabbitmq-server)" >&2
        echo "or point ROGER_AMQP_URL at a running broker." >&2
        return 1
    fi
    if rabbitmqctl status >/dev/null 2>&1; then
        return 0
    fi
    echo "starting RabbitMQ (rabbitmq-server -detached)" >&2
    rabbitmq-server -detached
    local i
    for i in $(seq 1 60); do
        if rabbitmqctl await_startup --timeout 5 >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "RabbitMQ did not come up within 60 attempts" >&2
    return 1
}
