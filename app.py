"""qa-search web UI: ask a question, see which paragraphs of the collection answer it.

Start it with::

    streamlit run app.py                           # indexes/squad-dev, or $QA_SEARCH_INDEX
    streamlit run app.py -- --index indexes/NAME   # another built index

The page itself lives in :mod:`pipeline.apps.ui.page`; this file is what ``streamlit run`` is pointed at.
"""

from pipeline.apps.ui.page import main

main()
