"""What lasts between runs: the content-addressed cache, atomic storage, checkpoints, records."""
