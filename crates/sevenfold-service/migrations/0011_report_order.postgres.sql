-- PostgreSQL: nothing to change. SQLite's half of this migration stores
-- failure reports clustered in the error report's order; PostgreSQL's
-- index scan over failure_reports_recent already serves the report, and it
-- has no persistent clustered tables.
SELECT 1;
