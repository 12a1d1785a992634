-- The second database of the deployment's PostgreSQL server: the sync store (connector spaces, metaverse, pending
-- exports, run history). The first one, "airflow", is Airflow's metadata database, created by the image from
-- POSTGRES_DB. Runs once, when the data volume is initialised (/docker-entrypoint-initdb.d), as POSTGRES_USER, which
-- becomes the owner; the provider creates and migrates the store's tables itself.
CREATE DATABASE aadsync_store;
