"""A self-contained HTML report of a session (or several side by side): spec and lineage, reward
curves, the beam tree, the sink timeline, a contact sheet and phase timing, plus its data as a JSON
island. Reads committed chunks only and imports no model code."""

from sessions.report.write import REPORT_FILE, ReportWriter, is_report, report_due, write_report

__all__ = ["REPORT_FILE", "ReportWriter", "is_report", "report_due", "write_report"]
