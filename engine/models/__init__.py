"""Networks (causal Wan transformer, UMT5 text encoder, streaming Wan VAE), their checkpoints and presets."""
