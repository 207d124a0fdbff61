#!/usr/bin/env bash
# migrate.sh: applies sql/NNN_*.sql in order, each once and in one
# transaction, recording them in schema_migrations.
#
# usage: sql/migrate.sh [CONNINFO]
#   CONNINFO: a libpq connection string or URI ("host=... port=... dbname=..."
#   or "postgresql://..."); default: $DATABASE_URL, else the usual PG*
#   environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, ...).
#   MIGRATIONS_DIR overrides the directory (default: this script's).

set -euo pipefail

dir=${MIGRATIONS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
conn=${1:-${DATABASE_URL:-}}

case ${1:-} in
-h|--help)
    cat <<EOF
usage: $(basename "$0") [CONNINFO]

Applies the numbered SQL migrations (NNN_*.sql) to a PostgreSQL database
in order, each once and in one transaction, recording each in the table
schema_migrations. Migrations only go forward: run it before starting
gateways of a new version. Several runners at once are safe (an advisory
lock).

  CONNINFO  a libpq connection string or URI ("host=... dbname=..." or
            "postgresql://..."); default: \$DATABASE_URL, else the PG*
            environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER...)

Environment:
  MIGRATIONS_DIR  the migrations (default: $dir)

Exit status: 0 when the database is up to date, 1 when a migration
failed (it was rolled back; the ones before it stay applied).
EOF
    exit 0
    ;;
esac

psql_() {
    if [ -n "$conn" ]; then
        psql "$conn" -X -q -v ON_ERROR_STOP=1 "$@"
    else
        psql -X -q -v ON_ERROR_STOP=1 "$@"
    fi
}

psql_ -c "CREATE TABLE IF NOT EXISTS schema_migrations (
              version     text PRIMARY KEY,
              applied_at  timestamptz NOT NULL DEFAULT now()
          )" >/dev/null 2>&1 \
    || psql_ -c "SELECT 1 FROM schema_migrations LIMIT 0" >/dev/null

applied=$(psql_ -At -c "SELECT version FROM schema_migrations")

n=0
shopt -s nullglob

for f in "$dir"/[0-9][0-9][0-9]_*.sql; do
    version=$(basename "$f" .sql)

    if grep -qxF -- "$version" <<< "$applied"; then
        continue
    fi

    echo "migrate: applying $version"

    # the file and its record commit together or not at all; the advisory
    # lock keeps two runners from applying the same file at once
    psql_ --single-transaction \
        -c "SELECT pg_advisory_xact_lock(7350289346)" \
        -f "$f" \
        -c "INSERT INTO schema_migrations (version) VALUES ('$version')" \
        >/dev/null \
        || { echo "migrate: $version failed, rolled back" >&2; exit 1; }

    n=$((n + 1))
done

echo "migrate: $n applied, database up to date"
