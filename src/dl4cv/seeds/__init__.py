"""The seed study: the book for several seeds as DVC experiments (queue), their MLflow runs
(runs), and every figure judged against its spread over them (spread, report)."""
