"""Measuring the pipeline: questions and their gold paragraphs (``questions``), retrieval, answerability and
reader figures (``evaluation``, ``squad_metrics``), reranker accuracy on sentence pairs (``pairs``), and the
written report (``report``)."""
