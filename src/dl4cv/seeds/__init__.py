"""The seed study: the book for several seeds as DVC experiments (queue), their MLflow runs
(runs), and every figure judged against its spread over them (spread; its section of the
report is dl4cv.report.seeds)."""
