"""pandera models, one per data shape the pipeline accepts."""
