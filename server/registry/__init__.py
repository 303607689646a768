"""The household registry read back: lists, reports, attachments, the demo district."""
