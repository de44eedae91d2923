"""One adapter per platform: platform update in, neutral Request, rendered replies out."""
