"""vla_drive: driving vision-language-action models with a diffusion trajectory head, trained by imitation and RL."""

__version__ = "0.1.0"
