"""Fine-tuning the pipeline's models on your own questions: ``qa-search train``.

``data`` (training questions and hard negatives mined from an index), ``splits``
(train / held-out split by article, never overlapping), ``reranker`` (a
cross-encoder through sentence-transformers' ``CrossEncoderTrainer``),
``reader`` (an extractive QA model through transformers' ``Trainer``, with a
no-answer head from SQuAD v2.0 data), ``card`` (``training_card.json``),
``output`` (checkpoints, resume, the finished model's folder), ``progress``
(the progress bar with the loss), ``estimate`` (how long a run takes on a CPU),
``deps`` (the ``[train]`` extra, checked with one error line).
"""
