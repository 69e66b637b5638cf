"""Streamlit-side helpers shared by the pages: the cached runtime, the current user, small renderers."""
