"""What a run or a sweep tells its user: the run table, metrics.json's content, sweep summaries."""
