"""streamt1 engine: everything that turns prompts into latents and frames."""
