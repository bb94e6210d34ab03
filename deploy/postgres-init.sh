#!/bin/sh
# First start of the compose file's Postgres: the role Zyron logs in as, and its database.
# Not a superuser (a superuser would bypass Row Level Security); CREATEROLE so that the
# migrations can create anon, authenticated and service_role (README, "Postgres and Supabase").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v password="$ZYRON_DB_PASSWORD" <<'SQL'
CREATE ROLE zyron LOGIN CREATEROLE PASSWORD :'password';
CREATE DATABASE zyron OWNER zyron;
SQL
