"""Usage: the request-path recorder, the User-Agent notice, the report and the requests chart."""

from __future__ import annotations

from thotbot.usage.chart import requests_chart as requests_chart
from thotbot.usage.notice import NOTICE_HEADER as NOTICE_HEADER
from thotbot.usage.notice import user_agent_notice as user_agent_notice
from thotbot.usage.recorder import DisabledRecorder as DisabledRecorder
from thotbot.usage.recorder import UsageRecorder as UsageRecorder
from thotbot.usage.requests import RequestLogRecorder as RequestLogRecorder

__all__ = [
    "NOTICE_HEADER",
    "DisabledRecorder",
    "RequestLogRecorder",
    "UsageRecorder",
    "requests_chart",
    "user_agent_notice",
]
