"""Face detectors: an image in, boxes + scores + 5 landmarks out (``facerest_cli.types.Detection``)."""
