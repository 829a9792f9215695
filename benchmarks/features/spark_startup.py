"""Start a Spark session and stop it: what spark-submit costs before the job does any work."""

from pyspark.sql import SparkSession

if __name__ == "__main__":
    spark = SparkSession.builder.appName("startup").getOrCreate()
    spark.range(1).count()
    spark.stop()
