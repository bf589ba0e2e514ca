# Sourced by .ci/run (bash): starts a throwaway PostgreSQL for the tests and exports its URL as
# LINQ_HOOKS_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres (a superuser, trust
# authentication, on 127.0.0.1 only). The cluster lives in a temporary directory that is stopped
# and removed when the shell exits, also on failure or Ctrl-C (this sets the EXIT, INT and TERM
# traps).
#
# - Installs Debian's `postgresql` when no server is installed (a `psql` client alone is not one).
# - Runs `initdb` and `pg_ctl` as the `postgres` user when run as root (as CI does: PostgreSQL
#   refuses to run as root), as the calling user otherwise.
# - With CI=true, a PostgreSQL that cannot be installed or started fails the run; elsewhere it
#   warns, and the PostgreSQL tests say loudly that they were skipped.
# - LINQ_HOOKS_TEST_POSTGRES already set: that PostgreSQL is used, none is started.
#
# Try it: bash -c 'source .ci/postgres.sh; psql "$LINQ_HOOKS_TEST_POSTGRES" -c "select 1"'

_pg_fail() {
    echo "postgres.sh: $*" >&2
    local log
    for log in "${_pg_dir:-/nonexistent}"/{initdb,server}.log; do
        if [ -f "$log" ]; then
            echo "--- $log:" >&2
            tail -n 40 "$log" >&2
        fi
    done
    if [ "${CI:-}" = "true" ]; then
        echo "postgres.sh: CI=true: the PostgreSQL tests must run, so this fails the run" >&2
        exit 1
    fi
    echo "postgres.sh: going on without PostgreSQL: its tests will say they were skipped" >&2
    return 1
}

# Runs a command as the user that owns the cluster.
_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The newest installed server's bin directory (Debian puts it under /usr/lib/postgresql/<major>/).
_pg_bin() {
    local initdb
    initdb=$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [ -n "$initdb" ] && dirname "$initdb"
}

_pg_stop() {
    # A second Ctrl-C must not cut the clean-up short.
    trap '' INT TERM
    if [ -n "${_pg_dir:-}" ] && [ -d "$_pg_dir" ]; then
        if [ -f "$_pg_dir/data/postmaster.pid" ]; then
            _pg_as_owner "$_pg_bin_dir/pg_ctl" -D "$_pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$_pg_dir"
    fi
}

# A port nothing listens on yet (another process may take it before PostgreSQL does: the caller
# tries again).
_pg_free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

_pg_start() {
    if [ -n "${LINQ_HOOKS_TEST_POSTGRES:-}" ]; then
        echo "using the given LINQ_HOOKS_TEST_POSTGRES (not starting one)"
        return 0
    fi
    _pg_bin_dir=$(_pg_bin)
    if [ -z "$_pg_bin_dir" ]; then
        if [ "$(id -u)" != 0 ]; then
            _pg_fail "no PostgreSQL server in /usr/lib/postgresql/*/bin (install Debian's postgresql)"
            return 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
        _pg_bin_dir=$(_pg_bin)
        if [ -z "$_pg_bin_dir" ]; then
            _pg_fail "installed postgresql, yet no /usr/lib/postgresql/*/bin/initdb"
            return 1
        fi
    fi

    _pg_dir=$(mktemp -d /tmp/linq-hooks-postgres.XXXXXX) || {
        _pg_fail "cannot make a temporary directory"
        return 1
    }
    # Set before anything can fail, so that the directory goes whatever happens next.
    trap _pg_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$_pg_dir" || {
            _pg_fail "cannot hand $_pg_dir to the postgres user"
            return 1
        }
    fi
    if ! _pg_as_owner "$_pg_bin_dir/initdb" -D "$_pg_dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$_pg_dir/initdb.log" 2>&1; then
        _pg_fail "initdb failed"
        return 1
    fi

    local port started=""
    for _ in 1 2 3; do
        port=$(_pg_free_port) || break
        # A throwaway cluster: fsync off (nothing to keep across a power loss). Enough
        # connections for several `serve` processes and the tests running in parallel.
        if _pg_as_owner "$_pg_bin_dir/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 60 \
            -o "-p $port -k $_pg_dir -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off" \
            start >/dev/null; then
            started=yes
            break
        fi
    done
    if [ -z "$started" ]; then
        _pg_fail "pg_ctl could not start PostgreSQL on 127.0.0.1"
        return 1
    fi
    # pg_ctl -w waits for the server to say it is ready; check the TCP listener is too.
    local ready=""
    for _ in $(seq 1 60); do
        if "$_pg_bin_dir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
            ready=yes
            break
        fi
        sleep 1
    done
    if [ -z "$ready" ]; then
        _pg_fail "PostgreSQL started but does not accept connections on 127.0.0.1:$port"
        return 1
    fi
    export LINQ_HOOKS_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$_pg_bin_dir/postgres" --version | sed "s/^postgres (PostgreSQL) //") in $_pg_dir: LINQ_HOOKS_TEST_POSTGRES=$LINQ_HOOKS_TEST_POSTGRES"
}

_pg_start || true
