-- Runs once, when the PostgreSQL volume is first created: the warehouse gets a database of its own,
-- next to Dagster's (DAGSTER_PG_DB).
CREATE DATABASE stock_assets;
