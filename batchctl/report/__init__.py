"""The batch report: an Excel workbook of a batch, e-mailed through the reports outbox.

data (what the report reads, streamed) -> workbook (openpyxl, write-only) -> build (both, in one
snapshot) -> mail (the message, smtplib) -> outbox (the daemon's step: claim, build, send, mark).
"""
