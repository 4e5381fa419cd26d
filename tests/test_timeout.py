import os
import threading
import time

import pytest

from thinkgym.rewards.timeout import CallTimeout, call_with_timeout


def test_returns_value_and_reraises():
    assert call_with_timeout(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(divmod, 1, 0)


def test_hang_in_c_is_cut_off_from_a_thread():
    # pow(10, 10**9) is one C call: no Python-level interrupt could stop it.
    outcome = {}

    def run():
        start = time.monotonic()
        try:
            call_with_timeout(pow, 10, 10**9, timeout=0.5)
        except CallTimeout:
            outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert outcome["seconds"] < 3
    assert call_with_timeout(pow, 2, 10) == 1024  # a fresh helper replaces the killed one


def test_concurrent_callers_get_their_own_answers():
    results = {}

    def run(i):
        results[i] = call_with_timeout(pow, i, 2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * i for i in range(8)}


def test_works_inside_a_daemonic_worker_process():
    import multiprocessing

    with multiprocessing.get_context("forkserver").Pool(1) as pool:  # Pool workers are daemonic
        assert pool.apply(call_with_timeout, (os.getpid,)) != os.getpid()


def test_a_prestarted_helper_serves_the_next_call():
    from thinkgym.rewards import timeout

    timeout.prestart("fractions", "no_such_module")  # a module that fails to load is only a lost head start
    helper = timeout._idle[-1]
    assert helper.proc.args[-2:] == ["fractions", "no_such_module"]
    assert call_with_timeout(os.getpid) == helper.proc.pid


def test_a_function_the_helper_cannot_import_is_an_error_not_a_dead_helper():
    with pytest.raises(ModuleNotFoundError, match="test_timeout"):
        call_with_timeout(_local_function)
    assert call_with_timeout(sum, [1, 2]) == 3


def _local_function() -> None:
    """Importable here, not in the helper (tests/ is not on its path)."""


def test_an_unpicklable_result_is_an_error_not_a_dead_helper():
    with pytest.raises(TypeError, match="unpicklable result"):
        call_with_timeout(threading.Lock)
    assert call_with_timeout(sum, [1, 2]) == 3
