"""One module per SSL method: its settings (`Config`, from `pretrain.methods.<name>`) beside its code."""
