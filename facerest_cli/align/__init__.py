"""Alignment: 5 landmarks -> similarity transform to a template -> crop + the matrix paste-back inverts."""
