"""Blend masks, paste-back into the frame, and colour handling."""
