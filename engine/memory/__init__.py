"""Long-term memory: where a user's memories live, how facts are found, how they are shown."""
