"""Network architectures only: ``nn.Module`` classes and builders with the official constructor arguments.

No I/O, no downloads, no weights: ``facerest_cli.weights.loader`` loads verified files into these modules.
Nothing is imported here; ``facerest_cli.models.registry`` maps arch names to builders and imports lazily.
"""
