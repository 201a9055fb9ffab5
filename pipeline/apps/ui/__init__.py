"""The Streamlit web page (run through the top-level ``app.py``) and its HTML rendering."""
