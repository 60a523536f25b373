#!/usr/bin/env bash
# Back up the facility-share PostgreSQL database to one file in pg_dump's custom format.
#
# pg_dump reads the whole database inside one snapshot, so a backup taken while the service
# runs holds every transaction committed before it started and none of those after, across
# all tables at once. Restore it with restore.sh into an empty database.
set -euo pipefail

readonly EXIT_USAGE=2 EXIT_TOOLS=3 EXIT_DUMP=4 EXIT_VERIFY=5

usage() {
    cat <<'EOF'
usage: backup.sh [--url URL] TARGET

Writes a pg_dump custom-format backup of the database. TARGET is the file to write (it must not
exist yet) or an existing folder, in which facility-share-YYYYMMDDTHHMMSSZ.dump is created.
The file appears only once the dump is complete and has been read back.

The database is URL (postgresql://user:password@host:5432/name; the +asyncpg form the service
uses is accepted), else $FACILITY_SHARE_DATABASE_URL, else the libpq variables (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE). The password is handed to pg_dump through the environment,
never on its command line.

exit codes:
  0  the backup is written and readable (its path is printed on the last line)
  2  usage: bad arguments, or TARGET exists or its folder does not
  3  pg_dump or pg_restore is not installed
  4  pg_dump failed (database unreachable, wrong password, ...): nothing is left behind
  5  the written file could not be read back: it is removed
EOF
}

fail() { echo "backup.sh: $2" >&2; exit "$1"; }

url="${FACILITY_SHARE_DATABASE_URL:-}"
target=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --url) [ $# -ge 2 ] || fail $EXIT_USAGE "--url needs a value"; url="$2"; shift 2 ;;
        --url=*) url="${1#--url=}"; shift ;;
        -*) usage >&2; fail $EXIT_USAGE "unknown option $1" ;;
        *) [ -z "$target" ] || fail $EXIT_USAGE "one TARGET only (got '$target' and '$1')"; target="$1"; shift ;;
    esac
done
[ -n "$target" ] || { usage >&2; exit $EXIT_USAGE; }

for tool in pg_dump pg_restore; do
    command -v "$tool" >/dev/null 2>&1 || fail $EXIT_TOOLS "$tool not found: install PostgreSQL's client tools (of the server's major version or newer)"
done

if [ -d "$target" ]; then
    target="${target%/}/facility-share-$(date -u +%Y%m%dT%H%M%SZ).dump"
fi
[ ! -e "$target" ] || fail $EXIT_USAGE "$target already exists: choose a new name (backups are never overwritten)"
[ -d "$(dirname -- "$target")" ] || fail $EXIT_USAGE "folder $(dirname -- "$target") does not exist"

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

# The backup holds personal data and password hashes: readable by its owner only.
umask 077
partial="$target.partial"
trap 'rm -f -- "$partial"' EXIT

started=$(date +%s)
echo "backup.sh: dumping to $target" >&2
# --lock-wait-timeout: never queue for long behind a migration's exclusive lock (and make
# the service's queries queue behind us); fail instead, and try again later.
if ! pg_dump "${connection[@]}" --format=custom --compress=6 --lock-wait-timeout=60s \
        --no-password --file="$partial"; then
    fail $EXIT_DUMP "pg_dump failed; no backup was written"
fi
if ! pg_restore --list "$partial" >/dev/null; then
    fail $EXIT_VERIFY "the dump could not be read back; it was removed"
fi
mv -- "$partial" "$target"
trap - EXIT

tables=$(pg_restore --list "$target" | grep -c ' TABLE DATA ' || true)
size=$(du -h -- "$target" | cut -f1)
echo "backup.sh: done in $(( $(date +%s) - started )) s: $tables tables, $size" >&2
echo "$target"
