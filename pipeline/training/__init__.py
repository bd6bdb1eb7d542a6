"""The training loops of the teacher and the noisy students, on one shared skeleton (loop.py)."""
