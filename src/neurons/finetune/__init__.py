"""Fine-tuning jobs: training data validation, presets, LoRA training (PEFT), GGUF adapter
export and deployment to the neurons."""
