"""Identity: does the restored face still show the same person?

``recognizers`` embed aligned 112x112 faces (ArcFace family); ``align`` warps the input face (from the original
frame) and the restored face (from the restored crop, through the crop's matrix, no re-detection) to the ArcFace
template; ``stage.IdentityStage`` scores every face of every restore batch, writes the contact-sheet thumbnails
and, with ``--min-identity``, retries faces at lower strength and finally keeps the original face.
"""
