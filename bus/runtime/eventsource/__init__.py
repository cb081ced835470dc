"""Services on Lambda fed by a Kafka event source mapping (MSK or self-managed Kafka).

``records`` parses (and, for tests and tools, builds) the event; ``runner`` runs a batch
through the same admission, idempotency and reply path as ``bus.runtime.worker.ServiceWorker``;
``response`` is the partial batch response naming the records to retry.
"""
