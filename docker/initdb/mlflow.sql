-- MLflow keeps its tracking store and registry in its own database on the same server.
CREATE DATABASE mlflow OWNER pipeline;
