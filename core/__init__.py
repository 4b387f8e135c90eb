"""EmoForge domain logic. Never imports streamlit: pages call into here."""
