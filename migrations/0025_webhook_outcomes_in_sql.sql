-- record_webhook_attempt decides what an answer makes of a delivery, and when it is tried
-- again (sql/028: webhook_reply_outcome, webhook_retry_wait), from the status code and the
-- reply the daemon got: the daemon no longer passes an outcome and a delay.
DROP FUNCTION IF EXISTS batchctl.record_webhook_attempt(uuid, bigint, integer, integer, text, numeric, text, numeric);
