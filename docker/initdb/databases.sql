-- MLflow keeps its tracking store and registry in its own database on the same server, and the publish
-- task writes the serving tables (recommendations, audiences by customer id) to the serving database.
CREATE DATABASE mlflow OWNER pipeline;
CREATE DATABASE serving OWNER pipeline;
