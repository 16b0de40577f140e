"""The pipeline's commands: train, evaluate, predict, download (see minicnn.cli)."""
