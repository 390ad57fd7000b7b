"""Video: streamed decoding and encoding with PyAV, face tracks, landmark smoothing, jitter metric.

``facerest_cli.video.source.VideoSource`` is the pipeline's ``FrameSource``. Nothing here imports PyAV, torch or
OpenCV at import time; the modules that need them import them inside functions.
"""
