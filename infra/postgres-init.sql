-- Run once by the postgres image on an empty data volume (infra/compose.yaml mounts it into
-- /docker-entrypoint-initdb.d): the databases the MLflow and Prefect servers' URLs name, and the
-- sweeps' Optuna studies (Optuna and MLflow each keep an alembic_version table: one database each).
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE DATABASE optuna;
