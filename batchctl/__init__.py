"""batchctl: outbound AI voice-call batches, run from PostgreSQL."""
