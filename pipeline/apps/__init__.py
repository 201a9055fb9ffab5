"""The shells over :class:`pipeline.QAPipeline`: the command line (``cli``), the HTTP API (``server``) and the
Streamlit web page (``ui``). Only modules in here import argparse, FastAPI or Streamlit."""
