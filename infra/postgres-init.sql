-- Run once by the postgres image on an empty data volume (infra/compose.yaml mounts it into
-- /docker-entrypoint-initdb.d): the databases the MLflow and Prefect servers' URLs name.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
