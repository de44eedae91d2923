"""Renderers from the document model to each platform's markup, and the message splitter."""
