"""What every adapter says in the same situations, worded once."""

FILES_ONLY = (
    "I can only read text for now, not files. Paste the part you want me to look at "
    "into a message and I'll take it from there."
)
TROUBLE = "Sorry, something went wrong on my side while answering. Please try again."
