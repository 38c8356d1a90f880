"""Parameter optimization: search spaces, objectives and Optuna strategies for Ollama options."""
