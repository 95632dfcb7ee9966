"""scheduler: the replicated cron state machine, the schedule language and the job model."""

from scheduler.job import JobSpec as JobSpec
from scheduler.job import JobValidationError as JobValidationError
from scheduler.job import TagSelector as TagSelector
from scheduler.job import parse_tags as parse_tags
from scheduler.schedule import Schedule as Schedule
from scheduler.schedule import ScheduleError as ScheduleError
from scheduler.schedule import parse_schedule as parse_schedule
from scheduler.schedule import ticks_between as ticks_between

__all__ = [
    "JobSpec",
    "JobValidationError",
    "Schedule",
    "ScheduleError",
    "TagSelector",
    "parse_schedule",
    "parse_tags",
    "ticks_between",
]
