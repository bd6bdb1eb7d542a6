"""Self-supervised pretraining of the encoder: the methods (one module each) and the pretraining loop."""
