"""Port of Roger's ``test/roger/job_test.exs`` and its ``doctest Roger.Job``.

Roger builds payloads with ``:erlang.term_to_binary(%Job{...})``; the port's
payloads are CBOR maps (``Job.encode``), so the payloads below are the CBOR
maps that a ``%Job{}`` literal with those fields stands for: the required keys
``v``, ``id``, ``module`` and ``args``, and, for ``%Job{}`` itself, every
field at its struct default. No node is needed (as in Roger, this module
uses no AppCase).
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

import roger_actors as roger
from roger_actors.job import allowed_modules, job_class_name, set_allowed_modules
from tests.integration.roger.jobs import JobTest

SquareJob = JobTest.SquareJob
QueueKeyJob = JobTest.QueueKeyJob


def payload(**fields: Any) -> bytes:
    """A CBOR job payload with ``fields`` (schema version 1)."""
    return cbor2.dumps({"v": 1, **fields})


def test_doctest_roger_job_create_3_1() -> None:
    """test/roger/job_test.exs: "doctest Roger.Job.create/3 (1)" (the ``iex>``
    example of ``Roger.Job.create/3`` in lib/roger/job.ex)."""
    job = roger.Job.create(SquareJob, [4])
    assert isinstance(job, roger.Job)


def test_job_create() -> None:
    """test/roger/job_test.exs: "job create"."""
    job = roger.Job.create(SquareJob, [2])
    assert isinstance(job.module, str)  # the job type's name (Roger: an atom)
    assert job.module == job_class_name(SquareJob)
    assert isinstance(job.args, list)
    assert isinstance(job.id, str)


def test_job_create_with_queue_key() -> None:
    """test/roger/job_test.exs: "job create with queue key"."""
    job = roger.Job.create(QueueKeyJob, [2])
    assert isinstance(job.module, str)
    assert isinstance(job.args, list)
    assert isinstance(job.id, str)
    assert job.queue_key == "num-2"


def test_job_deserialization_from_binary() -> None:
    """test/roger/job_test.exs: "job deserialization from binary"."""
    job = roger.Job.decode(payload(id="asdf", module=job_class_name(SquareJob), args=[2]))

    assert type(job) is SquareJob and job.module == job_class_name(SquareJob)
    assert job.args == [2]
    assert job.id == "asdf"
    assert job.queue_key is None
    assert job.execution_key is None


def test_job_execute_ok() -> None:
    """test/roger/job_test.exs: "job execute OK"."""
    job = roger.Job.create(SquareJob, [2])
    assert roger.Job.execute(job) == 4


def test_invalid_decoded_job_no_id() -> None:
    """test/roger/job_test.exs: "invalid decoded job, no id"."""
    # %Job{}: every field at its default (Roger's struct: retry_count,
    # started_at and queued_at 0, max_execution_time :infinity).
    default_struct = payload(
        id=None, module=None, args=None, queue_key=None, execution_key=None,
        retry_count=0, started_at=0, queued_at=0, max_execution_time=None,
    )
    with pytest.raises(roger.InvalidJobError, match="Job id must be set"):
        roger.Job.decode(default_struct)


def test_invalid_decoded_job_unknown_module() -> None:
    """test/roger/job_test.exs: "invalid decoded job, unknown module"."""
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(id="asdf", module="NoExistingModule", args=None))


def test_invalid_decoded_job_invalid_job_module() -> None:
    """test/roger/job_test.exs: "invalid decoded job, invalid Job module"."""
    # Roger loads any module a payload names; the port resolves only job
    # classes it has registered or modules on the allow-list. MyCustomJob is
    # no job class, so its module is allowed for this test.
    previous = allowed_modules()
    roger.Job.allow_modules("tests.integration.roger.jobs")
    module = "tests.integration.roger.jobs.JobTest.MyCustomJob"
    try:
        with pytest.raises(roger.InvalidJobError, match="Invalid job module"):
            roger.Job.decode(payload(id="asdf", module=module, args=None))
    finally:
        set_allowed_modules(previous)


def test_invalid_decoded_job_unknown_module_string() -> None:
    """test/roger/job_test.exs: "invalid decoded job, unknown module (string)"."""
    # Roger's modules are atoms, so a module given as a string is refused
    # ("Job module must be an atom"). The port's module is a name, a string:
    # the same string is a well-typed name of no job ("Unknown job module"),
    # and a module of another type gets Roger's message with "a string".
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(id="asdf", module="NoExisting", args=None))
    with pytest.raises(roger.InvalidJobError, match="Job module must be a string"):
        roger.Job.decode(payload(id="asdf", module=["NoExisting"], args=None))
