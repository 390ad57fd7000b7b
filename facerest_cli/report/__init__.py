"""Per-face reports: JSONL (streamed), CSV, summary JSON and the HTML contact sheet."""
