"""The interactive TUI: the live actor tree of the whole mesh (Textual)."""
