"""facerest: batch face restoration for old photos and film.

Importing the package is cheap on purpose: no torch, no cv2, no network. Heavy modules are imported by the
stage that needs them (see STYLE: no import side effects).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
