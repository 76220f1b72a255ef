"""Retrieval metrics (Recall@K, MedR, MRR; full and Recipe1M-style pooled) and baselines."""

from toolkit.evaluation.metrics import full_metrics, metrics_table, pooled_metrics, retrieval_metrics

__all__ = ["full_metrics", "metrics_table", "pooled_metrics", "retrieval_metrics"]
