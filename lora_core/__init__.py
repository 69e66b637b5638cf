"""LoRA Dataset Manager domain: storage, validation, persistence and the background sweep. No Streamlit here."""
