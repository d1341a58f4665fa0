"""The four Signoff services; each consumes events, decides, and emits the next event."""
