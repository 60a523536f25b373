#!/usr/bin/env bash
# Restore a backup made by backup.sh into an EMPTY PostgreSQL database.
#
# Everything is restored in one transaction: either the whole backup is in the database
# afterwards, or (on any error) nothing is. A database that already holds tables is refused,
# so a restore can never be mixed into live data by mistake.
set -euo pipefail

readonly EXIT_USAGE=2 EXIT_TOOLS=3 EXIT_CONNECT=4 EXIT_NOT_EMPTY=5 EXIT_RESTORE=6

usage() {
    cat <<'EOF'
usage: restore.sh [--url URL] FILE

Restores FILE (written by backup.sh: pg_dump's custom format) into an empty database. Create
one first, e.g. `createdb -O facility_share facility_share` (or drop and recreate the old one
once the service is stopped). Objects end up owned by the user restoring them; grants in the
backup are not replayed.

The database is URL (postgresql://user:password@host:5432/name; the +asyncpg form the service
uses is accepted), else $FACILITY_SHARE_DATABASE_URL, else the libpq variables (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE). The password is handed over through the environment, never on
a command line.

exit codes:
  0  restored (the schema revision it holds is printed)
  2  usage: bad arguments, FILE missing, unreadable or not a pg_dump custom-format file
  3  pg_restore or psql is not installed
  4  the database cannot be reached
  5  the database is not empty: nothing was changed
  6  pg_restore failed: its transaction was rolled back, the database is empty as before
EOF
}

fail() { echo "restore.sh: $2" >&2; exit "$1"; }

url="${FACILITY_SHARE_DATABASE_URL:-}"
file=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --url) [ $# -ge 2 ] || fail $EXIT_USAGE "--url needs a value"; url="$2"; shift 2 ;;
        --url=*) url="${1#--url=}"; shift ;;
        -*) usage >&2; fail $EXIT_USAGE "unknown option $1" ;;
        *) [ -z "$file" ] || fail $EXIT_USAGE "one FILE only (got '$file' and '$1')"; file="$1"; shift ;;
    esac
done
[ -n "$file" ] || { usage >&2; exit $EXIT_USAGE; }

for tool in pg_restore psql; do
    command -v "$tool" >/dev/null 2>&1 || fail $EXIT_TOOLS "$tool not found: install PostgreSQL's client tools (of the server's major version or newer)"
done

[ -f "$file" ] && [ -r "$file" ] || fail $EXIT_USAGE "$file is not a readable file"
toc="$(mktemp)"
trap 'rm -f -- "$toc"' EXIT
pg_restore --list "$file" >"$toc" 2>/dev/null || fail $EXIT_USAGE "$file is not a pg_dump custom-format backup (made by backup.sh)"

# libpq wants a plain postgresql:// URL; the password moves to PGPASSWORD so that it does not
# show in the process list. (The same function is in backup.sh and restore.sh.)
connection=()
use_url() {
    local url="${1/#postgresql+asyncpg:\/\//postgresql://}" scheme rest authority userinfo password
    case "$url" in
        postgresql://*|postgres://*) ;;
        *) fail $EXIT_USAGE "expected a postgresql:// URL, got '${url%%://*}://...'" ;;
    esac
    scheme="${url%%://*}"
    rest="${url#*://}"
    authority="${rest%%/*}"
    if [[ "$authority" == *@* ]]; then
        userinfo="${authority%@*}"
        if [[ "$userinfo" == *:* ]]; then
            password="${userinfo#*:}"
            # URLs percent-encode special characters in passwords.
            PGPASSWORD="$(printf '%b' "${password//%/\\x}")"
            export PGPASSWORD
            rest="${userinfo%%:*}@${rest#"$userinfo"@}"
        fi
    fi
    connection=(--dbname="$scheme://$rest")
}
[ -z "$url" ] || use_url "$url"

sql() { psql "${connection[@]}" --no-password --no-psqlrc --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 -c "$1"; }

database="$(sql 'SELECT current_database()' 2>&1)" || fail $EXIT_CONNECT "cannot reach the database: $database"

# Empty: no table, view, sequence or other relation outside PostgreSQL's own schemas.
# Extensions alone (created by an administrator beforehand) are fine.
existing="$(sql "SELECT count(*) || ' relations, e.g. ' || string_agg(name, ', ') FILTER (WHERE n <= 3)
                 FROM (SELECT ns.nspname || '.' || c.relname AS name, row_number() OVER (ORDER BY c.relkind, c.relname) AS n
                       FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
                       LEFT JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
                       WHERE ns.nspname NOT IN ('pg_catalog', 'information_schema') AND ns.nspname NOT LIKE 'pg_toast%'
                         AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND d.objid IS NULL) AS found
                 HAVING count(*) > 0")"
if [ -n "$existing" ]; then
    fail $EXIT_NOT_EMPTY "database $database is not empty ($existing); restore into a new, empty database, nothing was changed"
fi

# An extension's comment can only be set by its owner: when an administrator created the
# extensions beforehand, replaying it would fail the whole restore, and it carries nothing.
grep -v ' COMMENT - EXTENSION ' "$toc" >"$toc.use" || true
trap 'rm -f -- "$toc" "$toc.use"' EXIT

started=$(date +%s)
echo "restore.sh: restoring $file into $database" >&2
if ! pg_restore "${connection[@]}" --no-password --single-transaction --exit-on-error \
        --no-owner --no-privileges --use-list="$toc.use" "$file"; then
    fail $EXIT_RESTORE "pg_restore failed; its transaction was rolled back and $database is left empty"
fi

# pg_restore does not carry the planner's statistics: gather them now rather than let the
# first requests run on guesses.
sql 'ANALYZE' >/dev/null || echo "restore.sh: warning: ANALYZE failed; run it by hand" >&2

revision="$(sql 'SELECT version_num FROM alembic_version' 2>/dev/null || echo unknown)"
echo "restore.sh: done in $(( $(date +%s) - started )) s; schema revision $revision" >&2
echo "restored $file into $database at schema revision $revision"
